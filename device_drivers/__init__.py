"""Device drivers of anju: one sub-package per device family, each yielding typed outputs."""

from __future__ import annotations

from device_drivers.base import DeviceEvent, Driver, DriverConfig, DriverOutput, Sample
from device_drivers.clock import Clock, ManualClock, ScaledClock, SystemClock
from device_drivers.errors import (
    DriverConfigError,
    DriverError,
    DriverIOError,
    DriverNotAvailableError,
)
from device_drivers.registry import (
    BUILTIN_DRIVERS,
    ENTRY_POINT_GROUP,
    available_types,
    create_driver,
    driver_class,
    parse_driver_config,
)

__all__ = [
    "BUILTIN_DRIVERS",
    "ENTRY_POINT_GROUP",
    "Clock",
    "DeviceEvent",
    "Driver",
    "DriverConfig",
    "DriverConfigError",
    "DriverError",
    "DriverIOError",
    "DriverNotAvailableError",
    "DriverOutput",
    "ManualClock",
    "Sample",
    "ScaledClock",
    "SystemClock",
    "available_types",
    "create_driver",
    "driver_class",
    "parse_driver_config",
]
