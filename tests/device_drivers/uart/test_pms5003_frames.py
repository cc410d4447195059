"""The PMS5003 parser, without I/O, on the byte-exact frames of the reference (section 3.6)."""

from __future__ import annotations

import random

import pytest

from device_drivers.uart import pms5003
from device_drivers.uart.pms5003 import Pms5003Frame, Pms5003Parser, pms5003_checksum
from tests.device_drivers.uart.uart_helpers import PMS_REFERENCE_FRAME, corrupt_checksum, pms_frame

ACK_PASSIVE = bytes.fromhex("42 4D 00 04 E1 00 01 74")


def test_the_reference_frame_decodes() -> None:
    parser = Pms5003Parser()
    [frame] = parser.feed(PMS_REFERENCE_FRAME)
    assert frame == Pms5003Frame(
        pm1_standard=0,
        pm25_standard=8,
        pm10_standard=8,
        pm1_atmospheric=0,
        pm25_atmospheric=8,
        pm10_atmospheric=8,
        counts=(210, 70, 45, 30, 0, 0),
        version=0x97,
        error_code=0,
    )
    assert pms5003_checksum(PMS_REFERENCE_FRAME[:30]) == 0x02C5
    assert parser.stats.as_dict() == {
        "frames": 1,
        "other_frames": 0,
        "bad_checksum": 0,
        "bad_length": 0,
        "noise_bytes": 0,
    }


def test_atmospheric_and_standard_values_come_from_their_own_bytes() -> None:
    [frame] = Pms5003Parser().feed(pms_frame(standard=(11, 22, 33), atmospheric=(7, 15, 29)))
    assert frame.values() == {"pm1": 7.0, "pm25": 15.0, "pm10": 29.0}
    assert frame.values("atmospheric") == {"pm1": 7.0, "pm25": 15.0, "pm10": 29.0}
    assert frame.values("standard") == {"pm1": 11.0, "pm25": 22.0, "pm10": 33.0}


def test_commands_match_the_reference_table() -> None:
    assert bytes.fromhex("42 4D E1 00 00 01 70") == pms5003.PASSIVE_MODE
    assert bytes.fromhex("42 4D E1 00 01 01 71") == pms5003.ACTIVE_MODE
    assert bytes.fromhex("42 4D E2 00 00 01 71") == pms5003.READ
    assert bytes.fromhex("42 4D E4 00 00 01 73") == pms5003.SLEEP
    assert bytes.fromhex("42 4D E4 00 01 01 74") == pms5003.WAKE
    with pytest.raises(ValueError, match="16 bits"):
        pms5003.pms5003_command(pms5003.Pms5003Command.MODE, 0x10000)


@pytest.mark.parametrize("cut", range(1, 32))
def test_a_frame_split_anywhere_decodes_once(cut: int) -> None:
    parser = Pms5003Parser()
    assert parser.feed(PMS_REFERENCE_FRAME[:cut]) == []
    assert len(parser.feed(PMS_REFERENCE_FRAME[cut:])) == 1
    assert parser.stats.noise_bytes == 0


def test_byte_by_byte() -> None:
    parser = Pms5003Parser()
    frames = [f for b in PMS_REFERENCE_FRAME * 3 for f in parser.feed(bytes((b,)))]
    assert len(frames) == 3


def test_noise_before_a_frame_is_skipped_and_counted() -> None:
    parser = Pms5003Parser()
    assert parser.feed(b"\x00\x11\x4d\x42\x42") == []  # the last 0x42 may start a frame
    assert parser.stats.noise_bytes == 4
    assert len(parser.feed(PMS_REFERENCE_FRAME[1:])) == 1
    assert parser.stats.noise_bytes == 4


def test_a_bad_checksum_is_counted_and_the_next_frame_still_decodes() -> None:
    parser = Pms5003Parser()
    assert parser.feed(corrupt_checksum(PMS_REFERENCE_FRAME)) == []
    assert parser.stats.bad_checksum == 1
    assert "checksum 02C6, computed 02C5" in parser.last_error
    assert len(parser.feed(PMS_REFERENCE_FRAME)) == 1


def test_a_truncated_frame_followed_by_a_good_one_loses_only_itself() -> None:
    parser = Pms5003Parser()
    good = pms_frame(atmospheric=(1, 2, 3))
    frames = parser.feed(PMS_REFERENCE_FRAME[:17] + good)
    assert [f.values() for f in frames] == [{"pm1": 1.0, "pm25": 2.0, "pm10": 3.0}]
    assert parser.stats.bad_checksum == 1
    assert parser.stats.frames == 1


def test_a_wrong_length_is_counted_and_named() -> None:
    parser = Pms5003Parser()
    pms5003st = b"\x42\x4d\x00\x24" + bytes(36)
    assert parser.feed(pms5003st + PMS_REFERENCE_FRAME) != []
    assert parser.stats.bad_length == 1
    assert "length 36 (a PMS5003ST?)" in parser.last_error


def test_a_command_acknowledgement_is_counted_not_taken_for_data() -> None:
    parser = Pms5003Parser()
    assert parser.feed(ACK_PASSIVE + PMS_REFERENCE_FRAME) != []
    assert parser.stats.other_frames == 1
    assert parser.stats.frames == 1
    assert parser.stats.bad_checksum == parser.stats.bad_length == 0


def test_noise_and_damage_between_frames_never_lose_a_good_frame() -> None:
    rng = random.Random(5003)
    parser = Pms5003Parser()
    sent: list[dict[str, float]] = []
    stream = bytearray()
    for i in range(300):
        roll = rng.random()
        if roll < 0.3:
            stream += rng.randbytes(rng.randrange(1, 80))
        elif roll < 0.4:
            stream += PMS_REFERENCE_FRAME[: rng.randrange(1, 32)]  # truncated
        elif roll < 0.5:
            stream += corrupt_checksum(pms_frame(atmospheric=(i, i, i)))
        good = pms_frame(atmospheric=(i, i + 1, i + 2))
        sent.append(Pms5003Frame.decode(good).values())
        stream += good
    received = []
    for chunk_start in range(0, len(stream), 37):  # reads of odd sizes
        received += [f.values() for f in parser.feed(bytes(stream[chunk_start : chunk_start + 37]))]
    assert received == sent
    assert parser.stats.noise_bytes > 0
    assert parser.stats.bad_checksum > 0


def test_random_bytes_never_raise_and_the_buffer_stays_small() -> None:
    rng = random.Random(1)
    parser = Pms5003Parser()
    for _ in range(200):
        parser.feed(rng.randbytes(rng.randrange(0, 500)))
    assert len(parser._buf) < pms5003.DATA_FRAME_LENGTH
    parser.clear()
    assert len(parser._buf) == 0
    assert len(parser.feed(PMS_REFERENCE_FRAME)) == 1
