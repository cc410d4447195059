"""Per-device health: when a device stops answering it faults once, and recovers once.

Drivers report every exchange; this turns them into at most one ``device.fault`` per outage and
one ``device.recovered`` when the device answers again, with counters of what went wrong.
"""

from __future__ import annotations

import collections
import enum

from device_drivers.base import DeviceEvent


class DeviceHealthState(enum.StrEnum):
    """What a driver knows of one device."""

    UNKNOWN = "unknown"  # not heard from yet
    OK = "ok"
    FAULTED = "faulted"


class DeviceHealth:
    """Tracks one device's exchanges.

    Args:
        device_id: the device.
        failures_to_fault: consecutive failures (timeouts, bad checksums, I/O errors) after
            which the device counts as faulted; a single glitch on a noisy bus does not.
    """

    def __init__(self, device_id: str, *, failures_to_fault: int = 3) -> None:
        if failures_to_fault < 1:
            msg = "failures_to_fault must be at least 1"
            raise ValueError(msg)
        self.device_id = device_id
        self.state = DeviceHealthState.UNKNOWN
        self.errors: collections.Counter[str] = collections.Counter()
        self._failures_to_fault = failures_to_fault
        self._consecutive = 0
        self._faulted_at_ms: int | None = None

    def success(self, ts_ms: int) -> DeviceEvent | None:
        """The device answered correctly; returns ``device.recovered`` after a fault."""
        self._consecutive = 0
        recovered = self.state is DeviceHealthState.FAULTED
        self.state = DeviceHealthState.OK
        if not recovered:
            return None
        after_s = None
        if self._faulted_at_ms is not None:
            after_s = max(0.0, (ts_ms - self._faulted_at_ms) / 1000)
        self._faulted_at_ms = None
        data = {} if after_s is None else {"after_s": after_s}
        return DeviceEvent(self.device_id, ts_ms, "device.recovered", data)

    def failure(self, ts_ms: int, kind: str, reason: str) -> DeviceEvent | None:
        """An exchange failed (``kind`` is counted: timeout, crc, noise, io, ...).

        Returns ``device.fault`` once, when the consecutive failures reach the threshold.
        """
        self.errors[kind] += 1
        self._consecutive += 1
        if self.state is DeviceHealthState.FAULTED or self._consecutive < self._failures_to_fault:
            return None
        self.state = DeviceHealthState.FAULTED
        self._faulted_at_ms = ts_ms
        return DeviceEvent(self.device_id, ts_ms, "device.fault", {"reason": reason[:256]})
