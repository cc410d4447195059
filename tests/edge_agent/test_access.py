"""Local access decisions: a reader lets in the cards whose pseudonyms are on its allow-list."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path

import orjson

from edge_agent import EdgeAgent, Pseudonymiser, parse_gateway_config
from tests.servers import free_port

SECRET = "access-test-site-secret"  # noqa: S105 - a test key
ALLOWED_CARD = "26:02f623ae"  # facility 123, card 4567 (see the Wiegand tests)


async def test_the_allow_list_decides_on_the_gateway_with_pseudonyms_only(tmp_path: Path) -> None:
    controller, peripheral = os.openpty()
    tty.setraw(controller)
    tty.setraw(peripheral)
    allowed = Pseudonymiser(SECRET.encode()).pseudonym(ALLOWED_CARD)
    config = parse_gateway_config(
        {
            "site": "s1",
            "gateway": "gw-gate",
            "data_dir": str(tmp_path),
            "mqtt": {"port": free_port()},  # no broker: decisions do not need the hub
            "privacy": {"site_secret": SECRET},
            "access": {"allow": {"gate-reader": [allowed]}},
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
    agent = EdgeAgent(config)
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.sleep(0.3)
        os.write(controller, b"7B11D7\r")  # the allowed card
        await asyncio.sleep(0.3)
        os.write(controller, b"7B11D8\r")  # its neighbour, not on the list
        decisions: list[tuple[str, bool]] = []
        async with asyncio.timeout(10):
            while len(decisions) < 2:
                await asyncio.sleep(0.1)
                agent._queue.commit()
                for message in agent._queue.take_live(0, 100):
                    event = orjson.loads(message.payload)
                    if event.get("kind") == "door.access":
                        decisions.append((event["data"]["credential"], event["data"]["granted"]))
    finally:
        agent.stop()
        await task
        for fd in (controller, peripheral):
            with contextlib.suppress(OSError):
                os.close(fd)
    assert decisions[0] == (allowed, True)
    assert decisions[1][1] is False
    assert decisions[1][0].startswith("h1:")
    assert decisions[1][0] != allowed
