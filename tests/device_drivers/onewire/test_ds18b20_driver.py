"""The DS18B20 driver on a fake sysfs tree in a temporary directory, on a ManualClock."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from device_drivers import (
    BUILTIN_DRIVERS,
    DriverConfigError,
    DriverIOError,
    ManualClock,
    Sample,
    parse_driver_config,
)
from device_drivers.onewire import Ds18b20Config, Ds18b20Driver
from tests.device_drivers.onewire.w1_helpers import POWER_ON, REFERENCE, FakeW1Bus, w1_slave_text
from tests.device_drivers.uart.uart_helpers import START_MS, Collector, wait_until

PUMP = "28-0316a27963ff"
AIR = "28-0416b1e2a4ff"


@pytest.fixture
def bus(tmp_path: Path) -> FakeW1Bus:
    return FakeW1Bus(tmp_path / "devices")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


def config(bus: FakeW1Bus, **extra: Any) -> Ds18b20Config:
    raw = {
        "type": "ds18b20",
        "id": "w1-pump-room",
        "root": str(bus.root),
        "interval_s": 60,
        "sensors": [
            {"w1_id": PUMP, "device": "pump-water-temp"},
            {
                "w1_id": AIR.upper(),
                "device": "pump-air-temp",
                "offset_c": -0.5,
            },
        ],
    }
    return Ds18b20Config.model_validate({**raw, **extra})


async def poll_round(run: Collector, clock: ManualClock, seconds: float) -> None:
    """Move the clock to the next poll and wait until every sensor was read.

    The air sensor stays healthy and is read last, so its sample ends the round.
    """

    def air_samples() -> int:
        return sum(1 for o in run.outputs if isinstance(o, Sample) and o.device == "pump-air-temp")

    before = air_samples()
    await clock.advance(seconds)
    await wait_until(lambda: air_samples() > before)


def test_registry_line_and_config_checks(monkeypatch: pytest.MonkeyPatch, bus: FakeW1Bus) -> None:
    monkeypatch.setitem(BUILTIN_DRIVERS, "ds18b20", "device_drivers.onewire:Ds18b20Driver")
    parsed = parse_driver_config(config(bus).model_dump(mode="json"))
    assert isinstance(parsed, Ds18b20Config)
    assert parsed.sensors[1].w1_id == AIR  # ids are lower-cased, as sysfs shows them
    cases: list[tuple[dict[str, Any], str]] = [
        ({"sensors": [{"w1_id": "10-0316a27963ff", "device": "x"}]}, "sensors.0.w1_id"),
        ({"sensors": [{"w1_id": PUMP, "device": "a"}, {"w1_id": PUMP, "device": "b"}]}, "sensors"),
        ({"min_c": 50, "max_c": 40}, "$"),
        ({"interval": 5}, "interval"),
    ]
    for bad, field in cases:
        with pytest.raises(DriverConfigError) as info:
            parse_driver_config({**config(bus).model_dump(mode="json"), **bad})
        assert info.value.field == field


async def test_open_fails_without_a_bus(tmp_path: Path, clock: ManualClock) -> None:
    bus = FakeW1Bus(tmp_path / "devices")
    driver = Ds18b20Driver(config(bus, root=str(tmp_path / "nothing")), clock=clock)
    with pytest.raises(DriverIOError, match="no 1-Wire bus"):
        await driver.open()


async def test_each_sensor_reports_each_interval(bus: FakeW1Bus, clock: ManualClock) -> None:
    bus.set(PUMP, REFERENCE)
    bus.set(AIR, w1_slave_text(-10125))
    driver = Ds18b20Driver(config(bus), clock=clock)
    assert driver.device_ids == ("pump-water-temp", "pump-air-temp")
    async with Collector(driver, clock) as run:
        assert await run.sample() == Sample("pump-water-temp", START_MS, {"temperature": 23.125})
        assert await run.sample() == Sample("pump-air-temp", START_MS, {"temperature": -10.625})
        await asyncio.sleep(0.05)
        assert run.since() == []  # nothing before the next interval
        bus.set(PUMP, w1_slave_text(24000))
        await clock.advance(60)
        assert await run.sample() == Sample(
            "pump-water-temp", START_MS + 60_000, {"temperature": 24.0}
        )


async def test_a_sensor_that_leaves_the_bus_faults_and_recovers_when_back(
    bus: FakeW1Bus, clock: ManualClock
) -> None:
    bus.set(PUMP, REFERENCE)
    bus.set(AIR, REFERENCE)
    driver = Ds18b20Driver(config(bus, interval_s=10), clock=clock)
    async with Collector(driver, clock) as run:
        await run.sample()
        await run.sample()
        bus.remove(PUMP)
        for _ in range(3):
            await poll_round(run, clock, 10)
        fault = await run.event("device.fault")
        assert fault.device == "pump-water-temp"
        assert fault.data == {"reason": f"{PUMP} is not on the 1-Wire bus"}
        assert fault.ts_ms == START_MS + 30_000  # the third failed read
        bus.set(PUMP, REFERENCE)
        await poll_round(run, clock, 10)
        recovered = await run.event("device.recovered")
        assert recovered.device == "pump-water-temp"
        assert recovered.data == {"after_s": 10.0}
    # The other sensor never stopped.
    air = [o for o in run.outputs if isinstance(o, Sample) and o.device == "pump-air-temp"]
    assert len(air) >= 5
    assert driver.health["pump-water-temp"].errors["missing"] >= 3
    assert driver.health["pump-air-temp"].errors == {}


@pytest.mark.parametrize(
    ("content", "kind", "in_reason"),
    [
        (w1_slave_text(21000, kernel_crc_ok=False), "crc", "CRC error (crc=e8 NO)"),
        (POWER_ON, "power_on_reset", "power-on reset"),
        (w1_slave_text(70000), "range", "70 °C is outside -20..60 °C"),
        ("garbage\n", "parse", "expected 2 lines"),
    ],
    ids=["crc-no", "power-on", "out-of-range", "garbage"],
)
async def test_bad_readings_are_dropped_and_fault_when_they_persist(
    bus: FakeW1Bus, clock: ManualClock, content: str, kind: str, in_reason: str
) -> None:
    bus.set(PUMP, REFERENCE)
    bus.set(AIR, REFERENCE)
    driver = Ds18b20Driver(config(bus, interval_s=10, min_c=-20, max_c=60), clock=clock)
    async with Collector(driver, clock) as run:
        await run.sample()
        await run.sample()
        bus.set(PUMP, content)
        for _ in range(3):
            await poll_round(run, clock, 10)
        fault = await run.event("device.fault")
        assert fault.device == "pump-water-temp"
        assert in_reason in fault.data["reason"]
        pump_samples = [
            o for o in run.outputs if isinstance(o, Sample) and o.device == "pump-water-temp"
        ]
        assert len(pump_samples) == 1  # nothing bad was reported as a temperature
        bus.set(PUMP, w1_slave_text(22000))
        await poll_round(run, clock, 10)
        await run.event("device.recovered")
        sample = await run.sample()
        assert sample.values == {"temperature": 22.0}
    assert driver.health["pump-water-temp"].errors[kind] == 3


async def test_one_glitch_is_dropped_without_a_fault(bus: FakeW1Bus, clock: ManualClock) -> None:
    bus.set(PUMP, POWER_ON)
    bus.set(AIR, REFERENCE)
    driver = Ds18b20Driver(config(bus, interval_s=10), clock=clock)
    async with Collector(driver, clock) as run:
        first = await run.sample()
        assert first.device == "pump-air-temp"
        bus.set(PUMP, REFERENCE)
        await clock.advance(10)
        assert (await run.sample()).device == "pump-water-temp"
    assert run.since("device.fault") == []
    assert driver.health["pump-water-temp"].errors == {"power_on_reset": 1}


async def test_a_read_that_hangs_times_out_without_blocking_the_loop(
    bus: FakeW1Bus, clock: ManualClock
) -> None:
    bus.set(AIR, REFERENCE)
    (bus.root / PUMP).mkdir()
    fifo = bus.root / PUMP / "w1_slave"
    os.mkfifo(fifo)  # opening it blocks until a writer comes: a bus that never answers
    driver = Ds18b20Driver(
        config(bus, interval_s=10, read_timeout_s=2, failures_to_fault=2), clock=clock
    )
    try:
        async with Collector(driver, clock) as run:
            await asyncio.sleep(0.05)
            await clock.advance(2)  # the read timeout, on the clock
            air = await run.sample()
            assert (air.device, air.ts_ms) == ("pump-air-temp", START_MS + 2_000)
            fault = await run.event("device.fault", advance_s=10)
            assert fault.data["reason"] == f"{PUMP}: the previous read has not returned yet"
    finally:
        # Let the worker thread finish, so the loop can shut its executor down.
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, REFERENCE.encode())
        os.close(fd)
    assert driver.health["pump-water-temp"].errors == {"timeout": 2}


async def test_close_ends_a_waiting_iteration(bus: FakeW1Bus, clock: ManualClock) -> None:
    bus.set(PUMP, REFERENCE)
    driver = Ds18b20Driver(config(bus), clock=clock)
    with pytest.raises(RuntimeError, match="open"):
        await anext(driver.outputs())
    async with Collector(driver, clock) as run:
        await run.sample()
        with pytest.raises(RuntimeError, match="already"):
            await anext(driver.outputs())
    await driver.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await driver.open()
