"""The GPIO driver on gpiozero's MockFactory, debounced on a ManualClock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from gpiozero import DigitalInputDevice  # type: ignore[import-untyped]
from gpiozero.pins.mock import MockFactory  # type: ignore[import-untyped]

from device_drivers import (
    BUILTIN_DRIVERS,
    DeviceEvent,
    DriverConfigError,
    DriverIOError,
    ManualClock,
    Sample,
    parse_driver_config,
)
from device_drivers.gpio import GpioConfig, GpioDriver
from device_drivers.gpio import driver as gpio_driver
from tests.device_drivers.uart.uart_helpers import START_MS, Collector
from wire import validate_event_data

CONTACT, REX, LEAK, STRIKE, SIREN = 17, 22, 23, 27, 24


def make_config(**extra: Any) -> GpioConfig:
    raw: dict[str, Any] = {
        "type": "gpio",
        "id": "gpio-east-gate",
        "inputs": [
            {"device": "east-gate", "kind": "door_contact", "pin": CONTACT, "door": "east-gate"},
            {"device": "east-gate", "kind": "exit_button", "pin": "GPIO22", "door": "east-gate"},
            {
                "device": "pump-leak",
                "kind": "leak_probe",
                "pin": LEAK,
                "invert": True,  # fail-safe NC output: an open loop is the alarm
                "bounce_ms": 200,
            },
        ],
        "outputs": [
            {"name": "east-gate-strike", "pin": STRIKE, "active_high": False},
            {"name": "pump-siren", "pin": SIREN},
        ],
    }
    raw.update(extra)
    return GpioConfig.model_validate(raw)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
def factory() -> MockFactory:
    mock = MockFactory()
    yield mock
    mock.close()


@pytest.fixture
async def run(clock: ManualClock, factory: MockFactory) -> AsyncIterator[Collector]:
    driver = GpioDriver(make_config(), clock=clock, pin_factory=factory)
    async with Collector(driver, clock) as collector:
        yield collector


def level(pin: Any) -> bool:
    """A mock pin's level (high is True)."""
    return bool(pin.state)


def events(outputs: list[Any], kind: str) -> list[DeviceEvent]:
    return [o for o in outputs if isinstance(o, DeviceEvent) and o.kind == kind]


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


# -- configuration ---------------------------------------------------------------------------


def test_registry_line_and_config_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTIN_DRIVERS, "gpio", "device_drivers.gpio:GpioDriver")
    raw = make_config().model_dump(mode="json")
    assert isinstance(parse_driver_config(raw), GpioConfig)
    leak = {"device": "l", "kind": "leak_probe", "pin": 5}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"inputs": [], "outputs": []}, "$", "at least one"),
        ({"outputs": [{"name": "a", "pin": "17"}]}, "$", "pin 17 is already used by inputs.0"),
        ({"outputs": [{"name": "a", "pin": 5}, {"name": "a", "pin": 6}]}, "$", "more than once"),
        ({"inputs": [{**leak, "pull_up": None}]}, "inputs.0", "needs active_state"),
        ({"inputs": [{**leak, "active_state": True}]}, "inputs.0", "floating inputs"),
        ({"inputs": [{**leak, "door": "x"}]}, "inputs.0", "door applies"),
        ({"inputs": [leak, {**leak, "pin": 6}]}, "$", "two leak_probe inputs"),
        ({"inputs": [{**leak, "pin": 54}]}, "inputs.0.pin", "from 0 to 53"),
        ({"inputs": [{**leak, "pin": "GPIO 5"}]}, "inputs.0.pin", "pin name"),
        ({"inputs": [{**leak, "bounce": 5}]}, "inputs.0.bounce", "Extra inputs"),
    ]
    for change, field, reason in cases:
        with pytest.raises(DriverConfigError) as info:
            parse_driver_config({**raw, **change})
        assert (info.value.field, reason in info.value.reason) == (field, True), info.value


async def test_gpiozero_pin_errors_are_config_errors_and_release_claimed_pins(
    clock: ManualClock, factory: MockFactory
) -> None:
    cases = [
        (
            [
                {"device": "a", "kind": "leak_probe", "pin": 17},
                {"device": "b", "kind": "leak_probe", "pin": "BOARD11"},
            ],
            "inputs.1.pin",
            "in use",
        ),
        (
            [{"device": "a", "kind": "leak_probe", "pin": 2, "pull_up": False}],
            "inputs.0.pin",
            "fixed pull",
        ),
        ([{"device": "a", "kind": "leak_probe", "pin": 40}], "inputs.0.pin", "not a valid pin"),
    ]
    for inputs, field, reason in cases:
        driver = GpioDriver(
            make_config(inputs=inputs, outputs=[]), clock=clock, pin_factory=factory
        )
        with pytest.raises(DriverConfigError) as info:
            await driver.open()
        assert info.value.field == field
        assert reason in info.value.reason
        DigitalInputDevice(17, pin_factory=factory).close()  # released again


