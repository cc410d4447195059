"""Helpers shared by the simulated driver's tests: building configs and running on a ManualClock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from device_drivers import DeviceEvent, DriverOutput, ManualClock, Sample, parse_driver_config
from device_drivers.simulated import SimulatedConfig, SimulatedDriver
from wire import validate_event_data

# 2026-03-02T00:00:00Z, a Monday.
START_MS = 1_772_409_600_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
FAKE_PSEUDONYM = "h1:" + "0" * 32

ALL_KINDS_DEVICES: list[dict[str, Any]] = [
    {"id": "b3-2-201-th", "kind": "temp_humidity"},
    {"id": "b3-2-201-co2", "kind": "co2"},
    {"id": "b3-pm", "kind": "pm25"},
    {"id": "pump-leak", "kind": "water_leak"},
    {"id": "b3-2-201-smoke", "kind": "smoke"},
    {"id": "b3-2-201-gas", "kind": "gas"},
    {"id": "east-gate-reader", "kind": "door_reader", "door": "east-gate"},
    {"id": "east-gate-cam", "kind": "camera", "zone": "gate", "line": "gate-line"},
    {"id": "b3-2-201-sos", "kind": "emergency_button"},
    {"id": "b3-2-201-pir", "kind": "motion"},
]


def make_config(
    devices: Sequence[Mapping[str, Any]],
    *,
    seed: int = 7,
    interval_s: float = 60,
    scenario: Mapping[str, Any] | None = None,
    **extra: Any,
) -> SimulatedConfig:
    """A validated config, parsed the way the gateway parses it."""
    raw: dict[str, Any] = {
        "type": "simulated",
        "id": "sim",
        "seed": seed,
        "interval_s": interval_s,
        "devices": [dict(device) for device in devices],
        **extra,
    }
    if scenario is not None:
        raw["scenario"] = dict(scenario)
    config = parse_driver_config(raw)
    assert isinstance(config, SimulatedConfig)
    return config


async def settle(min_rounds: int = 20) -> None:
    """Let woken tasks run: the ManualClock wakes sleepers over several loop iterations."""
    for _ in range(min_rounds):
        await asyncio.sleep(0)


async def run(
    config: SimulatedConfig,
    seconds: float,
    *,
    start_ms: int = START_MS,
    step_s: float = 600,
) -> list[DriverOutput]:
    """Run a driver on a ManualClock for ``seconds`` of virtual time and return its outputs."""
    clock = ManualClock(start_ms)
    driver = SimulatedDriver(config, clock=clock)

    async def consume() -> list[DriverOutput]:
        return [output async for output in driver.outputs()]

    async with driver:
        task = asyncio.create_task(consume())
        end = start_ms + round(seconds * 1000)
        while clock.now_ms() < end:
            await clock.set(min(end, clock.now_ms() + round(step_s * 1000)))
            await settle()
    return await asyncio.wait_for(task, timeout=5)


def events(
    outputs: Iterable[DriverOutput], kind: str | None = None, device: str | None = None
) -> list[DeviceEvent]:
    """The events among ``outputs``, optionally of one kind and one device."""
    return [
        out
        for out in outputs
        if isinstance(out, DeviceEvent)
        and (kind is None or out.kind == kind)
        and (device is None or out.device == device)
    ]


def samples(outputs: Iterable[DriverOutput], device: str | None = None) -> list[Sample]:
    """The samples among ``outputs``, optionally of one device."""
    return [
        out
        for out in outputs
        if isinstance(out, Sample) and (device is None or out.device == device)
    ]


def wire_data(event: DeviceEvent) -> dict[str, Any]:
    """Validate an event's data as the edge agent would after pseudonymising the credential."""
    data = dict(event.data)
    if event.kind == "door.access":
        data["credential"] = FAKE_PSEUDONYM
    return validate_event_data(event.kind, data)
