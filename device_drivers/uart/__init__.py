"""Serial (UART) environmental sensors: Plantower PMS5003 and Winsen MH-Z19.

One driver instance reads one sensor on its own port.  Configure them like any driver::

    - type: pms5003
      id: pms-b3-lobby
      device: b3-lobby-pm          # device id in the hub's registry (the driver id if absent)
      port: /dev/serial/by-id/usb-1a86_USB_Serial-if00-port0
      interval_s: 60               # one sample a minute of the 1 Hz stream
      particles: atmospheric       # or standard (CF=1)

    - type: mhz19
      id: co2-b3-2-201
      device: b3-2-201-co2
      port: socket://192.168.10.20:4001   # ser2net, or a path like /dev/ttyAMA0
      interval_s: 30
      abc: false                   # a room that never sees fresh air

The frame parsers (:class:`Pms5003Parser`, :class:`Mhz19Parser`) do no I/O and can be used on
their own: feed bytes, get checked frames, read the error counters.
"""

from __future__ import annotations

from device_drivers.uart.config import Mhz19Config, Pms5003Config, UartSensorConfig
from device_drivers.uart.driver import (
    FrameParser,
    Mhz19Driver,
    Pms5003Driver,
    SerialSensorDriver,
)
from device_drivers.uart.frames import FrameStats
from device_drivers.uart.mhz19 import (
    Mhz19Command,
    Mhz19Parser,
    Mhz19Reading,
    Mhz19Reply,
    mhz19_checksum,
    mhz19_command,
)
from device_drivers.uart.pms5003 import (
    Pms5003Command,
    Pms5003Frame,
    Pms5003Parser,
    pms5003_checksum,
    pms5003_command,
)

__all__ = [
    "FrameParser",
    "FrameStats",
    "Mhz19Command",
    "Mhz19Config",
    "Mhz19Driver",
    "Mhz19Parser",
    "Mhz19Reading",
    "Mhz19Reply",
    "Pms5003Command",
    "Pms5003Config",
    "Pms5003Driver",
    "Pms5003Frame",
    "Pms5003Parser",
    "SerialSensorDriver",
    "UartSensorConfig",
    "mhz19_checksum",
    "mhz19_command",
    "pms5003_checksum",
    "pms5003_command",
]