async def test_a_pin_factory_that_cannot_load_is_a_driver_io_error(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_lgpio(name: str) -> None:
        raise ImportError("No module named 'lgpio'")

    monkeypatch.setattr(gpio_driver, "_load_factory", no_lgpio)
    driver = GpioDriver(make_config(pin_factory="lgpio"), clock=clock)
    with pytest.raises(DriverIOError, match="pin factory lgpio"):
        await driver.open()


# -- inputs ----------------------------------------------------------------------------------


async def test_initial_state_is_reported_at_open(run: Collector) -> None:
    # Pulled up and nothing closing the contacts: the door reads open and the fail-safe leak
    # loop reads broken, which is an alarm.
    leak = await run.event("alarm.water_leak")
    assert leak == DeviceEvent("pump-leak", START_MS, "alarm.water_leak", {"active": True})
    assert await run.sample() == Sample("east-gate", START_MS, {"door_open": 1.0})
    assert await run.sample() == Sample("pump-leak", START_MS, {"water_leak": 1.0})
    driver = run.driver
    assert isinstance(driver, GpioDriver)
    assert driver.input_states() == {
        "east-gate": {"door_contact": True, "exit_button": False},
        "pump-leak": {"leak_probe": True},
    }
    assert driver.device_ids == ("east-gate", "pump-leak")


async def test_a_door_contact_reports_changes_after_the_debounce(
    run: Collector, clock: ManualClock, factory: MockFactory
) -> None:
    await run.sample()
    await run.sample()
    factory.pin(CONTACT).drive_low()  # door shut
    await settle()
    await clock.advance(0.049)
    await asyncio.sleep(0.02)
    assert run.since("door.contact") == []  # not steady for 50 ms yet
    await clock.advance(0.001)
    closed = await run.event("door.contact")
    assert closed == DeviceEvent(
        "east-gate", START_MS, "door.contact", {"open": False, "door": "east-gate"}
    )
    assert await run.sample() == Sample("east-gate", START_MS, {"door_open": 0.0})
    await clock.advance(10)
    factory.pin(CONTACT).drive_high()
    await settle()
    opened = await run.event("door.contact", advance_s=0.05)
    assert (opened.ts_ms, opened.data["open"]) == (START_MS + 10_050, True)
    for event in events(run.outputs, "door.contact"):
        validate_event_data(event.kind, dict(event.data))


async def test_a_bounce_burst_gives_one_event_and_a_glitch_none(
    run: Collector, clock: ManualClock, factory: MockFactory
) -> None:
    pin = factory.pin(CONTACT)
    for level in [0, 1, 0, 1, 0, 1, 0]:  # contact closing, bouncing for 60 ms
        (pin.drive_low if level == 0 else pin.drive_high)()
        await settle()
        await clock.advance(0.01)
    await clock.advance(0.05)
    await asyncio.sleep(0.05)
    contact = events(run.outputs, "door.contact")
    assert [e.data["open"] for e in contact] == [False]
    assert contact[0].ts_ms == START_MS  # stamped at the first edge of the burst
    # A 20 ms glitch that returns to the same level is not a change.
    pin.drive_high()
    await settle()
    await clock.advance(0.02)
    pin.drive_low()
    await settle()
    await clock.advance(1)
    await asyncio.sleep(0.05)
    assert len(events(run.outputs, "door.contact")) == 1


async def test_a_chattering_contact_is_read_at_most_ten_bounce_times_late(
    run: Collector, clock: ManualClock, factory: MockFactory
) -> None:
    pin = factory.pin(CONTACT)
    for i in range(60):  # toggles every 20 ms for 1.2 s, never steady for 50 ms
        (pin.drive_low if i % 2 == 0 else pin.drive_high)()
        await settle()
        await clock.advance(0.02)
    contact = events(run.outputs, "door.contact")
    assert 1 <= len(contact) <= 3


async def test_exit_button_requests_exit_once_per_press(
    run: Collector, clock: ManualClock, factory: MockFactory
) -> None:
    pin = factory.pin(REX)
    for _ in range(2):
        for level in [0, 1, 0]:  # press, with a bounce
            (pin.drive_low if level == 0 else pin.drive_high)()
            await settle()
            await clock.advance(0.005)
        request = await run.event("door.exit_request", advance_s=0.05)
        assert request.data == {"door": "east-gate"}
        pin.drive_high()  # release: nothing to report
        await settle()
        await clock.advance(1)
    await asyncio.sleep(0.05)
    assert len(events(run.outputs, "door.exit_request")) == 2
    assert [o for o in run.outputs if isinstance(o, Sample) and "exit" in str(o.values)] == []


async def test_a_leak_probe_raises_and_clears_the_alarm(
    run: Collector, clock: ManualClock, factory: MockFactory
) -> None:
    await run.event("alarm.water_leak")  # the loop is open at start
    pin = factory.pin(LEAK)
    pin.drive_low()  # loop closed: dry
    await settle()
    await clock.advance(0.1)
    await asyncio.sleep(0.02)
    assert run.since("alarm.water_leak") == []  # 200 ms debounce for leak probes
    cleared = await run.event("alarm.water_leak", advance_s=0.1)
    assert cleared.data == {"active": False}
    assert (await run.sample()).values == {"water_leak": 0.0}
    pin.drive_high()
    await settle()
    raised = await run.event("alarm.water_leak", advance_s=0.2)
    assert raised.data == {"active": True}
    validate_event_data(raised.kind, dict(raised.data))


async def test_heartbeat_resends_states_and_catches_a_missed_edge(
    run: Collector, clock: ManualClock, factory: MockFactory
) -> None:
    await run.sample()
    await run.sample()
    factory.pin(CONTACT)._change_state(False)  # the door shut but no edge was reported
    await clock.advance(299)
    await asyncio.sleep(0.02)
    assert run.since("door.contact") == []
    await clock.advance(1)
    contact = await run.event("door.contact")
    assert (contact.ts_ms, contact.data["open"]) == (START_MS + 300_000, False)
    beat = [await run.sample(), await run.sample(), await run.sample()]
    assert Sample("east-gate", START_MS + 300_000, {"door_open": 0.0}) in beat
    assert Sample("pump-leak", START_MS + 300_000, {"water_leak": 1.0}) in beat


async def test_edges_from_gpiozero_threads_reach_the_loop(
    run: Collector, clock: ManualClock, factory: MockFactory
) -> None:
    await run.sample()
    thread = threading.Thread(target=factory.pin(CONTACT).drive_low)
    thread.start()
    thread.join()
    event = await run.event("door.contact", advance_s=0.05)
    assert event.data["open"] is False


# -- relays ----------------------------------------------------------------------------------


async def test_relays_start_safe_pulse_on_the_clock_and_switch(
    run: Collector, clock: ManualClock, factory: MockFactory
) -> None:
    driver = run.driver
    assert isinstance(driver, GpioDriver)
    strike, siren = factory.pin(STRIKE), factory.pin(SIREN)
    assert driver.output_names == ("east-gate-strike", "pump-siren")
    assert (level(strike), level(siren)) == (True, False)  # active-low board: high is off
    await driver.pulse_output("east-gate-strike", 5)
    assert level(strike) is False
    assert driver.output_state("east-gate-strike") is True
    await clock.advance(3)
    await driver.pulse_output("east-gate-strike", 5)  # a new grant restarts the time
    await clock.advance(4.9)
    assert level(strike) is False
    await clock.advance(0.1)
    await settle()
    assert level(strike) is True
    assert driver.output_state("east-gate-strike") is False
    await driver.set_output("pump-siren", True)
    assert level(siren) is True
    await driver.pulse_output("pump-siren", 1)
    await driver.set_output("pump-siren", True)  # cancels the pulse
    await clock.advance(2)
    await settle()
    assert level(siren) is True
    await driver.set_output("pump-siren", False)
    assert level(siren) is False
    with pytest.raises(KeyError, match="no output named 'nope'"):
        await driver.set_output("nope", True)
    for seconds in (0, -1, 3601):
        with pytest.raises(ValueError, match="pulse length"):
            await driver.pulse_output("pump-siren", seconds)


async def test_close_returns_relays_to_their_initial_values(
    clock: ManualClock, factory: MockFactory
) -> None:
    driver = GpioDriver(make_config(), clock=clock, pin_factory=factory)
    async with Collector(driver, clock):
        await driver.pulse_output("east-gate-strike", 5)
        await driver.set_output("pump-siren", True)
    assert level(factory.pin(STRIKE)) is True  # locked again
    assert level(factory.pin(SIREN)) is False
    await driver.aclose()  # idempotent
    factory.pin(CONTACT).drive_low()  # edges after close are ignored
    with pytest.raises(KeyError):
        driver.output_state("pump-siren")
    # Every pin was released.
    for pin in (CONTACT, REX, LEAK, STRIKE, SIREN):
        DigitalInputDevice(pin, pin_factory=factory).close()


async def test_a_mock_pin_factory_from_the_config(clock: ManualClock) -> None:
    config = make_config(pin_factory="mock", outputs=[])
    driver = GpioDriver(config, clock=clock)
    async with Collector(driver, clock) as run:
        await run.sample()
        assert isinstance(driver.pin_factory, MockFactory)
        driver.pin_factory.pin(CONTACT).drive_low()
        await run.event("door.contact", advance_s=0.05)
    with pytest.raises(RuntimeError, match="closed"):
        await driver.open()


async def test_outputs_needs_open_and_one_reader(clock: ManualClock, factory: MockFactory) -> None:
    driver = GpioDriver(make_config(), clock=clock, pin_factory=factory)
    with pytest.raises(RuntimeError, match="open"):
        await anext(driver.outputs())
    async with Collector(driver, clock):
        await asyncio.sleep(0.01)  # the collector's task is iterating now
        with pytest.raises(RuntimeError, match="already"):
            await anext(driver.outputs())
