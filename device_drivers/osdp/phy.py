"""OSDP framing, read-only: check bytes, and a monitor of the replies a control panel receives.

libosdp does the protocol.  The driver also watches every byte that comes back from the bus
with :class:`ReplyMonitor`, which finds well-formed replies (reference §1.2, §1.3, §1.7: hunt
``0x53``, read LEN, check the CRC-16/AUG-CCITT or the checksum), to learn which readers answer
and how noisy the line is: libosdp only says whether a reader is online.
"""

from __future__ import annotations

import collections
import dataclasses

__all__ = ["Reply", "ReplyMonitor", "checksum", "crc16"]

SOM = 0x53
MARK = 0xFF
CTRL_CRC = 0x04
CTRL_SCB = 0x08
REPLY_FLAG = 0x80
HEADER_LEN = 5
MIN_PACKET_LEN = 7  # header, reply code, checksum
# libosdp's packet buffer is 256 bytes, so its control panel cannot take a longer reply either;
# the bound keeps a corrupted LEN from hiding the frames that follow it for long.
MAX_PACKET_LEN = 256


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/AUG-CCITT (poly 0x1021, init 0x1D0F), as OSDP sends it (LSB first)."""
    crc = 0x1D0F
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def checksum(data: bytes | bytearray | memoryview) -> int:
    """OSDP's 8-bit checksum: the two's complement of the byte sum."""
    return -sum(data) & 0xFF


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """A well-formed packet from a peripheral device.

    Attributes:
        address: the PD's address (0..126), without the reply flag.
        code: the reply code (0x40 ACK, 0x50 RAW, 0x76 CCRYPT, ...).
    """

    address: int
    code: int


class ReplyMonitor:
    """Finds replies in a received byte stream and counts what is not a reply.

    Attributes:
        counters: ``frames`` (good replies), ``bad_check`` (CRC or checksum errors),
            ``bad_header`` (impossible lengths), ``noise_bytes`` (bytes outside any packet),
            ``commands`` (well-formed packets *to* a PD: an echoing RS-485 adapter).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.counters: collections.Counter[str] = collections.Counter()

    def feed(self, data: bytes) -> list[Reply]:
        """Add received bytes; returns the replies they complete."""
        buf = self._buf
        buf += data
        replies: list[Reply] = []
        while True:
            start = buf.find(SOM)
            if start < 0:
                self._skip(len(buf))
                break
            self._skip(start)
            if len(buf) < HEADER_LEN:
                break
            length = buf[2] | buf[3] << 8
            if not MIN_PACKET_LEN <= length <= MAX_PACKET_LEN:
                self.counters["bad_header"] += 1
                self._skip(1)
                continue
            if len(buf) < length:
                break
            packet = memoryview(buf)[:length]
            ok = self._check(packet)
            address, code = packet[1], self._code(packet)
            packet.release()
            if not ok:
                self.counters["bad_check"] += 1
                self._skip(1)  # resynchronise on the next SOM
                continue
            del buf[:length]
            if address & REPLY_FLAG:
                self.counters["frames"] += 1
                replies.append(Reply(address & ~REPLY_FLAG, code))
            else:
                self.counters["commands"] += 1
        return replies

    def _skip(self, count: int) -> None:
        if count <= 0:
            return
        noise = sum(1 for byte in self._buf[:count] if byte != MARK)
        if noise:
            self.counters["noise_bytes"] += noise
        del self._buf[:count]

    @staticmethod
    def _check(packet: memoryview) -> bool:
        if packet[4] & CTRL_CRC:
            return crc16(packet[:-2]) == (packet[-2] | packet[-1] << 8)
        return checksum(packet[:-1]) == packet[-1]

    @staticmethod
    def _code(packet: memoryview) -> int:
        pos = HEADER_LEN
        if packet[4] & CTRL_SCB:
            pos += packet[HEADER_LEN]
        return packet[pos] if pos < len(packet) else -1
