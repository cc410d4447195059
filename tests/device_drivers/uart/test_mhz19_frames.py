"""The MH-Z19 parser, without I/O, on the byte-exact frames of the reference (section 3.7)."""

from __future__ import annotations

import random

import pytest

from device_drivers.uart import mhz19
from device_drivers.uart.mhz19 import Mhz19Command, Mhz19Parser, Mhz19Reading, mhz19_checksum
from tests.device_drivers.uart.uart_helpers import (
    MHZ19_READ,
    MHZ19_REFERENCE_REPLY,
    corrupt_checksum,
    mhz19_reply,
)


def test_the_reference_reply_decodes() -> None:
    parser = Mhz19Parser()
    [reply] = parser.feed(MHZ19_REFERENCE_REPLY)
    assert reply.command == Mhz19Command.READ_CO2
    assert reply.reading() == Mhz19Reading(co2_ppm=636, temperature_c=26, status=0)
    assert parser.stats.frames == 1


def test_checksums_and_commands_match_the_reference() -> None:
    assert mhz19_checksum(MHZ19_READ) == 0x79
    assert mhz19_checksum(MHZ19_REFERENCE_REPLY) == 0xBA
    assert mhz19.READ_CO2 == MHZ19_READ
    assert bytes.fromhex("FF 01 79 A0 00 00 00 00 E6") == mhz19.ABC_ON
    assert bytes.fromhex("FF 01 79 00 00 00 00 00 86") == mhz19.ABC_OFF
    assert mhz19.mhz19_command(Mhz19Command.CALIBRATE_ZERO) == bytes.fromhex(
        "FF 01 87 00 00 00 00 00 78"
    )
    assert mhz19.mhz19_command(Mhz19Command.SET_RANGE, bytes.fromhex("00 00 00 07 D0")) == (
        bytes.fromhex("FF 01 99 00 00 00 07 D0 8F")
    )
    assert mhz19.mhz19_command(Mhz19Command.SET_RANGE, bytes.fromhex("00 00 00 13 88")) == (
        bytes.fromhex("FF 01 99 00 00 00 13 88 CB")
    )
    with pytest.raises(ValueError, match="5 data bytes"):
        mhz19.mhz19_command(Mhz19Command.SET_RANGE, bytes(6))


@pytest.mark.parametrize("cut", range(1, 9))
def test_a_reply_split_anywhere_decodes_once(cut: int) -> None:
    parser = Mhz19Parser()
    assert parser.feed(MHZ19_REFERENCE_REPLY[:cut]) == []
    assert len(parser.feed(MHZ19_REFERENCE_REPLY[cut:])) == 1


def test_noise_and_a_doubled_start_byte_are_skipped() -> None:
    parser = Mhz19Parser()
    [reply] = parser.feed(b"\x00\x86\xff\x12\xff" + MHZ19_REFERENCE_REPLY)
    assert reply.reading() is not None
    # 00, 86, FF (followed by 12, no command), 12, FF (followed by FF)
    assert parser.stats.noise_bytes == 5


def test_a_bad_checksum_is_counted_and_the_next_reply_decodes() -> None:
    parser = Mhz19Parser()
    replies = parser.feed(corrupt_checksum(MHZ19_REFERENCE_REPLY) + mhz19_reply(1200))
    assert [r.reading() for r in replies] == [Mhz19Reading(1200, 26, 0)]
    assert parser.stats.bad_checksum == 1
    assert "checksum BB, computed BA" in parser.last_error


def test_a_truncated_reply_followed_by_a_good_one_loses_only_itself() -> None:
    parser = Mhz19Parser()
    replies = parser.feed(MHZ19_REFERENCE_REPLY[:5] + mhz19_reply(800))
    assert [r.reading() for r in replies] == [Mhz19Reading(800, 26, 0)]
    assert parser.stats.bad_checksum >= 1


def test_replies_to_other_commands_are_not_readings() -> None:
    parser = Mhz19Parser()
    ack = bytes((0xFF, 0x79, 1, 0, 0, 0, 0, 0, 0))
    ack = ack[:8] + bytes((mhz19_checksum(ack),))
    [reply] = parser.feed(ack)
    assert reply.command == Mhz19Command.SET_ABC
    assert reply.reading() is None
    assert parser.stats.other_frames == 1


def test_noise_and_damage_between_replies_never_lose_a_good_one() -> None:
    rng = random.Random(19)
    parser = Mhz19Parser()
    sent, stream = [], bytearray()
    for i in range(300):
        roll = rng.random()
        if roll < 0.3:
            stream += rng.randbytes(rng.randrange(1, 30))
        elif roll < 0.4:
            stream += MHZ19_REFERENCE_REPLY[: rng.randrange(1, 9)]
        elif roll < 0.5:
            stream += corrupt_checksum(mhz19_reply(400 + i))
        sent.append(400 + i)
        stream += mhz19_reply(400 + i)
    received = []
    for start in range(0, len(stream), 7):
        for reply in parser.feed(bytes(stream[start : start + 7])):
            reading = reply.reading()
            if reading is not None:
                received.append(reading.co2_ppm)
    # Noise forms a valid-looking reply (FF, a command byte, a matching 8-bit checksum) only
    # by a tiny chance; with this seed none does, so exactly the good replies come out.
    assert received == sent


def test_random_bytes_never_raise_and_the_buffer_stays_small() -> None:
    rng = random.Random(2)
    parser = Mhz19Parser()
    for _ in range(200):
        parser.feed(rng.randbytes(rng.randrange(0, 300)))
    assert len(parser._buf) < mhz19.FRAME_LENGTH
