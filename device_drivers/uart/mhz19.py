"""Winsen MH-Z19 / MH-Z19B frames, without I/O: commands to send, replies to check and decode.

Every frame is 9 bytes (reference/device-protocols.md, section 3.7).  A request is
``FF 01 CMD b3 b4 b5 b6 b7 CS``, a reply ``FF CMD b2 .. b7 CS``; ``CS`` is the two's complement
of the sum of bytes 1 to 7.  The reply to "read CO₂" (0x86) is ``FF 86 HH LL TT SS U U CS``:
``HH*256+LL`` ppm, ``TT-40`` °C (undocumented, coarse), ``SS`` status.
"""

from __future__ import annotations

import dataclasses
import enum

from device_drivers.uart.frames import FrameStats

__all__ = [
    "ABC_OFF",
    "ABC_ON",
    "FRAME_LENGTH",
    "READ_CO2",
    "Mhz19Command",
    "Mhz19Parser",
    "Mhz19Reading",
    "Mhz19Reply",
    "mhz19_checksum",
    "mhz19_command",
]

FRAME_LENGTH = 9
_START = 0xFF
_REQUEST = 0x01


class Mhz19Command(enum.IntEnum):
    """Command bytes (esphome ``mhz19.cpp``)."""

    SET_ABC = 0x79  # automatic baseline correction: b3 = 0xA0 on, 0x00 off
    READ_CO2 = 0x86
    CALIBRATE_ZERO = 0x87
    CALIBRATE_SPAN = 0x88
    SET_RANGE = 0x99


# Replies come back with the command byte of their request; nothing else follows FF.
_REPLY_COMMANDS = frozenset(int(c) for c in Mhz19Command)


def mhz19_checksum(frame: bytes | bytearray) -> int:
    """Checksum of a 9-byte frame: ``0xFF - (sum of bytes 1..7 mod 256) + 1``, mod 256."""
    return (0xFF - (sum(frame[1:8]) & 0xFF) + 1) & 0xFF


def mhz19_command(command: Mhz19Command, data: bytes = b"") -> bytes:
    """The request frame ``FF 01 CMD data... CS`` (``data`` is up to 5 bytes, zero-padded)."""
    if len(data) > 5:  # noqa: PLR2004 - bytes 3..7
        msg = "at most 5 data bytes"
        raise ValueError(msg)
    body = bytes((_START, _REQUEST, command)) + data.ljust(5, b"\x00")
    return body + bytes((mhz19_checksum(body + b"\x00"),))


READ_CO2 = mhz19_command(Mhz19Command.READ_CO2)  # FF 01 86 00 00 00 00 00 79
ABC_ON = mhz19_command(Mhz19Command.SET_ABC, b"\xa0")  # FF 01 79 A0 00 00 00 00 E6
ABC_OFF = mhz19_command(Mhz19Command.SET_ABC)  # FF 01 79 00 00 00 00 00 86


@dataclasses.dataclass(frozen=True, slots=True)
class Mhz19Reading:
    """A decoded reply to "read CO₂".

    Attributes:
        co2_ppm: CO₂ concentration.
        temperature_c: the sensor's internal temperature (byte 4 - 40; undocumented, coarse).
        status: byte 5, undocumented.
    """

    co2_ppm: int
    temperature_c: int
    status: int


@dataclasses.dataclass(frozen=True, slots=True)
class Mhz19Reply:
    """One checked 9-byte reply.

    Attributes:
        command: the command byte it answers.
        frame: the 9 bytes.
    """

    command: int
    frame: bytes

    def reading(self) -> Mhz19Reading | None:
        """The CO₂ reading, if this answers "read CO₂"."""
        if self.command != Mhz19Command.READ_CO2:
            return None
        return Mhz19Reading(
            co2_ppm=self.frame[2] << 8 | self.frame[3],
            temperature_c=self.frame[4] - 40,
            status=self.frame[5],
        )


class Mhz19Parser:
    """Turns a byte stream into checked replies, resynchronising after noise and damage.

    Hunts for ``FF`` followed by a known command byte and checks the checksum; after a bad
    checksum it resumes the hunt one byte further, inside the rejected frame.
    """

    def __init__(self) -> None:
        self.stats = FrameStats()
        self.last_error = ""
        self._buf = bytearray()

    def clear(self) -> None:
        """Drop buffered bytes (after a reconnect they belong to nothing); keep the counters."""
        self._buf.clear()

    def feed(self, data: bytes) -> list[Mhz19Reply]:
        """Add bytes read from the port; return the replies they complete, in order."""
        buf = self._buf
        buf += data
        replies: list[Mhz19Reply] = []
        while True:
            start = buf.find(_START)
            if start < 0:
                self.stats.noise_bytes += len(buf)
                buf.clear()
                return replies
            if start:
                self.stats.noise_bytes += start
                del buf[:start]
            if len(buf) < 2:  # noqa: PLR2004 - start and command byte
                return replies
            if buf[1] not in _REPLY_COMMANDS:
                self.stats.noise_bytes += 1
                del buf[:1]
                continue
            if len(buf) < FRAME_LENGTH:
                return replies
            frame = bytes(buf[:FRAME_LENGTH])
            expected = mhz19_checksum(frame)
            if frame[8] != expected:
                self.stats.bad_checksum += 1
                self.last_error = f"checksum {frame[8]:02X}, computed {expected:02X}"
                del buf[:1]
                continue
            reply = Mhz19Reply(frame[1], frame)
            if reply.command == Mhz19Command.READ_CO2:
                self.stats.frames += 1
            else:
                self.stats.other_frames += 1
            replies.append(reply)
            del buf[:FRAME_LENGTH]
