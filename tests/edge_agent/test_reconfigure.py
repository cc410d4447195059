"""A pushed config applies live: only changed drivers restart, the queue stays, failures roll back."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from device_drivers import DeviceEvent, Sample, ScaledClock
from edge_agent import EdgeAgent, parse_gateway_config
from edge_agent.reconfigure import (
    ConfigRefusedError,
    check_new_config,
    plan_drivers,
    previous_path,
    save_config,
)
from wire import ConfigApplied, ConfigPush, config_version

SECRET = "reconfigure-test-secret"  # noqa: S105 - a test key
SPEED = 20.0  # virtual seconds per real second: a 1 s reading interval is 50 ms here


def sim(driver_id: str, *devices: str, seed: int = 1) -> dict[str, Any]:
    return {
        "type": "simulated",
        "id": driver_id,
        "seed": seed,
        "interval_s": 1,
        "devices": [{"id": d, "kind": "temp_humidity"} for d in devices],
    }


def broken(driver_id: str, tmp_path: Path) -> dict[str, Any]:
    """A CO2 sensor on a serial port that does not exist: it cannot start."""
    return {"type": "mhz19", "id": driver_id, "port": str(tmp_path / "ttyUSB-absent")}


@pytest.fixture
def base(tmp_path: Path, free_port: Any) -> dict[str, Any]:
    return {
        "site": "s1",
        "gateway": "gw1",
        "data_dir": str(tmp_path / "edge"),
        "mqtt": {"port": free_port()},  # nobody listens: the agent runs on its queue
        "privacy": {"site_secret": SECRET},
        "batch": {"max_readings": 10, "max_delay_s": 0.1},
        "drivers": [sim("sim-a", "a-th"), sim("sim-b", "b-th", seed=2)],
    }


def with_drivers(base: dict[str, Any], *drivers: Any, **changes: Any) -> dict[str, Any]:
    return {**base, "drivers": list(drivers), **changes}


def push(config: dict[str, Any]) -> ConfigPush:
    return ConfigPush(version=config_version(config), config=config)


class RecordingAgent(EdgeAgent):
    """An agent that also keeps every driver output with the (monotonic) time it came."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outputs: list[tuple[float, Sample | DeviceEvent]] = []

    def _accept(self, output: Sample | DeviceEvent) -> None:
        self.outputs.append((time.monotonic(), output))
        super()._accept(output)

    def sample_times(self, device: str) -> list[int]:
        return [o.ts_ms for _, o in self.outputs if isinstance(o, Sample) and o.device == device]

    def arrivals(self, device: str) -> list[float]:
        return [t for t, o in self.outputs if isinstance(o, Sample) and o.device == device]


@contextlib.asynccontextmanager
async def running(
    config: dict[str, Any], *, config_path: Path | None = None, settle_s: float = 0.3
) -> AsyncIterator[RecordingAgent]:
    agent = RecordingAgent(
        parse_gateway_config(config),
        clock=ScaledClock(time.time_ns() // 1_000_000, SPEED),
        config_path=config_path,
        settle_s=settle_s,
    )
    task = asyncio.create_task(agent.run())
    try:
        async with asyncio.timeout(10):
            while not agent.drivers or any(s.state != "running" for s in agent.drivers.values()):
                await asyncio.sleep(0.02)
        yield agent
    finally:
        agent.stop()
        async with asyncio.timeout(10):
            await task


async def readings_of(agent: RecordingAgent, device: str, count: int = 3) -> None:
    """Wait until ``count`` more readings of ``device`` came."""
    target = len(agent.sample_times(device)) + count
    async with asyncio.timeout(10):
        while len(agent.sample_times(device)) < target:
            await asyncio.sleep(0.02)


def assert_continuous(agent: RecordingAgent, device: str) -> None:
    """Every reading of the device is one interval after the last: its driver never restarted."""
    times = agent.sample_times(device)
    assert len(times) > 3
    assert {b - a for a, b in itertools.pairwise(times)} == {1000}


# -- the plan ----------------------------------------------------------------------------------


def test_drivers_are_compared_by_id_and_settings() -> None:
    old = parse_gateway_config(
        {
            "site": "s1",
            "gateway": "gw1",
            "privacy": {"site_secret": SECRET},
            "drivers": [sim("a", "a1"), sim("b", "b1"), sim("c", "c1")],
        }
    )
    explicit_default = {**sim("a", "a1"), "timezone": "UTC"}  # the same settings, spelled out
    new = old.model_copy(
        update={
            "drivers": parse_gateway_config(
                {
                    "site": "s1",
                    "gateway": "gw1",
                    "privacy": {"site_secret": SECRET},
                    "drivers": [explicit_default, sim("b", "b1", seed=9), sim("d", "d1")],
                }
            ).drivers
        }
    )
    plan = plan_drivers(old.drivers, new.drivers)
    assert plan.started == ("d",)
    assert plan.stopped == ("c",)
    assert plan.restarted == ("b",)
    assert plan.unchanged == ("a",)
    assert plan.to_stop == ("c", "b")
    assert plan.to_start == ("d", "b")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"site": "s2"}, "site"),
        ({"gateway": "gw2"}, "gateway"),
        ({"mqtt": {"port": 1884}}, "mqtt"),
        ({"data_dir": "/elsewhere"}, "data_dir"),
        ({"queue": {"max_bytes": 1_000_000}}, "queue"),
    ],
)
def test_what_the_running_agent_holds_open_cannot_change(
    change: dict[str, Any], field: str
) -> None:
    raw = {"site": "s1", "gateway": "gw1", "privacy": {"site_secret": SECRET}}
    old = parse_gateway_config(raw)
    with pytest.raises(ConfigRefusedError, match=field):
        check_new_config(old, parse_gateway_config({**raw, **change}))
    check_new_config(old, parse_gateway_config({**raw, "batch": {"max_delay_s": 5}}))


