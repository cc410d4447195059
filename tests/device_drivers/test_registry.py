"""Built-in drivers come from a lazy table; third-party ones from the `anju.drivers` group."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from typing import Any, ClassVar, Literal

import pytest

from device_drivers import (
    BUILTIN_DRIVERS,
    ENTRY_POINT_GROUP,
    DriverConfigError,
    DriverNotAvailableError,
    available_types,
    driver_class,
    parse_driver_config,
)
from device_drivers.base import DriverConfig
from device_drivers.simulated import SimulatedDriver


class AcmeConfig(DriverConfig):
    type: Literal["acme_meter"]
    port: str


class AcmeDriver(SimulatedDriver):  # any Driver subclass will do for the registry
    type_key: ClassVar[str] = "acme_meter"
    config_model: ClassVar[type[DriverConfig]] = AcmeConfig


@pytest.fixture
def acme_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("acme_anju_plugin")
    module.AcmeDriver = AcmeDriver  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "acme_anju_plugin", module)
    entry = importlib.metadata.EntryPoint(
        "acme_meter", "acme_anju_plugin:AcmeDriver", ENTRY_POINT_GROUP
    )
    real = importlib.metadata.entry_points

    def entry_points(**kwargs: Any) -> Any:
        if kwargs.get("group") == ENTRY_POINT_GROUP:
            name = kwargs.get("name")
            return importlib.metadata.EntryPoints([entry] if name in (None, "acme_meter") else [])
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_every_builtin_driver_imports_and_names_its_type() -> None:
    for type_key in BUILTIN_DRIVERS:
        cls = driver_class(type_key)
        assert cls.type_key == type_key


def test_a_third_party_driver_is_found_through_its_entry_point(acme_plugin: None) -> None:
    assert "acme_meter" in available_types()
    assert driver_class("acme_meter") is AcmeDriver
    config = parse_driver_config({"type": "acme_meter", "id": "m1", "port": "/dev/ttyS0"})
    assert isinstance(config, AcmeConfig)


def test_unknown_types_and_bad_settings_name_what_is_wrong() -> None:
    with pytest.raises(DriverNotAvailableError, match=r"known: .*modbus_rtu"):
        driver_class("no_such_driver")
    with pytest.raises(DriverConfigError) as info:
        parse_driver_config(
            {
                "type": "modbus_rtu",
                "id": "bus",
                "port": "/dev/ttyUSB0",
                "parity": "X",
                "devices": [],
            }
        )
    assert info.value.driver_id == "bus"
    assert info.value.field == "parity"
