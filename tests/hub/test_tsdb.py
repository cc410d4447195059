"""The embedded store: a row per reading, values as columns, day tables, queries, retention."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from hub import Point, Registry, SqliteSink, parse_site
from hub.columns import DeviceTable, Readings
from hub.sinks import SinkBatch
from hub.tsdb import DAY_MS
from tests.hub.conftest import SITE

NOW = time.time_ns() // 1_000_000
TODAY = NOW // DAY_MS * DAY_MS


@pytest.fixture
def devices() -> DeviceTable:
    return DeviceTable(Registry(parse_site(SITE)))


@pytest.fixture
async def sink(tmp_path: Path):
    store = SqliteSink(tmp_path / "tsdb.sqlite3", retention_days=30)
    yield store
    await store.aclose()


def batch(devices: DeviceTable, rows: list[tuple[str, int, dict[str, float]]]) -> SinkBatch:
    names = list(dict.fromkeys(name for _, _, values in rows for name in values))
    readings = Readings(
        np.array([devices.slot_of[dev] for dev, _, _ in rows], dtype=np.int32),
        np.array([ts for _, ts, _ in rows], dtype=np.int64),
        {n: np.array([v.get(n, np.nan) for _, _, v in rows], dtype=np.float64) for n in names},
    )
    return SinkBatch(readings, (), devices)


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return sorted(
            n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        )


async def test_one_row_per_reading_with_its_values_as_columns(sink, devices, tmp_path) -> None:
    t0 = TODAY + 3600_000
    await sink.write(
        batch(
            devices,
            [
                ("th1", t0, {"temperature": 21.5, "humidity": 40.0}),
                ("th1", t0 + 1000, {"temperature": 21.7}),
                ("other", t0, {"co2": 800.0}),
            ],
        )
    )
    assert await sink.count("reading") == 3
    with sqlite3.connect(tmp_path / "tsdb.sqlite3") as conn:
        day = t0 // DAY_MS
        columns = [c[1] for c in conn.execute(f"PRAGMA table_info(reading_{day})")]
        assert columns == ["device", "ts", "v_temperature", "v_humidity", "v_co2"]
        row = conn.execute(
            f"SELECT v_temperature, v_humidity, v_co2 FROM reading_{day} WHERE ts = ?",  # noqa: S608
            (t0 + 1000,),
        ).fetchone()
    assert row == (21.7, None, None)  # absent values are NULL, not NaN
    assert await sink.history("th1", "temperature", t0) == [(t0, 21.5), (t0 + 1000, 21.7)]
    assert await sink.history("th1", "humidity", t0) == [(t0, 40.0)]
    assert await sink.latest("th1") == (t0 + 1000, {"temperature": 21.7, "humidity": 40.0})
    assert await sink.latest("smoke1") is None


async def test_writing_the_same_readings_again_stores_them_once(sink, devices) -> None:
    t0 = TODAY + 7200_000
    first = batch(devices, [("th1", t0, {"temperature": 20.0, "humidity": 30.0})])
    await sink.write(first)
    await sink.write(first)  # a crash between a write and its unspooling
    # Another message of the same instant adds its values without erasing the others.
    await sink.write(batch(devices, [("th1", t0, {"battery": 90.0})]))
    assert await sink.count("reading") == 1
    assert await sink.latest("th1") == (
        t0,
        {"temperature": 20.0, "humidity": 30.0, "battery": 90.0},
    )


async def test_readings_across_midnight_go_to_their_days_and_downsample_as_one(
    sink, devices, tmp_path
) -> None:
    start = TODAY - 2 * 60_000
    rows = [("th1", start + i * 10_000, {"temperature": float(i)}) for i in range(24)]
    await sink.write(batch(devices, rows))
    days = [t for t in tables(tmp_path / "tsdb.sqlite3") if t.startswith("reading_")]
    assert days == [f"reading_{TODAY // DAY_MS - 1}", f"reading_{TODAY // DAY_MS}"]
    buckets = await sink.downsample("th1", "temperature", start, start + 240_000, 60_000)
    assert [(b.start_ms, b.count, b.min, b.max) for b in buckets] == [
        (start + k * 60_000, 6, 6.0 * k, 6.0 * k + 5) for k in range(4)
    ]
    assert buckets[0].mean == pytest.approx(2.5)
    history = await sink.history("th1", "temperature", start + 50_000, start + 80_000)
    assert history == [(start + 50_000, 5.0), (start + 60_000, 6.0), (start + 70_000, 7.0)]


async def test_retention_drops_whole_days(tmp_path, devices) -> None:
    sink = SqliteSink(tmp_path / "tsdb.sqlite3", retention_days=2)
    try:
        old = TODAY - 5 * DAY_MS
        # The first write of a process purges what is past retention, itself kept.
        await sink.write(batch(devices, [("th1", old, {"temperature": 1.0})]))
        assert f"reading_{old // DAY_MS}" not in tables(tmp_path / "tsdb.sqlite3")
    finally:
        await sink.aclose()
    sink = SqliteSink(tmp_path / "tsdb.sqlite3", retention_days=2)
    try:
        await sink.write(batch(devices, [("th1", NOW, {"temperature": 2.0})]))
        assert await sink.count("reading") == 1
        assert await sink.history("th1", "temperature", 0) == [(NOW, 2.0)]
    finally:
        await sink.aclose()


async def test_events_and_health_points_are_counted_by_measurement(sink, devices) -> None:
    event = Point("event", "device=smoke1,kind=alarm.smoke", {"count": 1.0}, NOW, "smoke1")
    health = Point("gateway", "gateway=gw1", {"queue_depth": 3.0, "oldest_age_s": 0.5}, NOW, "gw1")
    await sink.write(SinkBatch(None, [event, health], devices))
    assert await sink.count("event") == 1
    assert await sink.count("gateway") == 2
    assert await sink.count("reading") == 0
    assert await sink.count() == 3


async def test_a_reopened_store_knows_its_devices_and_columns(tmp_path, devices) -> None:
    path = tmp_path / "tsdb.sqlite3"
    sink = SqliteSink(path, retention_days=30)
    await sink.write(batch(devices, [("th1", NOW, {"temperature": 5.0})]))
    await sink.aclose()
    sink = SqliteSink(path, retention_days=30)
    try:
        await sink.write(batch(devices, [("th1", NOW + 1, {"temperature": 6.0, "humidity": 1.0})]))
        assert await sink.history("th1", "temperature", 0) == [(NOW, 5.0), (NOW + 1, 6.0)]
    finally:
        await sink.aclose()