def test_two_drivers_with_one_id_are_refused() -> None:
    raw = {"site": "s1", "gateway": "gw1", "privacy": {"site_secret": SECRET}}
    new = parse_gateway_config({**raw, "drivers": [sim("a", "a1"), sim("a", "a2")]})
    with pytest.raises(ConfigRefusedError, match="'a' appears more than once"):
        check_new_config(parse_gateway_config(raw), new)


def test_saving_replaces_the_file_atomically_and_keeps_the_previous(tmp_path: Path) -> None:
    path = tmp_path / "gw1.yaml"
    path.write_text("site: s1\n# the installer's comment\n", encoding="utf-8")
    path.chmod(0o600)
    config = {"site": "s1", "gateway": "gw1", "privacy": {"site_secret": "${ANJU_SITE_SECRET}"}}
    save_config(path, config, version="abc")
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == config
    assert "${ANJU_SITE_SECRET}" in path.read_text(encoding="utf-8")
    assert (
        previous_path(path).read_text(encoding="utf-8") == "site: s1\n# the installer's comment\n"
    )
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gw1.yaml", "gw1.yaml.previous"]


# -- applying it to a running agent ------------------------------------------------------------


async def test_an_added_driver_starts_and_the_others_keep_running_untouched(
    base: dict[str, Any],
) -> None:
    async with running(base) as agent:
        await readings_of(agent, "a-th")
        tasks = dict(agent._driver_tasks)
        states = dict(agent.drivers)
        queue = agent._queue
        seq_before = queue.last_seq
        started = time.monotonic()
        applied = await agent.reconfigure(
            push(with_drivers(base, *base["drivers"], sim("sim-c", "c-th", seed=3)))
        )
        finished = time.monotonic()
        assert applied == ConfigApplied(
            version=applied.version, started=["sim-c"], unchanged=["sim-a", "sim-b"]
        )
        await readings_of(agent, "c-th")
        await readings_of(agent, "a-th")
        # The same tasks and states: not restarted, not even touched.
        for driver_id in ("sim-a", "sim-b"):
            assert agent._driver_tasks[driver_id] is tasks[driver_id]
            assert not tasks[driver_id].done()
            assert agent.drivers[driver_id] is states[driver_id]
            assert states[driver_id].restarts == 0
        assert agent.drivers["sim-c"].state == "running"
        # Readings went on while the push was applied, without a gap.
        assert any(started <= t <= finished for t in agent.arrivals("a-th"))
        assert_continuous(agent, "a-th")
        assert_continuous(agent, "b-th")
        # The queue is the same open queue; its seqs go on.
        assert agent._queue is queue
        agent._flush_batch()
        assert queue.last_seq > seq_before
        assert [d.id for d in agent.config.drivers] == ["sim-a", "sim-b", "sim-c"]


async def test_a_removed_driver_stops_and_its_devices_leave_health(base: dict[str, Any]) -> None:
    async with running(base) as agent:
        task_b = agent._driver_tasks["sim-b"]
        task_a = agent._driver_tasks["sim-a"]
        agent.device_states["b-th"] = "faulted"
        applied = await agent.reconfigure(push(with_drivers(base, sim("sim-a", "a-th"))))
        assert applied.error is None
        assert applied.stopped == ["sim-b"]
        assert applied.unchanged == ["sim-a"]
        assert task_b.done()
        assert agent._driver_tasks == {"sim-a": task_a}
        assert set(agent.health().drivers) == {"sim-a"}
        assert "b-th" not in agent.health().devices
        count = len(agent.sample_times("b-th"))
        await readings_of(agent, "a-th")
        assert len(agent.sample_times("b-th")) == count
        assert_continuous(agent, "a-th")


async def test_a_changed_driver_restarts_alone(base: dict[str, Any]) -> None:
    async with running(base) as agent:
        task_a, task_b = agent._driver_tasks["sim-a"], agent._driver_tasks["sim-b"]
        applied = await agent.reconfigure(
            push(with_drivers(base, sim("sim-a", "a-th"), sim("sim-b", "b-th", "b2-th", seed=2)))
        )
        assert applied.error is None
        assert applied.restarted == ["sim-b"]
        assert applied.unchanged == ["sim-a"]
        assert task_b.done()
        assert agent._driver_tasks["sim-b"] is not task_b
        assert agent._driver_tasks["sim-a"] is task_a
        await readings_of(agent, "b2-th")
        assert_continuous(agent, "a-th")


