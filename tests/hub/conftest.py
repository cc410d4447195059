"""Shared fixtures for hub tests: a small site and an ingest path on real SQLite files."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hub import HubStore, Ingestor, Registry, SqliteSink, parse_site
from hub.columns import DeviceTable, Readings
from hub.ingest import RuleSink
from hub.spool import Forwarder
from wire import Ack

SITE: dict[str, Any] = {
    "site": {"id": "s1", "name": "Test Garden", "timezone": "Asia/Shanghai"},
    "people": [
        {"id": "wang", "name": "Wang Fang", "role": "grid_worker"},
        {"id": "chen", "name": "Chen Min", "role": "community_office"},
    ],
    "escalation": {"office": ["chen"]},
    "grids": [
        {
            "id": "north",
            "name": "North grid",
            "worker": "wang",
            "buildings": [{"id": "3", "name": "Building 3"}],
        }
    ],
    "gateways": [{"id": "gw1"}, {"id": "gw2"}],
    "devices": [
        {
            "id": "th1",
            "gateway": "gw1",
            "kind": "temp_humidity",
            "building": "3",
            "floor": 2,
            "unit": "201",
        },
        {
            "id": "smoke1",
            "gateway": "gw1",
            "kind": "smoke",
            "building": "3",
            "floor": 2,
            "unit": "201",
        },
        {
            "id": "reader1",
            "gateway": "gw1",
            "kind": "door_reader",
            "grid": "north",
            "area": "East gate",
        },
        {"id": "other", "gateway": "gw2", "kind": "co2", "building": "3", "floor": 1},
    ],
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RecordingRules(RuleSink):
    def __init__(self, devices: DeviceTable | None = None) -> None:
        self.readings: list[tuple[str, int, dict[str, float]]] = []
        self.events: list[tuple[str, int, str]] = []
        self.devices = devices

    def on_readings(self, readings: Readings) -> None:
        assert self.devices is not None
        for slot, ts, values in readings.rows():
            device = self.devices.device(slot)
            assert device is not None
            self.readings.append((device.id, ts, values))

    def on_event(self, device, ts_ms, kind, data):
        self.events.append((device.id, ts_ms, kind))


class IngestRig:
    """An Ingestor on real SQLite files, recording acks and rule input."""

    def __init__(
        self,
        ingestor: Ingestor,
        store: HubStore,
        sink: SqliteSink,
        forwarder: Forwarder,
        rules: RecordingRules,
        acks: list[tuple[str, Ack]],
    ) -> None:
        self.ingestor = ingestor
        self.store = store
        self.sink = sink
        self.forwarder = forwarder
        self.rules = rules
        self.acks = acks

    async def flush(self) -> None:
        """Make everything durable, then forward the spool to the sink."""
        await self.ingestor.flush()
        task = asyncio.create_task(self.forwarder.run())
        try:
            async with asyncio.timeout(5):
                await self.forwarder.wait_drained()
        finally:
            task.cancel()


@pytest.fixture
def registry() -> Registry:
    return Registry(parse_site(SITE))


@pytest.fixture
async def rig(tmp_path, registry) -> AsyncIterator[IngestRig]:
    store = HubStore(tmp_path / "hub.sqlite3")
    store.save_registry(registry)
    sink = SqliteSink(tmp_path / "tsdb.sqlite3", retention_days=30)
    devices = DeviceTable(registry)
    rules = RecordingRules(devices)
    acks: list[tuple[str, Ack]] = []
    forwarder = Forwarder(store, sink, devices)
    ingestor = Ingestor(
        registry=registry,
        devices=devices,
        store=store,
        forwarder=forwarder,
        rules=rules,
        publish_ack=lambda gw, ack: acks.append((gw, ack)),
    )
    yield IngestRig(ingestor, store, sink, forwarder, rules, acks)
    await sink.aclose()
    store.close()
