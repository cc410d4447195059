"""Errors of device drivers.

DriverError
 ├── DriverNotAvailableError   no driver is registered for a ``type``
 ├── DriverConfigError         a driver's settings do not validate
 └── DriverIOError             the device or its port failed (transient: the agent retries)
"""

from __future__ import annotations


class DriverError(Exception):
    """Root of every error raised by :mod:`device_drivers`."""


class DriverNotAvailableError(DriverError, LookupError):
    """No driver is registered for a ``type``, or its module cannot be imported."""

    def __init__(self, type_key: str, reason: str) -> None:
        super().__init__(f"driver type {type_key!r}: {reason}")
        self.type_key = type_key


class DriverConfigError(DriverError, ValueError):
    """A driver's settings do not validate.  ``field`` is a dotted path inside the driver."""

    def __init__(self, driver_id: str, field: str, reason: str) -> None:
        super().__init__(f"driver {driver_id!r}, field {field}: {reason}")
        self.driver_id = driver_id
        self.field = field
        self.reason = reason


class DriverIOError(DriverError, OSError):
    """A device or port failed; the agent restarts the driver with back-off."""

    def __init__(self, device_id: str, reason: str) -> None:
        super().__init__(f"device {device_id!r}: {reason}")
        self.device_id = device_id
        self.reason = reason
