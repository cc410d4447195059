"""No raw card number appears in anything the gateway publishes (real driver, real broker)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import tty
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import EdgeAgent, parse_gateway_config
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration

# Card facility 123, number 4567, as a serial Wiegand converter in hex mode sends it, and every
# other way its number could be written.
FRAME = b"7B11D7\r"
RAW_FORMS = [b"7b11d7", b"2f623ae", b"02f623ae", b"8065495", b"123:4567", b"26:02f623ae"]


class Everything:
    """Records every message on the broker, whatever the topic."""

    def __init__(self, mosquitto: Mosquitto) -> None:
        self.messages: list[tuple[str, bytes]] = []
        ready = threading.Event()
        self._client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self._client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self._client.on_subscribe = lambda *_: ready.set()
        self._client.on_message = lambda _c, _u, m: self.messages.append(
            (m.topic, bytes(m.payload))
        )
        self._client.connect(mosquitto.host, mosquitto.port)
        self._client.loop_start()
        assert ready.wait(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


async def test_card_numbers_leave_the_gateway_only_as_pseudonyms(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    controller, peripheral = os.openpty()
    tty.setraw(controller)
    tty.setraw(peripheral)
    config = parse_gateway_config(
        {
            "site": "s1",
            "gateway": "gw-gate",
            "data_dir": str(tmp_path),
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "privacy": {"site_secret": "privacy-test-site-secret"},
            "health_interval_s": 1,
            "drivers": [
                {
                    "type": "wiegand",
                    "id": "gate",
                    "port": os.ttyname(peripheral),
                    "format": "hex_data",
                    "device": "gate-reader",
                    "door": "east-gate",
                }
            ],
        }
    )
    everything = Everything(mosquitto)
    agent = EdgeAgent(config)
    task = asyncio.create_task(agent.run())
    try:
        await agent.wait_connected()
        for _ in range(3):
            os.write(controller, FRAME)
            await asyncio.sleep(0.3)
        async with asyncio.timeout(10):
            while sum(b'"door.access"' in p for _, p in everything.messages) < 3:
                await asyncio.sleep(0.05)
            while not any(t.endswith("/health") for t, _ in everything.messages):
                await asyncio.sleep(0.05)
    finally:
        agent.stop()
        await task
        everything.close()
        for fd in (controller, peripheral):
            with contextlib.suppress(OSError):
                os.close(fd)

    accesses = [orjson.loads(p) for _, p in everything.messages if b'"door.access"' in p]
    pseudonyms = {a["data"]["credential"] for a in accesses}
    assert len(pseudonyms) == 1  # the same card, the same pseudonym
    assert pseudonyms.pop().startswith("h1:")
    for topic, payload in everything.messages:
        for raw in RAW_FORMS:
            assert raw not in payload.lower(), f"{raw!r} published on {topic}"
    # Nor does it linger in the gateway's own queue files (the database and its WAL).
    queue_files = list(tmp_path.glob("*.queue.sqlite3*"))
    assert queue_files
    for path in queue_files:
        content = path.read_bytes().lower()
        assert not any(raw in content for raw in RAW_FORMS), path.name
