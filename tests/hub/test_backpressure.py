"""The hub's network thread stops reading when the event loop falls behind, and resumes."""

from __future__ import annotations

import asyncio
import threading

import paho.mqtt.client as paho

from hub import HubMqttSettings
from hub.mqtt import MAX_INBOX, HubMqtt


def message(topic: str, seq: int) -> paho.MQTTMessage:
    msg = paho.MQTTMessage(topic=topic.encode())
    msg.payload = b'{"seq": %d}' % seq
    return msg


async def test_a_full_inbox_holds_the_network_thread_until_the_loop_drains() -> None:
    handled: list[str] = []
    mqtt = HubMqtt(
        HubMqttSettings(host="127.0.0.1", port=1),
        lambda topic, _payload, _ms: handled.append(topic),
        version="test",
    )
    mqtt._loop = asyncio.get_running_loop()
    # The loop is busy elsewhere: the network thread fills the inbox up to its bound.
    mqtt._scheduled = True
    delivered = 0
    finished = threading.Event()

    def network_thread() -> None:
        nonlocal delivered
        for seq in range(MAX_INBOX + 10):
            mqtt._on_message(mqtt._client, None, message("anju/v1/s/gw/data", seq))
            delivered += 1
        finished.set()

    thread = threading.Thread(target=network_thread)
    thread.start()
    try:
        async with asyncio.timeout(30):
            while mqtt.backpressure_waits == 0:
                await asyncio.sleep(0.01)
        assert delivered == MAX_INBOX  # the next message waits: it is not acknowledged yet
        assert not finished.is_set()
        # Meanwhile an alarm, on the other connection's thread, is never held back.
        mqtt._on_message(mqtt._alarms, None, message("anju/v1/s/gw/event", 0))
        assert len(mqtt._urgent) == 1
        mqtt._scheduled = False
        async with asyncio.timeout(30):
            while not finished.is_set():
                mqtt._drain()
                await asyncio.sleep(0)
            while mqtt._inbox or mqtt._urgent:
                mqtt._drain()
                await asyncio.sleep(0)
    finally:
        mqtt._closing = True
        mqtt._room.set()
        thread.join(10)
    assert len(handled) == MAX_INBOX + 11  # nothing lost on the way
    assert handled[0] == "anju/v1/s/gw/event"  # the alarm's lane is drained first


async def test_a_stop_releases_a_held_network_thread() -> None:
    mqtt = HubMqtt(HubMqttSettings(host="127.0.0.1", port=1), lambda *_: None, version="test")
    mqtt._loop = asyncio.get_running_loop()
    mqtt._scheduled = True
    for seq in range(MAX_INBOX):
        mqtt._inbox.append(("anju/v1/s/gw/data", b"{}", seq))
    thread = threading.Thread(
        target=mqtt._on_message, args=(mqtt._client, None, message("anju/v1/s/gw/data", 1))
    )
    thread.start()
    async with asyncio.timeout(10):
        while mqtt.backpressure_waits == 0:
            await asyncio.sleep(0.01)
    mqtt.stop()
    thread.join(10)
    assert not thread.is_alive()
