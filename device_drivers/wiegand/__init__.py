"""Wiegand card readers (26- and 34-bit) behind serial Wiegand converters.

Configure one driver per converter::

    - type: wiegand
      id: east-gate-wiegand
      port: /dev/ttyUSB1          # or socket://10.0.0.20:4001 through ser2net
      baud: 9600
      format: hex_data            # hex_data | hex_frame | decimal | em4100
      device: east-gate-reader    # the reader's device id (the driver id when absent)
      door: east-gate

Card reads become ``door.access`` events with ``format`` (``wiegand26``, ``wiegand34``,
``em4100``, ``keypad``) and ``bits`` in ``data``; the raw credential travels beside the data in
:attr:`DeviceEvent.credential <device_drivers.base.DeviceEvent>` and is pseudonymised by the
edge agent.

Credential convention (the same for OSDP readers, so one card has one pseudonym everywhere)::

    credential = f"{bits}:{hex}"

``hex`` is the lowercase hex of the FULL raw card bit string as read, parity bits included,
left-padded with zero bits to whole bytes: the 26-bit H10301 frame of FC 123 / CN 4567,
``0x2F623AE``, is ``26:02f623ae``.  Converters that output only the data bits (``hex_data``,
``decimal``) have the frame rebuilt with computed parity; ``hex_frame`` frames have their parity
checked, and a bad one is counted and dropped.  PINs from the reader's keypad are credentials
too: ``pin:<digits>``, submitted with ``#``.
"""

from __future__ import annotations

from device_drivers.wiegand.bits import (
    add_parity,
    check_parity,
    credential,
    encode_h10301,
    encode_h10306,
    from_msb_first,
)
from device_drivers.wiegand.config import WiegandConfig
from device_drivers.wiegand.driver import WiegandDriver
from device_drivers.wiegand.formats import (
    BadFrame,
    CardRead,
    ConverterFormat,
    FrameParser,
    KeyPress,
    make_parser,
)

__all__ = [
    "BadFrame",
    "CardRead",
    "ConverterFormat",
    "FrameParser",
    "KeyPress",
    "WiegandConfig",
    "WiegandDriver",
    "add_parity",
    "check_parity",
    "credential",
    "encode_h10301",
    "encode_h10306",
    "from_msb_first",
    "make_parser",
]
