"""Time-series sinks: InfluxDB's v2 write API (through influxdb-client) or embedded SQLite.

A write is a :class:`SinkBatch`: the readings of many messages as columns, plus the few points
of events and gateway health. The InfluxDB sink builds line protocol from the columns (series
heads cached per device slot) and splits bodies that would be too large; the SQLite sink stores
one row per reading with its values as columns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from hub.columns import DeviceTable, Readings, reading_lines
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


@dataclasses.dataclass(frozen=True, slots=True)
class SinkBatch:
    """One write: readings as columns (slots of ``devices``), and other points."""

    readings: Readings | None
    points: Sequence[Point]
    devices: DeviceTable

    def lines(self) -> list[bytes]:
        """The whole batch as lines of line protocol."""
        lines = reading_lines(self.readings, self.devices.heads) if self.readings else []
        lines += [p.line().encode() for p in self.points]
        return lines


# InfluxDB 1.x refuses bodies over 25 MB; stay well under it.
MAX_WRITE_BYTES = 8 * 1024 * 1024


def line_bodies(lines: Sequence[bytes], max_bytes: int = MAX_WRITE_BYTES) -> list[bytes]:
    """Lines joined into request bodies of at most ``max_bytes`` (a longer line goes alone)."""
    if sum(map(len, lines)) + len(lines) <= max_bytes:
        return [b"\n".join(lines)] if lines else []
    bodies: list[bytes] = []
    start, size = 0, 0
    for index, line in enumerate(lines):
        length = len(line) + 1
        if size and size + length > max_bytes:
            bodies.append(b"\n".join(lines[start:index]))
            start, size = index, 0
        size += length
    if start < len(lines):
        bodies.append(b"\n".join(lines[start:]))
    return bodies


class TimeSeriesSink(Protocol):
    """Where accepted readings and events are stored."""

    name: str

    async def write(self, batch: SinkBatch) -> None:
        """Store ``batch`` durably or raise :class:`SinkError`."""
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

    def __init__(
        self,
        url: str,
        *,
        token: str,
        org: str,
        bucket: str,
        timeout_s: float,
        max_write_bytes: int = MAX_WRITE_BYTES,
    ) -> None:
        self._client = InfluxDBClient(
            url=url, token=token or "anju", org=org, timeout=int(timeout_s * 1000)
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket = bucket
        self._org = org
        self._precision: Any = WritePrecision.MS
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="influx")
        self._max_write_bytes = max_write_bytes
        self.requests = 0

    def _write_sync(self, batch: SinkBatch) -> None:
        # Formatted here, on the writer thread; each body is one request, in order, so a
        # failure part-way writes the earlier bodies again on retry (same points: overwritten).
        for body in line_bodies(batch.lines(), self._max_write_bytes):
            try:
                self._write_api.write(
                    bucket=self._bucket, org=self._org, record=body, write_precision=self._precision
                )
            except Exception as exc:
                raise SinkError(f"influxdb write failed: {_short(exc)}") from exc
            self.requests += 1

    async def write(self, batch: SinkBatch) -> None:
        """Write one batch (in several requests if its body would be too large)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write_sync, batch)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]
        self._executor.shutdown(wait=False)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
