"""Driver supervision: a device whose port is absent at boot is reported, and its return too."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path

import orjson

from edge_agent import EdgeAgent, parse_gateway_config
from tests.servers import free_port


def queued_events(agent: EdgeAgent) -> list[tuple[str, str]]:
    agent._queue.commit()
    messages = agent._queue.take_live(0, 1000)
    agent._queue.resend_unacked()
    events = [orjson.loads(m.payload) for m in messages if m.channel.value == "event"]
    return [(e["dev"], e["kind"]) for e in events]


async def test_a_port_absent_at_boot_faults_its_devices_and_they_recover_when_it_appears(
    tmp_path: Path,
) -> None:
    port_path = tmp_path / "ttyUSB-co2"
    config = parse_gateway_config(
        {
            "site": "s1",
            "gateway": "gw1",
            "data_dir": str(tmp_path / "edge"),
            "mqtt": {"port": free_port()},  # nobody listens: the agent keeps its queue
            "privacy": {"site_secret": "supervision-test-secret"},
            "drivers": [
                {
                    "type": "mhz19",
                    "id": "co2-bus",
                    "device": "b3-co2",
                    "port": str(port_path),
                    "interval_s": 5,
                }
            ],
        }
    )
    agent = EdgeAgent(config)
    task = asyncio.create_task(agent.run())
    controller = peripheral = -1
    try:
        async with asyncio.timeout(10):
            while ("b3-co2", "device.fault") not in queued_events(agent):
                await asyncio.sleep(0.1)
        assert agent.device_states == {"b3-co2": "faulted"}
        assert agent.health().devices == {"b3-co2": "faulted"}
        assert agent.drivers["co2-bus"].restarts >= 2

        # The USB adapter is plugged in: the port appears and the driver starts.
        controller, peripheral = os.openpty()
        tty.setraw(peripheral)
        port_path.symlink_to(os.ttyname(peripheral))
        async with asyncio.timeout(70):
            while ("b3-co2", "device.recovered") not in queued_events(agent):
                await asyncio.sleep(0.1)
        assert agent.device_states == {"b3-co2": "ok"}
        assert queued_events(agent).count(("b3-co2", "device.fault")) == 1
    finally:
        agent.stop()
        await task
        for fd in (controller, peripheral):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
