"""The ``w1_slave`` file of the Linux ``w1_therm`` driver, parsed and checked without I/O.

Reading ``/sys/bus/w1/devices/28-*/w1_slave`` starts a conversion and returns two lines
(reference/device-protocols.md, section 5.4)::

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125

The nine scratchpad bytes end with a CRC-8/MAXIM of the first eight; the kernel says YES or NO,
and this module checks it again.  ``t=`` is milli-degrees Celsius.  ``t=85000`` is the
power-on reset value of the temperature register: the conversion never ran.
"""

from __future__ import annotations

import dataclasses
import re

__all__ = [
    "POWER_ON_RESET_MILLI_C",
    "W1Error",
    "W1Reading",
    "crc8_maxim",
    "parse_w1_slave",
]

POWER_ON_RESET_MILLI_C = 85_000
_SCRATCHPAD = r"((?:[0-9a-fA-F]{2}\s+){9})"
_CRC_LINE = re.compile(_SCRATCHPAD + r":\s*crc=([0-9a-fA-F]{2})\s+(YES|NO)\s*$")
_T_LINE = re.compile(_SCRATCHPAD + r"t=(-?\d{1,7})\s*$")


class W1Error(ValueError):
    """A ``w1_slave`` read that gives no temperature.

    Attributes:
        kind: ``crc`` (the kernel or our check says the scratchpad is damaged),
            ``power_on_reset`` (85 °C, the conversion never ran), ``no_data`` (all-zero
            scratchpad: the data line is stuck low), ``parse`` (not the expected two lines);
            the driver adds ``missing``, ``io``, ``timeout`` and ``range``.
        reason: what was wrong, for the fault event.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class W1Reading:
    """A checked reading.

    Attributes:
        milli_c: temperature in milli-degrees Celsius, as the kernel reports it.
        scratchpad: the nine scratchpad bytes.
    """

    milli_c: int
    scratchpad: bytes

    @property
    def celsius(self) -> float:
        """Temperature in degrees Celsius."""
        return self.milli_c / 1000


def crc8_maxim(data: bytes) -> int:
    """CRC-8/MAXIM (Dallas 1-Wire): polynomial x⁸+x⁵+x⁴+1 reflected (0x8C), initial value 0."""
    crc = 0
    for byte in data:
        value = byte
        for _ in range(8):
            mix = (crc ^ value) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            value >>= 1
    return crc


def parse_w1_slave(text: str) -> W1Reading:
    """Parse and check the content of a ``w1_slave`` file.

    Raises:
        W1Error: if the content is malformed, the CRC is bad, the scratchpad is all zeros, or
            the value is the 85 °C power-on reset value.
    """
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) != 2:  # noqa: PLR2004 - the CRC line and the t= line
        raise W1Error("parse", f"expected 2 lines, got {len(lines)}")
    crc_match = _CRC_LINE.match(lines[0])
    t_match = _T_LINE.match(lines[1])
    if crc_match is None or t_match is None:
        raise W1Error("parse", f"unexpected content {text.strip()[:80]!r}")
    scratchpad = bytes.fromhex(crc_match.group(1))
    if bytes.fromhex(t_match.group(1)) != scratchpad:
        raise W1Error("parse", "the two lines show different scratchpads")
    if crc_match.group(3) != "YES":
        raise W1Error("crc", f"the kernel reports a CRC error (crc={crc_match.group(2)} NO)")
    computed = crc8_maxim(scratchpad[:8])
    if computed != scratchpad[8]:
        raise W1Error("crc", f"CRC {scratchpad[8]:02x}, computed {computed:02x}")
    if not any(scratchpad):
        raise W1Error("no_data", "all-zero scratchpad: the data line is stuck low")
    milli_c = int(t_match.group(2))
    if milli_c == POWER_ON_RESET_MILLI_C:
        raise W1Error(
            "power_on_reset",
            "85 °C power-on reset value: the conversion did not run (power or parasite power)",
        )
    return W1Reading(milli_c, scratchpad)