async def test_a_driver_that_cannot_start_is_rolled_back(
    base: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "gw1.yaml"
    path.write_text(yaml.safe_dump(base), encoding="utf-8")
    async with running(base, config_path=path, settle_s=3) as agent:
        old_config = agent.config
        task_a = agent._driver_tasks["sim-a"]
        # sim-b changes and a sensor on an absent port is added: both are undone.
        applied = await agent.reconfigure(
            push(
                with_drivers(
                    base,
                    sim("sim-a", "a-th"),
                    sim("sim-b", "b-th", seed=7),
                    broken("co2", tmp_path),
                )
            )
        )
        assert applied.rolled_back
        assert applied.error is not None
        assert "co2 did not start" in applied.error
        assert "ttyUSB-absent" in applied.error
        assert applied.started == []
        assert applied.restarted == ["sim-b"]  # back with its previous settings
        assert applied.unchanged == ["sim-a"]
        assert agent.config is old_config
        assert set(agent._driver_tasks) == {"sim-a", "sim-b"}
        assert agent._driver_tasks["sim-a"] is task_a
        assert agent.config.drivers[1].model_dump()["seed"] == 2
        await readings_of(agent, "b-th")
        assert_continuous(agent, "a-th")
        assert agent.drivers["sim-b"].state == "running"
        # The first failed start decided, before the agent reports the sensor faulted.
        assert not any(
            isinstance(o, DeviceEvent) and o.kind == "device.fault" for _, o in agent.outputs
        )
        # Nothing was saved.
        assert yaml.safe_load(path.read_text(encoding="utf-8")) == base
        assert not previous_path(path).exists()
        assert agent.config_version == config_version(base)


async def test_an_invalid_config_is_refused_before_anything_stops(base: dict[str, Any]) -> None:
    async with running(base) as agent:
        tasks = dict(agent._driver_tasks)
        bad_driver = {**sim("sim-c", "c-th"), "interval_s": 0}
        for config, expected in [
            (with_drivers(base, sim("sim-a", "a-th"), bad_driver), "interval_s"),
            (with_drivers(base, 1), "each driver must be a mapping"),
            ({**base, "mqtt": {"port": 1}}, "mqtt cannot change"),
            ({**base, "privacy": {"site_secret": "${RECONFIGURE_TEST_UNSET}"}}, "not set"),
            ({**base, "privacy": {}}, "site_secret is required"),
        ]:
            applied = await agent.reconfigure(push(config))
            assert applied.error is not None
            assert expected in applied.error
            assert not applied.rolled_back
            assert agent._driver_tasks == tasks
        mismatched = ConfigPush(version="0123456789abcdef", config=base)
        applied = await agent.reconfigure(mismatched)
        assert applied.error == "version does not match the config"
        assert all(not t.done() for t in tasks.values())


async def test_a_second_push_while_one_applies_is_refused_busy(base: dict[str, Any]) -> None:
    async with running(base, settle_s=0.5) as agent:
        first, second = await asyncio.gather(
            agent.reconfigure(push(with_drivers(base, *base["drivers"], sim("sim-c", "c-th")))),
            agent.reconfigure(push(with_drivers(base, sim("sim-a", "a-th")))),
        )
        assert first.error is None
        assert first.started == ["sim-c"]
        assert second.error is not None
        assert second.error.startswith("busy")
        assert set(agent._driver_tasks) == {"sim-a", "sim-b", "sim-c"}


async def test_the_running_version_changes_nothing_and_a_new_one_is_saved(
    base: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "gw1.yaml"
    path.write_text(yaml.safe_dump(base), encoding="utf-8")
    async with running(base, config_path=path) as agent:
        tasks = dict(agent._driver_tasks)
        same = await agent.reconfigure(push(base))
        assert same == ConfigApplied(
            version=config_version(base), unchanged=["sim-a", "sim-b"], persisted=True
        )
        reader = "gate-reader"
        pseudonym = "h1:" + "0" * 32
        new = {**base, "access": {"allow": {reader: [pseudonym]}}}
        applied = await agent.reconfigure(push(new))
        assert applied.error is None
        assert applied.changed == ["access"]
        assert applied.unchanged == ["sim-a", "sim-b"]
        assert applied.persisted
        assert agent._driver_tasks == tasks
        assert agent._authorise(reader, "26:02f623ae") is False
        assert yaml.safe_load(path.read_text(encoding="utf-8")) == new
        assert yaml.safe_load(previous_path(path).read_text(encoding="utf-8")) == base
        assert agent.config_version == config_version(new)
        assert agent.config.config_hash() != parse_gateway_config(base).config_hash()
