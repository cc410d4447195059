"""Modbus RTU devices through pymodbus: register maps as data, several devices on one bus.

Built-in profiles cover XY-MD02-style and SHT30-style temperature/humidity transmitters and
RS-485 digital-input modules carrying water-leak and smoke relays; any other device gets a
register map in its config.  Configure one driver per serial bus::

    - type: modbus_rtu
      id: b3-rs485
      port: /dev/serial/by-id/usb-FTDI_FT232R-if00-port0   # or socket://10.0.3.7:4001
      baudrate: 9600
      parity: N            # E for XY-MD02 batches that only speak 8E1
      poll_interval_s: 30
      devices:
        - {id: b3-pump-room-th, unit: 1, profile: xy_md02}
        - id: b3-pump-room-alarms
          unit: 2
          profile: di_leak_smoke
          poll_interval_s: 1
        - id: b3-roof-th
          unit: 3
          profile: sht30_rh_first
          overrides: {temperature: {offset: -0.4}}
        - id: b3-boiler-meter
          unit: 7
          registers:
            - {name: flow_temp, function: 3, address: 0x0010, encoding: float32, unit: °C}
            - {name: pressure, function: 4, address: 0x0002, scale: 0.01, unit: bar}
"""

from __future__ import annotations

from device_drivers.modbus.bus import BusLostError, ModbusBus, ReadError, ReadResult
from device_drivers.modbus.config import (
    ALARM_EVENT_KINDS,
    ModbusConfig,
    ModbusDevice,
    RegisterConfig,
    ValueOverride,
)
from device_drivers.modbus.driver import ModbusRtuDriver
from device_drivers.modbus.profiles import (
    PROFILES,
    Encoding,
    FunctionCode,
    Profile,
    ReadBlock,
    ValueSpec,
    decode_block,
    decode_words,
    plan_reads,
)
from device_drivers.modbus.scan import DEFAULT_PROBE, Probe, ScanHit, scan_bus

__all__ = [
    "ALARM_EVENT_KINDS",
    "DEFAULT_PROBE",
    "PROFILES",
    "BusLostError",
    "Encoding",
    "FunctionCode",
    "ModbusBus",
    "ModbusConfig",
    "ModbusDevice",
    "ModbusRtuDriver",
    "Probe",
    "Profile",
    "ReadBlock",
    "ReadError",
    "ReadResult",
    "RegisterConfig",
    "ScanHit",
    "ValueOverride",
    "ValueSpec",
    "decode_block",
    "decode_words",
    "plan_reads",
    "scan_bus",
]
