"""1-Wire DS18B20 temperature sensors through the Linux ``w1_therm`` sysfs files.

Enable the bus with ``dtoverlay=w1-gpio`` (GPIO4 and a 4.7 kΩ pull-up by default); the sensors
appear as ``/sys/bus/w1/devices/28-xxxxxxxxxxxx/``.  Configure them like any driver::

    - type: ds18b20
      id: w1-pump-room
      interval_s: 60
      sensors:
        - {w1_id: 28-0316a27963ff, device: pump-room-water-temp}
        - {w1_id: 28-0416b1e2a4ff, device: pump-room-air-temp, offset_c: -0.25}

The parser (:func:`parse_w1_slave`) does no I/O and can be used on its own.
"""

from __future__ import annotations

from device_drivers.onewire.config import W1_DEVICES, Ds18b20Config, Ds18b20Sensor
from device_drivers.onewire.driver import Ds18b20Driver
from device_drivers.onewire.w1_therm import (
    POWER_ON_RESET_MILLI_C,
    W1Error,
    W1Reading,
    crc8_maxim,
    parse_w1_slave,
)

__all__ = [
    "POWER_ON_RESET_MILLI_C",
    "W1_DEVICES",
    "Ds18b20Config",
    "Ds18b20Driver",
    "Ds18b20Sensor",
    "W1Error",
    "W1Reading",
    "crc8_maxim",
    "parse_w1_slave",
]
