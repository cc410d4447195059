"""Points exactly as the hub writes them: the example site's messages through a real Ingestor.

The hub's ingest path turns broker messages into :class:`hub.Point` objects (InfluxDB line
protocol).  Running it here, instead of writing lines by hand, makes the dashboards' tests check
the panels against what the writer really produces.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from hub import HubStore, Ingestor, Point, Registry, SinkBatch, load_site
from hub.columns import DeviceTable
from hub.ingest import RuleSink
from hub.spool import Forwarder
from wire import DataBatch, Event, GatewayTopics, Health, Measurement, Reading, encode

ROOT = Path(__file__).resolve().parents[2]
SITE_FILE = ROOT / "config" / "site.yaml"
SESSION = "dashboards-test"

# Values each device kind of the example site reports.
VALUES_BY_KIND: dict[str, dict[str, float]] = {
    "temp_humidity": {"temperature": 23.5, "humidity": 61.0, "battery": 80.0, "rssi": -71.0},
    "co2": {"co2": 900.0},
    "pm25": {"pm1": 8.0, "pm25": 35.0, "pm10": 50.0},
    "smoke": {"smoke": 0.0, "battery": 12.0},
    "water_leak": {"water_leak": 1.0},
    "gas": {"gas": 2.5},
}

# (device, kind, data) events that light up the boards' event panels.
EVENTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("east-gate-reader", "door.access", {"credential": "h1:" + "ab" * 16, "format": "w26"}),
    ("east-gate-reader", "door.forced", {}),
    ("east-gate-cam", "camera.motion", {"active": True}),
    ("east-gate-cam", "camera.intrusion", {"zone": "gate"}),
    ("b3-2-201-smoke", "alarm.smoke", {"active": True}),
    ("b1-pump-leak", "alarm.water_leak", {"active": True}),
    ("b5-3-302-button", "emergency.button", {"pressed": True}),
    ("b5-3-302-motion", "presence.motion", {"active": True}),
    ("b3-lobby-co2", "device.fault", {"reason": "no answer"}),
)


class RecordingSink:
    """A time-series sink that keeps what it is given."""

    name = "recording"

    def __init__(self) -> None:
        self.points: list[Point] = []

    async def write(self, batch: SinkBatch) -> None:
        if batch.readings is not None:
            for slot, ts, values in batch.readings.rows():
                device = batch.devices.device(slot)
                assert device is not None
                self.points.append(
                    Point(Measurement.READING.value, device.tags, values, ts, device.id)
                )
        self.points.extend(batch.points)

    async def aclose(self) -> None:
        return None


def _messages(registry: Registry, ts_ms: int) -> list[tuple[str, bytes]]:
    site = registry.site_id
    seq: dict[str, int] = {}

    def next_seq(gateway: str) -> int:
        seq[gateway] = seq.get(gateway, 0) + 1
        return seq[gateway]

    messages: list[tuple[str, bytes]] = []
    for gateway in sorted(registry.gateways):
        readings = [
            Reading(dev=device.id, ts=ts_ms, values=VALUES_BY_KIND[device.kind])
            for device in registry.devices.values()
            if device.gateway == gateway and device.kind in VALUES_BY_KIND
        ]
        topics = GatewayTopics(site, gateway)
        if readings:
            batch = DataBatch(session=SESSION, seq=next_seq(gateway), readings=readings)
            messages.append((topics.data, encode(batch)))
        health = Health(
            ts=ts_ms,
            session=SESSION,
            queue_depth=3,
            oldest_age_s=4.5,
            dropped={"telemetry": 2},
        )
        messages.append((topics.health, encode(health)))
    for device_id, kind, data in EVENTS:
        gateway = registry.devices[device_id].gateway
        event = Event(
            session=SESSION,
            seq=next_seq(gateway),
            dev=device_id,
            ts=ts_ms,
            kind=kind,
            data=data,
        )
        messages.append((GatewayTopics(site, gateway).event, encode(event)))
    return messages


async def hub_points(workdir: Path, ts_ms: int) -> list[Point]:
    """The points the hub writes for the example site's devices, events and gateways."""
    registry = Registry(load_site(SITE_FILE))
    workdir.mkdir(parents=True, exist_ok=True)
    store = HubStore(workdir / "hub.sqlite3")
    store.save_registry(registry)
    sink = RecordingSink()
    devices = DeviceTable(registry)
    forwarder = Forwarder(store, sink, devices)
    ingestor = Ingestor(
        registry=registry,
        devices=devices,
        store=store,
        forwarder=forwarder,
        rules=RuleSink(),
        publish_ack=lambda _gateway, _ack: None,
    )
    try:
        for topic, payload in _messages(registry, ts_ms):
            ingestor.handle(topic, payload, received_ms=ts_ms)
        quarantined = ingestor.counters["quarantined"]
        assert not quarantined, f"{quarantined} test messages quarantined"
        await ingestor.flush()
        task = asyncio.create_task(forwarder.run())
        try:
            async with asyncio.timeout(10):
                await forwarder.wait_drained()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        store.close()
    return sink.points


def series_of(point: Point) -> list[tuple[str, dict[str, str]]]:
    """The VictoriaMetrics series of a point: ``{measurement}_{field}`` with its tags."""
    tags = dict(pair.split("=", 1) for pair in point.tags.split(",")) if point.tags else {}
    return [(f"{point.measurement}_{field}", tags) for field in point.fields]
