"""Settings of the OSDP driver: keys stay secret, readers are unique, mistakes are named."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from device_drivers import ManualClock
from device_drivers.osdp import OsdpConfig, OsdpDriver
from device_drivers.osdp.bus import BusReader, OsdpBus

KEY = "000102030405060708090a0b0c0d0e0f"


def raw(**extra: Any) -> dict[str, Any]:
    return {
        "type": "osdp",
        "id": "b3-osdp",
        "port": "/dev/ttyUSB0",
        "readers": [
            {"id": "b3-lobby-reader", "address": 1, "scbk": KEY, "door": "b3-lobby",
             "contact_input": 0, "rex_input": 1, "strike_output": 0},
            {"id": "b3-garage-reader", "address": 2},
        ],
        **extra,
    }  # fmt: skip


def test_defaults_and_the_key_as_bytes():
    config = OsdpConfig.model_validate(raw())
    lobby, garage = config.readers
    assert (config.baud, config.offline_after_s, config.log_level) == (9600, 3.0, "error")
    assert lobby.scbk_bytes == bytes(range(16))
    assert garage.scbk_bytes is None
    assert (lobby.has_door, garage.has_door) == (True, False)
    assert (lobby.strike_s, lobby.grant_window_s, lobby.held_open_s) == (5.0, 10.0, 30.0)


def test_the_key_never_shows_in_reprs_dumps_or_errors():
    config = OsdpConfig.model_validate(raw())
    assert KEY not in repr(config)
    assert KEY not in str(config.model_dump())
    assert KEY not in config.model_dump_json()
    bad = raw()
    bad["readers"][0]["scbk"] = KEY[:-1] + "g"
    with pytest.raises(ValidationError) as info:
        OsdpConfig.model_validate(bad)
    assert KEY[:-1] not in str(info.value)
    assert "32 hex digits" in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scbk": "0011"}, "32 hex digits"),
        ({"address": 127}, "less than or equal to 126"),
        ({"address": 2}, "used by two readers"),
        ({"id": "b3-garage-reader"}, "more than once"),
        ({"strike_s": 30}, "less than or equal to 25.5"),
        ({"held_open_s": 0}, "greater than 0"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_reader_mistakes_are_named(change, message):
    bad = raw()
    bad["readers"][0].update(change)
    with pytest.raises(ValidationError, match=message):
        OsdpConfig.model_validate(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"baud": 14400}, "9600"),
        ({"readers": []}, "at least 1"),
        ({"retry_min_s": 5, "retry_max_s": 1}, "retry_max_s"),
        ({"offline_after_s": 0.1}, "greater than or equal to 0.5"),
        ({"log_level": "loud"}, "emergency"),
    ],
)
def test_line_mistakes_are_named(change, message):
    with pytest.raises(ValidationError, match=message):
        OsdpConfig.model_validate(raw(**change))


def test_a_null_held_open_limit_switches_it_off():
    config = raw()
    config["readers"][0]["held_open_s"] = None
    assert OsdpConfig.model_validate(config).readers[0].held_open_s is None


async def test_the_driver_lists_its_readers_and_refuses_to_run_unopened():
    driver = OsdpDriver(OsdpConfig.model_validate(raw()), clock=ManualClock(0))
    assert driver.device_ids == ("b3-lobby-reader", "b3-garage-reader")
    assert driver.health("b3-garage-reader").device_id == "b3-garage-reader"
    with pytest.raises(RuntimeError, match="open"):
        await anext(driver.outputs())
    with pytest.raises(RuntimeError, match="not open"):
        await driver.unlock("b3-lobby-reader")
    with pytest.raises(KeyError):
        await driver.unlock("nobody")
    await driver.aclose()


async def test_commands_never_served_are_cancelled_when_the_bus_stops():
    bus = OsdpBus(
        [BusReader("r1", 1)],
        loop=asyncio.get_running_loop(),
        on_event=lambda _index, _event: None,
        on_tx=lambda _data: None,
        on_failure=lambda _exc: None,
    )
    pending = bus.submit(0, {"command": 1})
    bus.stop()
    assert pending.cancelled()
    assert bus.submit(0, {"command": 1}).cancelled()
