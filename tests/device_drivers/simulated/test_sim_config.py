from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from device_drivers import (
    DriverConfig,
    DriverConfigError,
    ManualClock,
    create_driver,
    driver_class,
    parse_driver_config,
)
from device_drivers.simulated import (
    PlaceRef,
    Scenario,
    SimulatedConfig,
    SimulatedDevice,
    SimulatedDriver,
)
from device_drivers.simulated.scenario import INCIDENT_TYPES
from tests.device_drivers.simulated.sim_helpers import ALL_KINDS_DEVICES, START_MS, make_config


def base_raw(**extra: Any) -> dict[str, Any]:
    return {
        "type": "simulated",
        "id": "sim-b3",
        "seed": 7,
        "devices": [
            {"id": "b3-2-201-smoke", "kind": "smoke"},
            {"id": "b3-2-201-th", "kind": "temp_humidity"},
            {"id": "east-gate-reader", "kind": "door_reader", "door": "east-gate"},
        ],
        **extra,
    }


def test_registry_builds_the_driver_from_gateway_config() -> None:
    config = parse_driver_config(base_raw())
    assert isinstance(config, SimulatedConfig)
    assert config.interval_s == 10
    assert config.timezone == "UTC"
    assert driver_class("simulated") is SimulatedDriver
    driver = create_driver(config, clock=ManualClock(START_MS))
    assert isinstance(driver, SimulatedDriver)
    assert driver.device_ids == ("b3-2-201-smoke", "b3-2-201-th", "east-gate-reader")


def test_every_kind_is_accepted() -> None:
    config = make_config(ALL_KINDS_DEVICES)
    assert {device.kind for device in config.devices} == {
        device["kind"] for device in ALL_KINDS_DEVICES
    }


@pytest.mark.parametrize(
    "model",
    [SimulatedConfig, SimulatedDevice, Scenario, PlaceRef, *INCIDENT_TYPES],
    ids=lambda model: model.__name__,
)
def test_every_field_is_described(model: type[BaseModel]) -> None:
    undocumented = [name for name, field in model.model_fields.items() if not field.description]
    assert undocumented == []


def test_config_is_frozen() -> None:
    config = make_config(ALL_KINDS_DEVICES)
    with pytest.raises(ValidationError):
        config.seed = 8  # type: ignore[misc]
    assert issubclass(SimulatedConfig, DriverConfig)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"colour": "red"}, "colour", "Extra inputs"),
        ({"interval_s": 0.5}, "interval_s", "greater than or equal to 1"),
        ({"seed": -1}, "seed", "greater than or equal"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
        ({"devices": []}, "devices", "at least 1"),
        (
            {"devices": [{"id": "a", "kind": "smoke"}, {"id": "a", "kind": "gas"}]},
            "devices",
            "more than once",
        ),
        ({"devices": [{"id": "a", "kind": "toaster"}]}, "devices.0.kind", "Input should be"),
        ({"devices": [{"id": "a b", "kind": "smoke"}]}, "devices.0.id", "pattern"),
        (
            {"devices": [{"id": "a", "kind": "smoke", "door": "east"}]},
            "devices.0",
            "door applies to door_reader devices only",
        ),
        (
            {"devices": [{"id": "a", "kind": "gas", "rate_per_hour": 3}]},
            "devices.0",
            "rate_per_hour applies to",
        ),
        (
            {"scenario": {"incidents": []}, "scenario_file": "x.yaml"},
            "$",
            "not both",
        ),
        (
            {"scenario": {"incidents": [{"at": "5x", "device": "a", "do": "smoke"}]}},
            "scenario.incidents.0.smoke.at",
            "invalid duration '5x'",
        ),
    ],
)
def test_invalid_config_names_the_field(change: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(DriverConfigError) as info:
        parse_driver_config(base_raw(**change))
    assert info.value.driver_id == "sim-b3"
    assert info.value.field == field
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("incident", "reason"),
    [
        (
            {"at": 60, "device": "b3-2-201-th", "do": "smoke"},
            "incident 1, field device: b3-2-201-th is of kind temp_humidity; do: smoke needs a device of kind smoke",
        ),
        (
            {"at": 60, "place": "3/2/201", "do": "smoke"},
            "incident 1, field place: incident given by place",
        ),
        (
            {"at": 60, "device": "b3-2-201-smoke", "do": "smoke", "heat": ["east-gate-reader"]},
            "incident 1, field heat.0: east-gate-reader is of kind door_reader, not temp_humidity",
        ),
        (
            {"at": 60, "device": "east-gate-reader", "do": "door_held_open", "open_s": 30},
            "incident 1, field open_s: must exceed the reader's held_open_after_s (30 s)",
        ),
        (
            {"at": 60, "device": "east-gate-reader", "do": "stuck", "duration": "1h"},
            "incident 1, field device: east-gate-reader is of kind door_reader; do: stuck needs a device of kind co2 or ",
        ),
    ],
)
def test_inline_incidents_must_fit_their_devices(incident: dict[str, Any], reason: str) -> None:
    # The first incident is fine and names a device of another gateway: it is skipped.
    ok = {"at": 0, "device": "elsewhere", "do": "gas"}
    with pytest.raises(DriverConfigError) as info:
        parse_driver_config(base_raw(scenario={"incidents": [ok, incident]}))
    assert info.value.field == "scenario"
    assert reason in info.value.reason


def test_incidents_of_other_gateways_need_not_fit() -> None:
    # "elsewhere" is unknown here, so nothing is checked against this driver's devices.
    scenario = {"incidents": [{"at": 0, "device": "elsewhere", "do": "door_forced"}]}
    config = parse_driver_config(base_raw(scenario=scenario))
    assert isinstance(config, SimulatedConfig)
    assert config.scenario is not None
    assert len(config.scenario.incidents) == 1


def test_device_options_default_per_kind() -> None:
    config = make_config([{"id": "gate", "kind": "door_reader"}, {"id": "cam", "kind": "camera"}])
    reader, camera = config.devices
    assert reader.door is None  # the driver falls back to the device id
    assert reader.held_open_after_s == 30
    assert camera.zone == "perimeter"
    assert camera.line == "line-1"
