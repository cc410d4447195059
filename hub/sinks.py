"""Time-series sinks: InfluxDB's v2 write API (through influxdb-client) or embedded SQLite.

Points arrive as line protocol built once on the ingest path; the SQLite sink parses nothing,
it receives the same points in structured form.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from hub.db import Database
from hub.errors import SinkError


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    """One point: a measurement, its tag set (pre-escaped), fields and a ms timestamp."""

    measurement: str
    tags: str
    fields: dict[str, float]
    ts_ms: int
    device: str

    def line(self) -> str:
        """The point as one line of InfluxDB line protocol (ms precision)."""
        fields = ",".join(f"{k}={_number(v)}" for k, v in self.fields.items())
        head = f"{self.measurement},{self.tags}" if self.tags else self.measurement
        return f"{head} {fields} {self.ts_ms}"


def _number(value: float) -> str:
    # repr keeps full precision; integral floats stay floats so a field's type never flips.
    return repr(float(value))


class TimeSeriesSink(Protocol):
    """Where accepted readings and events are stored."""

    name: str

    async def write(self, points: Sequence[Point]) -> None:
        """Store ``points`` durably or raise :class:`SinkError`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class InfluxSink:
    """Writes line protocol through ``influxdb-client``'s synchronous write API.

    Synchronous, so that when :meth:`write` returns the server has accepted the batch and the
    hub may acknowledge it to the gateways.  It runs on a worker thread.
    """

    name = "influxdb"

    def __init__(self, url: str, *, token: str, org: str, bucket: str, timeout_s: float) -> None:
        self._client = InfluxDBClient(
            url=url, token=token or "anju", org=org, timeout=int(timeout_s * 1000)
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket = bucket
        self._org = org
        self._precision: Any = WritePrecision.MS
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="influx")

    def _write_sync(self, points: Sequence[Point]) -> None:
        lines = [p.line() for p in points]  # formatted here, on the writer thread
        try:
            self._write_api.write(
                bucket=self._bucket, org=self._org, record=lines, write_precision=self._precision
            )
        except Exception as exc:
            raise SinkError(f"influxdb write failed: {_short(exc)}") from exc

    async def write(self, points: Sequence[Point]) -> None:
        """Write one batch."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write_sync, points)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]
        self._executor.shutdown(wait=False)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


# One clustered B-tree: a history query is a range scan of its key, an insert touches one tree,
# and writing the same point again (after a hub crash) replaces it instead of doubling it.
TSDB_SCHEMA = """
CREATE TABLE IF NOT EXISTS point (
    device TEXT NOT NULL, field TEXT NOT NULL, ts INTEGER NOT NULL, measurement TEXT NOT NULL,
    value REAL NOT NULL, PRIMARY KEY (device, field, ts, measurement)) WITHOUT ROWID;
"""
_PURGE_EVERY_S = 3600


class SqliteSink:
    """The embedded default: points in a local SQLite file with bounded retention."""

    name = "sqlite"

    def __init__(self, path: Path, *, retention_days: float) -> None:
        self._db = Database(path, schema=TSDB_SCHEMA)
        self._retention_ms = int(retention_days * 86_400_000)
        self._last_purge = time.monotonic() - _PURGE_EVERY_S  # purge on the first write

    async def write(self, points: Sequence[Point]) -> None:
        """Insert one batch in one transaction, purging expired rows now and then."""
        rows = [
            (p.device, name, p.ts_ms, p.measurement, value)
            for p in points
            for name, value in p.fields.items()
        ]
        purge_before = None
        if time.monotonic() - self._last_purge > _PURGE_EVERY_S:
            self._last_purge = time.monotonic()
            purge_before = time.time_ns() // 1_000_000 - self._retention_ms

        def _insert(conn: sqlite3.Connection) -> None:
            with conn:
                conn.executemany("INSERT OR REPLACE INTO point VALUES (?, ?, ?, ?, ?)", rows)
                if purge_before is not None:
                    conn.execute("DELETE FROM point WHERE ts < ?", (purge_before,))

        try:
            await self._db.call(_insert)
        except sqlite3.Error as exc:
            raise SinkError(f"sqlite write failed: {exc}") from exc

    async def history(
        self, device: str, field: str, since_ms: int, limit: int = 10_000
    ) -> list[tuple[int, float]]:
        """Stored values of one device's field since ``since_ms``, oldest first."""

        def _query(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT ts, value FROM point WHERE device = ? AND field = ? AND ts >= ? "
                "ORDER BY ts LIMIT ?",
                (device, field, since_ms, limit),
            ).fetchall()

        return [(int(ts), float(v)) for ts, v in await self._db.call(_query)]

    async def count(self, measurement: str | None = None) -> int:
        """How many values are stored (of one measurement, if given)."""

        def _count(conn: sqlite3.Connection) -> int:
            if measurement is None:
                return int(conn.execute("SELECT COUNT(*) FROM point").fetchone()[0])
            row = conn.execute("SELECT COUNT(*) FROM point WHERE measurement = ?", (measurement,))
            return int(row.fetchone()[0])

        return await self._db.call(_count)

    async def aclose(self) -> None:
        """Close the database."""
        self._db.close()
