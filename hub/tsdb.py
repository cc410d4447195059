"""The embedded time-series store: SQLite, one row per reading, values as columns, by day.

Readings go to one table per UTC day, ``reading_<day>``, keyed ``(device, ts)`` without a rowid
(a device's history is one range of one B-tree); each value name is a column, added the first
time the name is seen, so a reading of three values is one row, not three. Writes are large
sorted batches in one transaction. Retention drops whole day tables, never rows one by one.

Events and gateway health, a few points a second, go to one small ``point`` table.

Queries serve the hub's own views: the latest values of a device, a range of one field, and the
same downsampled into buckets.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hub.columns import Readings
from hub.db import Database, transaction
from hub.errors import SinkError
from hub.sinks import Point, SinkBatch
from wire import Measurement

DAY_MS = 86_400_000
_TABLE = re.compile(r"^reading_(\d+)$")
_PURGE_EVERY_S = 3600

SCHEMA = """
CREATE TABLE IF NOT EXISTS device (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS point (
    measurement TEXT NOT NULL, device TEXT NOT NULL, field TEXT NOT NULL, ts INTEGER NOT NULL,
    value REAL NOT NULL, PRIMARY KEY (measurement, device, field, ts)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS point_ts ON point (ts);
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Bucket:
    """One downsampled interval of a field."""

    start_ms: int
    count: int
    min: float
    mean: float
    max: float


def _column(name: str) -> str:
    # Value names are ^[a-z][a-z0-9_]{0,31}$ (checked by the wire), so this is a safe identifier.
    return f'"v_{name}"'


class SqliteSink:
    """The embedded default store, with bounded retention."""

    name = "sqlite"

    def __init__(self, path: Path, *, retention_days: float) -> None:
        self._db = Database(path, schema=SCHEMA)
        self._retention_ms = int(retention_days * DAY_MS)
        self._last_purge = time.monotonic() - _PURGE_EVERY_S  # purge on the first write
        self._device_ids: dict[str, int] = {}
        self._columns: dict[int, set[str]] = {}  # day -> value names it has columns for
        self._db.call_sync(self._load)

    def _load(self, conn: sqlite3.Connection) -> None:
        self._device_ids = {name: i for i, name in conn.execute("SELECT id, name FROM device")}
        for day in self._days(conn):
            info = conn.execute(f"PRAGMA table_info(reading_{day})").fetchall()
            self._columns[day] = {c[1][2:] for c in info if c[1].startswith("v_")}

    @staticmethod
    def _days(conn: sqlite3.Connection) -> list[int]:
        names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return sorted(int(m.group(1)) for (n,) in names if (m := _TABLE.match(n)))

    # -- writing ---------------------------------------------------------------------------

    async def write(self, batch: SinkBatch) -> None:
        """Insert one batch in one transaction, dropping expired days now and then."""
        purge_before = None
        if time.monotonic() - self._last_purge > _PURGE_EVERY_S:
            self._last_purge = time.monotonic()
            purge_before = time.time_ns() // 1_000_000 - self._retention_ms
        slot_names: dict[int, str] = {}
        if batch.readings is not None:
            for slot in np.unique(batch.readings.slots).tolist():
                device = batch.devices.device(slot)
                if device is not None:
                    slot_names[slot] = device.id

        def _insert(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                if batch.readings is not None and len(batch.readings):
                    self._insert_readings(conn, batch.readings, slot_names)
                if batch.points:
                    self._insert_points(conn, batch.points)
                if purge_before is not None:
                    self._purge(conn, purge_before)

        try:
            await self._db.call(_insert)
        except sqlite3.Error as exc:
            # The transaction rolled back: forget schema changes it may have cached.
            self._db.call_sync(self._load)
            raise SinkError(f"sqlite write failed: {exc}") from exc

    def _device_id(self, conn: sqlite3.Connection, name: str) -> int:
        device_id = self._device_ids.get(name)
        if device_id is None:
            cursor = conn.execute("INSERT INTO device (name) VALUES (?)", (name,))
            device_id = self._device_ids[name] = int(cursor.lastrowid or 0)
        return device_id

    def _insert_readings(
        self, conn: sqlite3.Connection, readings: Readings, slot_names: dict[int, str]
    ) -> None:
        # Slot -> this file's device id, through a lookup array (one numpy gather per batch).
        top = int(readings.slots.max()) + 1
        lookup = np.full(top, -1, dtype=np.int64)
        for slot, name in slot_names.items():
            lookup[slot] = self._device_id(conn, name)
        ids = lookup[readings.slots]
        keep = ids >= 0  # a device removed from the registry since: not stored
        days = readings.ts // DAY_MS
        for day in np.unique(days[keep]).tolist():
            rows = keep & (days == day)
            self._insert_day(conn, int(day), ids[rows], readings.ts[rows], readings.fields, rows)

    def _insert_day(
        self,
        conn: sqlite3.Connection,
        day: int,
        ids: np.ndarray[Any, np.dtype[np.int64]],
        ts: np.ndarray[Any, np.dtype[np.int64]],
        fields: dict[str, np.ndarray[Any, np.dtype[np.float64]]],
        rows: np.ndarray[Any, np.dtype[np.bool_]],
    ) -> None:
        columns = {name: values[rows] for name, values in fields.items()}
        columns = {name: v for name, v in columns.items() if not np.isnan(v).all()}
        self._ensure_columns(conn, day, list(columns))
        # Sorted by key, so the B-tree is filled in order, a page at a time.
        order = np.lexsort((ts, ids))
        names = list(columns)
        values = [columns[name][order].tolist() for name in names]  # NaN binds as NULL
        records = list(zip(ids[order].tolist(), ts[order].tolist(), *values, strict=True))
        cols = ", ".join(_column(n) for n in names)
        marks = ", ".join("?" * (len(names) + 2))
        # A message written again (a crash between a write and its unspooling) or a second
        # message of the same instant: fill in, never double, never erase another's values.
        update = ", ".join(
            f"{_column(n)} = coalesce(excluded.{_column(n)}, {_column(n)})" for n in names
        )
        conn.executemany(
            f"INSERT INTO reading_{day} (device, ts, {cols}) VALUES ({marks}) "  # noqa: S608
            f"ON CONFLICT (device, ts) DO UPDATE SET {update}",
            records,
        )

    def _ensure_columns(self, conn: sqlite3.Connection, day: int, names: Sequence[str]) -> None:
        have = self._columns.get(day)
        if have is None:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS reading_{day} (device INTEGER NOT NULL, "
                "ts INTEGER NOT NULL, PRIMARY KEY (device, ts)) WITHOUT ROWID"
            )
            have = self._columns[day] = set()
        for name in names:
            if name not in have:
                conn.execute(f"ALTER TABLE reading_{day} ADD COLUMN {_column(name)} REAL")
                have.add(name)

    @staticmethod
    def _insert_points(conn: sqlite3.Connection, points: Sequence[Point]) -> None:
        rows = [
            (p.measurement, p.device, name, p.ts_ms, value)
            for p in points
            for name, value in p.fields.items()
        ]
        conn.executemany("INSERT OR REPLACE INTO point VALUES (?, ?, ?, ?, ?)", rows)

    def _purge(self, conn: sqlite3.Connection, before_ms: int) -> None:
        # A day goes once all of it is older than the retention.
        for day in self._days(conn):
            if (day + 1) * DAY_MS <= before_ms:
                conn.execute(f"DROP TABLE reading_{day}")
                self._columns.pop(day, None)
        conn.execute("DELETE FROM point WHERE ts < ?", (before_ms,))

    # -- reading ---------------------------------------------------------------------------

    async def latest(self, device: str) -> tuple[int, dict[str, float]] | None:
        """The newest value of each of a device's fields, and the newest timestamp."""

        def _query(conn: sqlite3.Connection) -> tuple[int, dict[str, float]] | None:
            device_id = self._device_ids.get(device)
            if device_id is None:
                return None
            found: dict[str, float] = {}
            newest = 0
            for day in reversed(self._days(conn)):
                for name in sorted(self._columns.get(day, ())):
                    if name in found:
                        continue
                    row = conn.execute(
                        f"SELECT ts, {_column(name)} FROM reading_{day} "  # noqa: S608
                        f"WHERE device = ? AND {_column(name)} IS NOT NULL "
                        "ORDER BY ts DESC LIMIT 1",
                        (device_id,),
                    ).fetchone()
                    if row is not None:
                        found[name] = float(row[1])
                        newest = max(newest, int(row[0]))
                if found:
                    break  # older days hold only older values
            return (newest, found) if found else None

        return await self._db.call(_query)

    async def history(
        self,
        device: str,
        field: str,
        since_ms: int,
        until_ms: int | None = None,
        limit: int = 10_000,
    ) -> list[tuple[int, float]]:
        """Stored values of one device's field in ``[since_ms, until_ms)``, oldest first."""
        until = until_ms if until_ms is not None else 2**62

        def _query(conn: sqlite3.Connection) -> list[tuple[int, float]]:
            device_id = self._device_ids.get(device)
            out: list[tuple[int, float]] = []
            if device_id is None:
                return out
            for day in self._days(conn):
                if (day + 1) * DAY_MS <= since_ms or day * DAY_MS >= until:
                    continue
                if field not in self._columns.get(day, ()):
                    continue
                out += conn.execute(
                    f"SELECT ts, {_column(field)} FROM reading_{day} "  # noqa: S608
                    f"WHERE device = ? AND ts >= ? AND ts < ? AND {_column(field)} IS NOT NULL "
                    "ORDER BY ts LIMIT ?",
                    (device_id, since_ms, until, limit - len(out)),
                ).fetchall()
                if len(out) >= limit:
                    break
            return [(int(t), float(v)) for t, v in out]

        return await self._db.call(_query)

    async def downsample(
        self, device: str, field: str, since_ms: int, until_ms: int, step_ms: int
    ) -> list[Bucket]:
        """One field of a device in buckets of ``step_ms``: count, min, mean and max."""
        if step_ms <= 0:
            raise ValueError("step_ms must be positive")

        def _query(conn: sqlite3.Connection) -> list[Bucket]:
            device_id = self._device_ids.get(device)
            if device_id is None:
                return []
            out: list[Bucket] = []
            for day in self._days(conn):
                if (day + 1) * DAY_MS <= since_ms or day * DAY_MS >= until_ms:
                    continue
                if field not in self._columns.get(day, ()):
                    continue
                col = _column(field)
                out += [
                    Bucket(int(start), int(n), float(lo), float(mean), float(hi))
                    for start, n, lo, mean, hi in conn.execute(
                        f"SELECT (ts - ?) / ? * ? + ?, COUNT({col}), MIN({col}), AVG({col}), "  # noqa: S608
                        f"MAX({col}) FROM reading_{day} WHERE device = ? AND ts >= ? AND ts < ? "
                        f"AND {col} IS NOT NULL GROUP BY 1 ORDER BY 1",
                        (since_ms, step_ms, step_ms, since_ms, device_id, since_ms, until_ms),
                    )
                ]
            return _merge_buckets(out)

        return await self._db.call(_query)

    async def count(self, measurement: str | None = None) -> int:
        """How many readings (or, for other measurements, values) are stored."""

        def _count(conn: sqlite3.Connection) -> int:
            total = 0
            if measurement in (None, Measurement.READING.value):
                for day in self._days(conn):
                    total += int(
                        conn.execute(f"SELECT COUNT(*) FROM reading_{day}").fetchone()[0]  # noqa: S608
                    )
            if measurement is None:
                total += int(conn.execute("SELECT COUNT(*) FROM point").fetchone()[0])
            elif measurement != Measurement.READING.value:
                row = conn.execute(
                    "SELECT COUNT(*) FROM point WHERE measurement = ?", (measurement,)
                ).fetchone()
                total += int(row[0])
            return total

        return await self._db.call(_count)

    async def aclose(self) -> None:
        """Close the database."""
        self._db.close()


def _merge_buckets(buckets: list[Bucket]) -> list[Bucket]:
    # A bucket that straddles midnight UTC comes from two day tables: combine the halves.
    merged: list[Bucket] = []
    for bucket in buckets:
        if merged and merged[-1].start_ms == bucket.start_ms:
            a = merged[-1]
            n = a.count + bucket.count
            mean = (a.mean * a.count + bucket.mean * bucket.count) / n
            merged[-1] = Bucket(a.start_ms, n, min(a.min, bucket.min), mean, max(a.max, bucket.max))
        else:
            merged.append(bucket)
    return merged
