"""OSDP readers on RS-485, with the gateway as control panel (through libosdp).

Configure one driver per RS-485 line::

    - type: osdp
      id: b3-osdp
      port: /dev/ttyUSB0               # or socket://10.0.0.20:4001 through ser2net
      baud: 9600
      offline_after_s: 3
      readers:
        - id: b3-lobby-reader          # device id, as known to the hub's registry
          address: 1
          scbk: ${B3_LOBBY_SCBK}       # 32 hex digits; the secure channel is then required
          door: b3-lobby
          contact_input: 0
          rex_input: 1
          strike_output: 0
          strike_s: 5
          held_open_s: 60
        - id: b3-garage-reader
          address: 2

Card reads become ``door.access`` events (``format``: ``wiegand26``, ``wiegand34`` or
``osdp_raw``; ``bits``), PINs ``door.access`` with ``format: keypad``; the reader's inputs give
``door.contact``, ``door.forced``, ``door.held_open`` and ``door.exit_request``; a silent
reader, a wrong key, tamper and power failure give ``device.fault`` / ``device.recovered``.

Credential convention (shared with the Wiegand driver, so one card has one pseudonym at every
reader)::

    credential = f"{bits}:{hex}"

``hex`` is the lowercase hex of the FULL raw card bit string as read (parity bits included),
left-padded with zero bits to whole bytes.  ``osdp_RAW`` carries the bits MSB first and
left-justified: ``bd 88 eb 80`` with 26 bits is the frame ``0x2F623AE`` (FC 123 / CN 4567),
credential ``26:02f623ae``.  The format is not decoded for the credential.  A PIN is
``pin:<digits>``.  Raw credentials travel in ``DeviceEvent.credential`` only; the edge agent
replaces them by keyed pseudonyms.
"""

from __future__ import annotations

from device_drivers.osdp.config import OsdpConfig, OsdpReader
from device_drivers.osdp.driver import OsdpDriver
from device_drivers.osdp.phy import Reply, ReplyMonitor, checksum, crc16

__all__ = [
    "OsdpConfig",
    "OsdpDriver",
    "OsdpReader",
    "Reply",
    "ReplyMonitor",
    "checksum",
    "crc16",
]
