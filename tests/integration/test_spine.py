"""The spine, end to end on real servers: simulated driver → edge agent → Mosquitto → hub →
VictoriaMetrics (InfluxDB v2 write API), and smoke → rule → webhook naming the place."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import EdgeAgent, parse_gateway_config
from hub import Hub, HubConfig, HubMqttSettings, InfluxSettings, NotifierSettings, WebhookSettings
from hub.ingest import now_ms
from tests.servers import Mosquitto, VictoriaMetrics, WebhookReceiver

pytestmark = pytest.mark.integration

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
SECRET = "integration-test-site-secret"  # noqa: S105 - a test key, not a credential

SITE: dict[str, Any] = {
    "site": {"id": "sunrise", "name": "Sunrise Garden", "timezone": "Asia/Shanghai"},
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
    "gateways": [{"id": "gw-north"}],
    "devices": [
        {
            "id": "b3-2-201-th",
            "gateway": "gw-north",
            "kind": "temp_humidity",
            "building": "3",
            "floor": 2,
            "unit": "201",
        },
        {
            "id": "b3-2-201-smoke",
            "gateway": "gw-north",
            "kind": "smoke",
            "building": "3",
            "floor": 2,
            "unit": "201",
        },
    ],
}


def gateway(
    mosquitto: Mosquitto, data_dir: Path, *, incidents: list[dict[str, Any]] | None = None
) -> EdgeAgent:
    config = parse_gateway_config(
        {
            "site": "sunrise",
            "gateway": "gw-north",
            "data_dir": str(data_dir),
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "privacy": {"site_secret": SECRET},
            "batch": {"max_readings": 50, "max_delay_s": 0.2},
            "health_interval_s": 1,
            "drivers": [
                {
                    "type": "simulated",
                    "id": "sim",
                    "seed": 3,
                    "interval_s": 1,
                    "devices": [
                        {"id": "b3-2-201-th", "kind": "temp_humidity"},
                        {"id": "b3-2-201-smoke", "kind": "smoke"},
                    ],
                    "scenario": {"incidents": incidents or []},
                }
            ],
        }
    )
    return EdgeAgent(config)


def hub_config(tmp_path: Path, mosquitto: Mosquitto, **changes: Any) -> HubConfig:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(SITE), encoding="utf-8")
    return HubConfig(
        site_file=site_file,
        data_dir=tmp_path / "hub",
        mqtt=HubMqttSettings(host=mosquitto.host, port=mosquitto.port),
        **changes,
    )


@contextlib.asynccontextmanager
async def running(hub: Hub, *agents: EdgeAgent) -> AsyncIterator[None]:
    hub_task = asyncio.create_task(hub.run())
    async with asyncio.timeout(10):
        await hub.mqtt.wait_connected()
    agent_tasks = [asyncio.create_task(agent.run()) for agent in agents]
    try:
        yield
    finally:
        for agent in agents:
            agent.stop()
        await _within(asyncio.gather(*agent_tasks), "agents")
        hub.stop()
        await _within(hub_task, "hub")


async def _within(awaitable: Any, what: str, seconds: float = 20) -> None:
    """Await a shutdown; if it hangs, show every task's stack before failing."""
    try:
        async with asyncio.timeout(seconds):
            await awaitable
    except TimeoutError:
        for task in asyncio.all_tasks():
            task.print_stack()
        raise AssertionError(f"{what} did not stop within {seconds:g} s") from None


