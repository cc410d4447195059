"""A config push over a real Mosquitto: a driver added by the installer starts on the running
gateway without restarting the others, and a config that cannot start is rolled back."""

from __future__ import annotations

import asyncio
import itertools
import threading
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from cli.push import PushError, push_gateway_config
from edge_agent import EdgeAgent, load_gateway_config
from edge_agent.reconfigure import previous_path
from tests.servers import Mosquitto
from wire import ConfigApplied, GatewayState, GatewayTopics, decode_as

pytestmark = pytest.mark.integration

ENV_NAME = "ANJU_PUSH_TEST_SITE_SECRET"
TOPICS = GatewayTopics("sunrise", "gw-push")


def sim(driver_id: str, device: str, seed: int) -> dict[str, Any]:
    return {
        "type": "simulated",
        "id": driver_id,
        "seed": seed,
        "interval_s": 1,
        "devices": [{"id": device, "kind": "temp_humidity"}],
    }


def gateway_config(mosquitto: Mosquitto, data_dir: Path, *drivers: Any) -> dict[str, Any]:
    return {
        "site": "sunrise",
        "gateway": "gw-push",
        "data_dir": str(data_dir),
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
        # Pushed as the placeholder; the gateway fills it in from its own environment.
        "privacy": {"site_secret": "${" + ENV_NAME + "}"},
        "batch": {"max_readings": 50, "max_delay_s": 0.2},
        "health_interval_s": 1,
        "drivers": list(drivers),
    }


def write(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class Tap:
    """A plain subscriber that records what the gateway really published."""

    def __init__(self, mosquitto: Mosquitto, *topics: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._subscribed = threading.Event()
        self._client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self._client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda _c, _u, msg: self.messages.append(
            (msg.topic, bytes(msg.payload))
        )
        self._client.connect(mosquitto.host, mosquitto.port)
        self._client.loop_start()
        assert self._subscribed.wait(5)

    def reading_times(self, device: str) -> list[int]:
        """Timestamps of the device's published readings (a resend repeats some)."""
        return sorted(
            {
                r["ts"]
                for topic, payload in self.messages
                if topic == TOPICS.data
                for r in orjson.loads(payload)["readings"]
                if r["dev"] == device
            }
        )

    def last_state(self) -> GatewayState:
        payloads = [p for topic, p in self.messages if topic == TOPICS.state]
        return decode_as(GatewayState, payloads[-1])

    async def wait_readings(self, device: str, count: int) -> None:
        target = len(self.reading_times(device)) + count
        async with asyncio.timeout(15):
            while len(self.reading_times(device)) < target:
                await asyncio.sleep(0.05)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


async def test_a_pushed_driver_starts_live_and_a_broken_push_is_rolled_back(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_NAME, "config-push-test-secret")
    data_dir = tmp_path / "edge"
    first = gateway_config(mosquitto, data_dir, sim("sim-a", "a-th", seed=1))
    # The gateway's own file, and the installer's copy that `anju device add` edits.
    on_gateway = write(tmp_path / "gateway" / "gw-push.yaml", first)
    installer = tmp_path / "site-config" / "gw-push.yaml"
    broker = f"{mosquitto.host}:{mosquitto.port}"

    tap = Tap(mosquitto, TOPICS.data, TOPICS.state)
    agent = EdgeAgent(load_gateway_config(on_gateway), config_path=on_gateway, settle_s=1.5)
    task = asyncio.create_task(agent.run())
    try:
        async with asyncio.timeout(10):
            await agent.wait_connected()
        await tap.wait_readings("a-th", 2)
        task_a, state_a = agent._driver_tasks["sim-a"], agent.drivers["sim-a"]
        queue, seq_before = agent._queue, agent._queue.last_seq

        # A driver is added on the installer's side and pushed.
        second = gateway_config(
            mosquitto, data_dir, sim("sim-a", "a-th", seed=1), sim("sim-b", "b-th", seed=2)
        )
        reply = await push_gateway_config(
            broker, None, "gw-push", write(installer, second), timeout_s=20
        )
        assert reply.ok, reply.error
        applied = ConfigApplied.model_validate(reply.result)
        assert applied.started == ["sim-b"]
        assert applied.unchanged == ["sim-a"]
        assert applied.stopped == applied.restarted == []
        assert applied.persisted
        await tap.wait_readings("b-th", 2)
        await tap.wait_readings("a-th", 2)

        # sim-a was never restarted: the same task, and its readings went on one second apart.
        assert agent._driver_tasks["sim-a"] is task_a
        assert agent.drivers["sim-a"] is state_a
        assert state_a.restarts == 0
        assert {b - a for a, b in itertools.pairwise(tap.reading_times("a-th"))} == {1000}
        assert agent._queue is queue
        assert queue.last_seq > seq_before
        # The gateway keeps the pushed config across a reboot, and announced its new hash.
        assert yaml.safe_load(on_gateway.read_text(encoding="utf-8")) == second
        assert yaml.safe_load(previous_path(on_gateway).read_text(encoding="utf-8")) == first
        assert "${" + ENV_NAME + "}" in on_gateway.read_text(encoding="utf-8")
        async with asyncio.timeout(5):
            while tap.last_state().config_hash != agent.config.config_hash():
                await asyncio.sleep(0.05)

        # A sensor on a port that does not exist: the push is rolled back and reported.
        broken = {"type": "mhz19", "id": "co2", "port": str(tmp_path / "ttyUSB-absent")}
        third = {**second, "drivers": [*second["drivers"], broken]}
        reply = await push_gateway_config(
            broker, "sunrise", "gw-push", write(installer, third), timeout_s=20
        )
        assert not reply.ok
        assert reply.error is not None
        assert "co2 did not start" in reply.error
        applied = ConfigApplied.model_validate(reply.result)
        assert applied.rolled_back
        assert applied.started == []
        assert applied.unchanged == ["sim-a", "sim-b"]
        assert yaml.safe_load(on_gateway.read_text(encoding="utf-8")) == second
        assert set(agent._driver_tasks) == {"sim-a", "sim-b"}
        assert agent._driver_tasks["sim-a"] is task_a
        await tap.wait_readings("b-th", 1)

        # Refused before anything travels: a literal secret in the file.
        leaky = {**second, "privacy": {"site_secret": "a-literal-secret"}}
        with pytest.raises(PushError, match=r"privacy\.site_secret must be a \$\{NAME\}"):
            await push_gateway_config(broker, None, "gw-push", write(installer, leaky))
    finally:
        agent.stop()
        async with asyncio.timeout(20):
            await task
        tap.close()
