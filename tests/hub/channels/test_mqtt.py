"""MQTT channel against a real Mosquitto broker."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import orjson
import pytest
from pydantic import ValidationError

from hub.channels import MqttChannelSettings, MqttNotifier
from hub.notifiers import NotifyError
from tests.hub.channels.conftest import FIRING_MS, RESOLVED_MS, firing, resolved
from tests.servers import LOOPBACK, Mosquitto, free_port

pytestmark = pytest.mark.integration

TOPIC = "anju/v1/sunrise/alerts/critical/smoke-detected/b3-2-201-smoke"


async def collect(broker: Mosquitto, topic: str, *, wait: float = 0.5) -> list[aiomqtt.Message]:
    """Everything delivered on ``topic`` (retained messages included) within ``wait`` s."""
    got: list[aiomqtt.Message] = []
    async with aiomqtt.Client(broker.host, broker.port, identifier="test-sub") as client:
        await client.subscribe(topic, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                async for message in client.messages:
                    got.append(message)  # noqa: PERF401 - keep what came before the timeout
    return got


async def test_firing_is_retained_and_the_resolve_clears_it(mosquitto):
    notifier = MqttNotifier(
        MqttChannelSettings(name="sirens", host=mosquitto.host, port=mosquitto.port, retain=True)
    )
    await notifier.send(firing())
    (retained,) = await collect(mosquitto, "anju/v1/sunrise/alerts/#")
    assert str(retained.topic) == TOPIC
    assert retained.retain
    assert retained.qos == 1
    assert orjson.loads(retained.payload) == {
        "id": "a1b2c3d4e5f60718",
        "status": "firing",
        "severity": "critical",
        "rule": "smoke-detected",
        "device": "b3-2-201-smoke",
        "site": "sunrise",
        "grid": "north",
        "grid_name": "North grid",
        "building": "3",
        "floor": "2",
        "unit": "201",
        "place": "Building 3, floor 2, unit 201",
        "summary": "烟感报警 Smoke detected",
        "message": "Smoke at Building 3, floor 2, unit 201 (grid North grid): check the unit now",
        "since": FIRING_MS,
    }

    async def live() -> list[aiomqtt.Message]:
        return await collect(mosquitto, "anju/v1/sunrise/alerts/#", wait=1.5)

    watcher = asyncio.create_task(live())
    await asyncio.sleep(0.5)
    await notifier.send(resolved())
    seen = await watcher
    # the live subscriber got the retained firing, then the resolved JSON and the clear
    payloads = [m.payload for m in seen]
    assert orjson.loads(payloads[-2])["status"] == "resolved"
    assert orjson.loads(payloads[-2])["resolved"] == RESOLVED_MS
    assert payloads[-1] == b""
    assert await collect(mosquitto, "anju/v1/sunrise/alerts/#") == []  # nothing retained
    await notifier.aclose()


async def test_without_retain_messages_are_live_only(mosquitto):
    notifier = MqttNotifier(
        MqttChannelSettings(
            name="display",
            host=mosquitto.host,
            port=mosquitto.port,
            topic="anju/v1/{site}/alerts/{severity}",
        )
    )
    watcher = asyncio.create_task(collect(mosquitto, "anju/v1/sunrise/alerts/+", wait=1.0))
    await asyncio.sleep(0.4)
    await notifier.send(firing())
    (message,) = await watcher
    assert str(message.topic) == "anju/v1/sunrise/alerts/critical"
    assert not message.retain
    assert await collect(mosquitto, "anju/v1/sunrise/alerts/+") == []


async def test_unreachable_broker_is_a_notify_error():
    notifier = MqttNotifier(
        MqttChannelSettings(name="sirens", host=LOOPBACK, port=free_port(), timeout_s=1)
    )
    with pytest.raises(NotifyError, match="mqtt:sirens: MqttError"):
        await notifier.send(firing())


async def test_concurrent_sends_share_the_client_id_without_kicking_each_other(mosquitto):
    notifier = MqttNotifier(
        MqttChannelSettings(name="sirens", host=mosquitto.host, port=mosquitto.port, retain=True)
    )
    devices = [f"dev-{i}" for i in range(5)]
    await asyncio.gather(*(notifier.send(firing(device=d)) for d in devices))
    got = await collect(mosquitto, "anju/v1/sunrise/alerts/#")
    assert sorted(str(m.topic).rsplit("/", 1)[1] for m in got) == devices


def test_topic_settings_are_checked():
    with pytest.raises(ValidationError, match="unknown placeholders in topic: place"):
        MqttChannelSettings(name="x", topic="a/{place}")
    with pytest.raises(ValidationError, match="must name"):
        MqttChannelSettings(name="x", topic="anju/v1/{site}/alerts/{severity}", retain=True)
    with pytest.raises(ValidationError, match="wildcards"):
        MqttChannelSettings(name="x", topic="anju/#")