class Tap:
    """A plain subscriber that records what the gateway really published."""

    def __init__(self, mosquitto: Mosquitto, topic: str) -> None:
        self.payloads: list[bytes] = []
        self._subscribed = threading.Event()
        self._client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self._client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda _c, _u, msg: self.payloads.append(bytes(msg.payload))
        self._client.connect(mosquitto.host, mosquitto.port)
        self._client.loop_start()
        assert self._subscribed.wait(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


async def test_a_simulated_reading_is_stored_in_victoriametrics_with_its_place(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    tap = Tap(mosquitto, "anju/v1/sunrise/gw-north/data")
    hub = Hub(hub_config(tmp_path, mosquitto, influx=InfluxSettings(url=victoria.url)), rules=None)
    agent = gateway(mosquitto, tmp_path / "edge")
    async with running(hub, agent):
        async with asyncio.timeout(20):
            while hub.ingestor.counters["acks"] < 3:
                await asyncio.sleep(0.1)
            agent.stop()
            # Everything the gateway put on the wire is acknowledged, then in the store.
            last_seq = max(orjson.loads(p)["seq"] for p in tap.payloads)
            while hub.ingestor.gateways["gw-north"].acked < last_seq:
                await asyncio.sleep(0.05)
            await hub.forwarder.wait_drained()
    tap.close()

    published = [
        r for p in tap.payloads for r in orjson.loads(p)["readings"] if r["dev"] == "b3-2-201-th"
    ]
    assert published, "the gateway published no temperature readings"
    series = await asyncio.to_thread(
        victoria.wait_for,
        '{__name__="reading_temperature",device="b3-2-201-th"}',
        lambda found: bool(found) and len(found[0]["timestamps"]) >= len(published),
    )
    assert len(series) == 1
    labels = series[0]["metric"]
    assert labels["site"] == "sunrise"
    assert labels["gateway"] == "gw-north"
    assert labels["grid"] == "north"
    assert labels["building"] == "3"
    assert labels["floor"] == "2"
    assert labels["unit"] == "201"
    assert labels["device_kind"] == "temp_humidity"
    stored = dict(zip(series[0]["timestamps"], series[0]["values"], strict=True))
    for reading in published:
        assert stored[reading["ts"]] == pytest.approx(reading["values"]["temperature"])
    # The hub acknowledged end to end, so the gateway's queue drained.
    assert agent.health().queue_depth <= 2
    assert hub.ingestor.counters["quarantined"] == 0


async def test_scenario_smoke_reaches_the_webhook_naming_the_place(
    tmp_path: Path, mosquitto: Mosquitto, webhook_receiver: WebhookReceiver
) -> None:
    config = hub_config(
        tmp_path,
        mosquitto,
        rules=(CONFIG_DIR / "rules" / "safety.yaml",),
        notifiers=NotifierSettings(
            log=False, webhooks=(WebhookSettings(name="duty", url=webhook_receiver.url),)
        ),
    )
    hub = Hub(config)
    agent = gateway(
        mosquitto,
        tmp_path / "edge",
        incidents=[{"at": "1s", "do": "smoke", "device": "b3-2-201-smoke", "duration": "3s"}],
    )
    started = now_ms()
    async with running(hub, agent):
        requests = await asyncio.to_thread(
            webhook_receiver.wait_for,
            lambda reqs: any(r.json and r.json["status"] == "resolved" for r in reqs),
            20,
        )

    firing = next(r.json for r in requests if r.json and r.json["status"] == "firing")
    alert = firing["alerts"][0]
    assert firing["version"] == "4"
    assert alert["labels"]["alertname"] == "smoke-detected"
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["building"] == "3"
    assert alert["labels"]["floor"] == "2"
    assert alert["labels"]["unit"] == "201"
    assert alert["labels"]["grid"] == "north"
    assert "Building 3, floor 2, unit 201" in alert["annotations"]["description"]
    assert "Wang Fang" in alert["annotations"]["recipients"]
    assert "Chen Min" in alert["annotations"]["recipients"]  # critical: every tier at once
    resolved = next(r.json for r in requests if r.json and r.json["status"] == "resolved")
    assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]
    assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    assert now_ms() - started < 20_000


async def test_hostile_traffic_over_the_broker_is_quarantined_while_good_data_is_stored(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    hub = Hub(hub_config(tmp_path, mosquitto, influx=InfluxSettings(url=victoria.url)), rules=None)
    agent = gateway(mosquitto, tmp_path / "edge")
    attacker = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    attacker.connect(mosquitto.host, mosquitto.port)
    attacker.loop_start()
    hostile = [
        ("anju/v1/sunrise/gw-north/data", b"{not json"),
        ("anju/v1/sunrise/gw-north/data", orjson.dumps({"v": 9})),
        (
            "anju/v1/sunrise/gw-north/event",
            orjson.dumps(
                {
                    "v": 1,
                    "session": "x",
                    "seq": 1,
                    "dev": "b3-2-201-smoke",
                    "ts": now_ms(),
                    "kind": "alarm.smoke",
                    "data": {"active": "maybe"},
                }
            ),
        ),
        ("anju/v1/sunrise/intruder/data", orjson.dumps({"v": 1})),
        ("anju/v1/elsewhere/gw-north/data", orjson.dumps({"v": 1})),
        ("anju/v1/sunrise/gw-north/data", b"x" * 700_000),
    ]
    async with running(hub, agent):
        for _ in range(5):
            for topic, payload in hostile:
                attacker.publish(topic, payload, qos=1)
            await asyncio.sleep(0.2)
        async with asyncio.timeout(20):
            while (
                hub.ingestor.counters["quarantined"] < 5 * len(hostile)
                or hub.ingestor.counters["acks"] < 3
            ):
                await asyncio.sleep(0.1)
        quarantined = await hub.store.quarantine(limit=100)
    attacker.loop_stop()
    attacker.disconnect()

    assert {e.field for e in quarantined} >= {"$", "v", "data.active", "gateway", "site"}
    series = await asyncio.to_thread(victoria.wait_for, '{__name__="reading_temperature"}')
    assert series[0]["metric"]["device"] == "b3-2-201-th"
    assert hub.ingestor.counters["readings"] > 0
