"""Plantower PMS5003 frames, without I/O: feed bytes from the UART, get checked frames back.

A data frame is 32 bytes of big-endian words (reference/device-protocols.md, section 3.6)::

    42 4D | 00 1C | PM1 PM2.5 PM10 (CF=1) | PM1 PM2.5 PM10 (atmospheric) | 6 particle counts
          | version, error code | checksum = sum of bytes 0..29 & 0xFFFF

The sensor answers a command with an 8-byte frame of length 4 (``42 4D 00 04 CMD DATA CK``);
those are checked and counted, never taken for data.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Literal

from device_drivers.uart.frames import FrameStats

__all__ = [
    "ACTIVE_MODE",
    "DATA_FRAME_LENGTH",
    "PASSIVE_MODE",
    "READ",
    "SLEEP",
    "START",
    "WAKE",
    "Particles",
    "Pms5003Command",
    "Pms5003Frame",
    "Pms5003Parser",
    "pms5003_checksum",
    "pms5003_command",
]

START = b"\x42\x4d"
DATA_FRAME_LENGTH = 32
_DATA_LENGTH_FIELD = 28  # 13 data words + checksum
_ACK_LENGTH_FIELD = 4  # command, data, checksum
# Length fields of sibling models, to name them when one is wired to a PMS5003 driver.
_OTHER_MODELS = {20: "PMS3003", 36: "PMS5003ST", 32: "PMS5003T/PMS5003S"}

Particles = Literal["atmospheric", "standard"]


class Pms5003Command(enum.IntEnum):
    """Command bytes (esphome ``pmsx003.h``)."""

    MODE = 0xE1  # data 0 = passive, 1 = active
    READ = 0xE2  # passive mode: send one data frame
    SLEEP = 0xE4  # data 0 = sleep (fan off), 1 = wake


def pms5003_checksum(data: bytes | bytearray | memoryview) -> int:
    """16-bit sum of ``data`` (every byte of a frame before its checksum)."""
    return sum(data) & 0xFFFF


def pms5003_command(command: Pms5003Command, data: int = 0) -> bytes:
    """The 7-byte command frame ``42 4D CMD DATAH DATAL CKH CKL``."""
    if not 0 <= data <= 0xFFFF:  # noqa: PLR2004 - 16 bits
        msg = "data must fit 16 bits"
        raise ValueError(msg)
    head = START + bytes((command, data >> 8, data & 0xFF))
    return head + pms5003_checksum(head).to_bytes(2, "big")


PASSIVE_MODE = pms5003_command(Pms5003Command.MODE, 0)  # 42 4D E1 00 00 01 70
ACTIVE_MODE = pms5003_command(Pms5003Command.MODE, 1)  # 42 4D E1 00 01 01 71
READ = pms5003_command(Pms5003Command.READ, 0)  # 42 4D E2 00 00 01 71
SLEEP = pms5003_command(Pms5003Command.SLEEP, 0)  # 42 4D E4 00 00 01 73
WAKE = pms5003_command(Pms5003Command.SLEEP, 1)  # 42 4D E4 00 01 01 74


@dataclasses.dataclass(frozen=True, slots=True)
class Pms5003Frame:
    """One checked data frame.

    Attributes:
        pm1_standard: PM1.0 in µg/m³, standard particle (CF=1, the factory calibration).
        pm25_standard: PM2.5, CF=1.
        pm10_standard: PM10, CF=1.
        pm1_atmospheric: PM1.0 in µg/m³ under atmospheric environment (for ambient air).
        pm25_atmospheric: PM2.5, atmospheric.
        pm10_atmospheric: PM10, atmospheric.
        counts: particles per 0.1 L above 0.3, 0.5, 1.0, 2.5, 5.0 and 10 µm.
        version: byte 28, the firmware version on many units.
        error_code: byte 29, non-zero when the sensor reports a fault on many units.
    """

    pm1_standard: int
    pm25_standard: int
    pm10_standard: int
    pm1_atmospheric: int
    pm25_atmospheric: int
    pm10_atmospheric: int
    counts: tuple[int, int, int, int, int, int]
    version: int
    error_code: int

    @classmethod
    def decode(cls, frame: bytes | bytearray) -> Pms5003Frame:
        """Decode a 32-byte frame whose start, length and checksum were already checked."""
        words = [int.from_bytes(frame[i : i + 2], "big") for i in range(4, 28, 2)]
        return cls(
            pm1_standard=words[0],
            pm25_standard=words[1],
            pm10_standard=words[2],
            pm1_atmospheric=words[3],
            pm25_atmospheric=words[4],
            pm10_atmospheric=words[5],
            counts=(words[6], words[7], words[8], words[9], words[10], words[11]),
            version=frame[28],
            error_code=frame[29],
        )

    def values(self, particles: Particles = "atmospheric") -> dict[str, float]:
        """The readings ``pm1``, ``pm25`` and ``pm10`` in µg/m³.

        Args:
            particles: ``atmospheric`` (bytes 10-15; what ESPHome reports as pm_2_5, right for
                ambient air) or ``standard`` (CF=1, bytes 4-9).
        """
        if particles == "standard":
            return {
                "pm1": float(self.pm1_standard),
                "pm25": float(self.pm25_standard),
                "pm10": float(self.pm10_standard),
            }
        return {
            "pm1": float(self.pm1_atmospheric),
            "pm25": float(self.pm25_atmospheric),
            "pm10": float(self.pm10_atmospheric),
        }


class Pms5003Parser:
    """Turns a byte stream into checked frames, resynchronising after noise and damage.

    Hunts for ``42 4D``, checks the length field (28 for data, 4 for a command acknowledgement)
    and the checksum.  After a bad length or checksum it resumes the hunt two bytes further,
    inside the rejected frame, so a frame cut short and followed by a good one loses only
    itself.  At most one partial frame is buffered.
    """

    def __init__(self) -> None:
        self.stats = FrameStats()
        self.last_error = ""
        self._buf = bytearray()

    def clear(self) -> None:
        """Drop buffered bytes (after a reconnect they belong to nothing); keep the counters."""
        self._buf.clear()

    def feed(self, data: bytes) -> list[Pms5003Frame]:
        """Add bytes read from the port; return the data frames they complete, in order."""
        buf = self._buf
        buf += data
        frames: list[Pms5003Frame] = []
        while True:
            start = buf.find(START)
            if start < 0:
                # Keep a trailing 0x42: it may be the first half of the next start marker.
                keep = 1 if buf.endswith(START[:1]) else 0
                self.stats.noise_bytes += len(buf) - keep
                del buf[: len(buf) - keep]
                return frames
            if start:
                self.stats.noise_bytes += start
                del buf[:start]
            if len(buf) < 4:  # noqa: PLR2004 - start marker and length field
                return frames
            length = int.from_bytes(buf[2:4], "big")
            if length not in (_DATA_LENGTH_FIELD, _ACK_LENGTH_FIELD):
                self.stats.bad_length += 1
                model = _OTHER_MODELS.get(length)
                hint = f" (a {model}?)" if model else ""
                self.last_error = f"frame length {length}{hint}, expected {_DATA_LENGTH_FIELD}"
                del buf[:2]
                continue
            total = length + 4
            if len(buf) < total:
                return frames
            expected = pms5003_checksum(memoryview(buf)[: total - 2])
            received = int.from_bytes(buf[total - 2 : total], "big")
            if expected != received:
                self.stats.bad_checksum += 1
                self.last_error = f"checksum {received:04X}, computed {expected:04X}"
                del buf[:2]
                continue
            if length == _DATA_LENGTH_FIELD:
                frames.append(Pms5003Frame.decode(buf[:total]))
                self.stats.frames += 1
            else:
                self.stats.other_frames += 1
            del buf[:total]
