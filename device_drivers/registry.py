"""Where drivers come from: a table of built-in drivers, and an entry-point group for others."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from device_drivers.base import Driver, DriverConfig
from device_drivers.clock import Clock
from device_drivers.doors.access import Authorise
from device_drivers.errors import DriverConfigError, DriverNotAvailableError

# Imported only when selected, so one family's optional dependencies never burden another.
BUILTIN_DRIVERS: dict[str, str] = {
    "ds18b20": "device_drivers.onewire:Ds18b20Driver",
    "gpio": "device_drivers.gpio:GpioDriver",
    "mhz19": "device_drivers.uart:Mhz19Driver",
    "modbus_rtu": "device_drivers.modbus:ModbusRtuDriver",
    "osdp": "device_drivers.osdp:OsdpDriver",
    "pms5003": "device_drivers.uart:Pms5003Driver",
    "simulated": "device_drivers.simulated:SimulatedDriver",
    "wiegand": "device_drivers.wiegand:WiegandDriver",
}
ENTRY_POINT_GROUP = "anju.drivers"


def available_types() -> list[str]:
    """Every driver type known here, built-in and installed as plug-ins."""
    plugins = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(set(BUILTIN_DRIVERS) | plugins)


def driver_class(type_key: str) -> type[Driver[Any]]:
    """The driver class for ``type_key``."""
    target = BUILTIN_DRIVERS.get(type_key)
    if target is None:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=type_key)
        if not eps:
            known = ", ".join(available_types())
            raise DriverNotAvailableError(type_key, f"no such driver (known: {known})")
        target = next(iter(eps)).value
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DriverNotAvailableError(type_key, f"cannot import {module_name}: {exc}") from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise DriverNotAvailableError(type_key, f"{target} is not a Driver")
    return cls


def parse_driver_config(raw: Mapping[str, Any]) -> DriverConfig:
    """Validate one driver's settings with the model its ``type`` selects."""
    type_key = raw.get("type")
    driver_id = str(raw.get("id", "?"))
    if not isinstance(type_key, str):
        raise DriverConfigError(driver_id, "type", "missing driver type")
    cls = driver_class(type_key)
    try:
        return cls.config_model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"]) or "$"
        raise DriverConfigError(driver_id, field, err["msg"]) from None


def create_driver(
    config: DriverConfig, *, clock: Clock, authorise: Authorise | None = None
) -> Driver[Any]:
    """Instantiate the driver for a validated config.

    ``authorise`` (a local access decision) goes to the drivers that read credentials and
    accept one; others never see it.
    """
    cls = driver_class(config.type)
    if authorise is not None and "authorise" in inspect.signature(cls.__init__).parameters:
        return cls(config, clock=clock, authorise=authorise)  # type: ignore[call-arg]
    return cls(config, clock=clock)
