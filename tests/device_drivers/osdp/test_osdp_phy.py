"""The reply monitor and check bytes, on the reference's captured frames (§1.3, §1.5)."""

from __future__ import annotations

import random

import pytest

from device_drivers.osdp import ReplyMonitor, checksum, crc16

# PD -> CP replies captured from libosdp 3.2.9 (reference §1.5) and its fixtures (§1.3).
REPLIES = {
    "pdid": ("53 e5 14 00 04 45 be ba fe 01 01 af be ad de ad de ad 07 fd", 0x45),
    "pdcap": (
        (
            "53 e5 20 00 05 46 01 01 02 02 01 01 04 01 01 05 01 01 08 01 00 09 01 00 0a 00 01 10"
            " 02 00 7a b6"
        ),
        0x46,
    ),
    "ack": ("53 e5 08 00 06 40 b0 f0", 0x40),
    "raw": ("53 e5 10 00 05 50 00 01 1a 00 bd 88 eb 80 bb 52", 0x50),
    "keypad": ("53 e5 0f 00 06 53 00 05 31 32 33 34 0d 7e a8", 0x53),
    "lstatr": ("53 e5 0a 00 07 48 00 00 4f e0", 0x48),
    "istatr": ("53 e5 0a 00 06 49 00 01 ea b1", 0x49),
    "ack_checksum": ("53 e5 07 00 01 40 80", 0x40),
    "nak": ("53 e5 09 00 05 41 01 0e 8f", 0x41),
    "ack_secure": ("53 e5 0e 00 0d 02 16 40 a6 57 0e c0 62 cd", 0x40),
}
# CP -> PD commands (seen only through an echoing RS-485 adapter).
COMMANDS = [
    "ff 53 65 08 00 04 60 60 90",
    "ff 53 65 09 00 04 61 00 d9 7a",
    "53 01 07 00 00 60 45",
    "ff 53 65 0c 00 05 68 00 05 32 00 13 9d",
]


def frame(name: str) -> bytes:
    return bytes.fromhex(REPLIES[name][0])


def test_check_bytes_match_the_catalogue_and_the_captures():
    assert crc16(b"123456789") == 0xE5CC
    assert crc16(bytes.fromhex("53 65 08 00 04 60")) == 0x9060
    assert checksum(bytes.fromhex("53 e5 07 00 01 40")) == 0x80
    assert checksum(bytes.fromhex("53 01 07 00 00 60")) == 0x45


@pytest.mark.parametrize("name", list(REPLIES))
def test_every_captured_reply_is_recognised(name):
    monitor = ReplyMonitor()
    replies = monitor.feed(frame(name))
    assert [(r.address, r.code) for r in replies] == [(0x65, REPLIES[name][1])]
    assert monitor.counters == {"frames": 1}


def test_commands_are_told_apart_from_replies_and_marks_are_not_noise():
    monitor = ReplyMonitor()
    assert monitor.feed(bytes.fromhex(" ".join(COMMANDS))) == []
    assert monitor.counters == {"commands": 4}


def test_a_stream_split_anywhere_gives_the_same_replies():
    stream = b"".join(frame(name) for name in REPLIES)
    monitor = ReplyMonitor()
    codes = []
    for byte in stream:
        codes += [r.code for r in monitor.feed(bytes([byte]))]
    assert codes == [code for _, code in REPLIES.values()]
    assert monitor.counters == {"frames": len(REPLIES)}


def test_noise_and_corrupted_frames_are_counted_and_the_monitor_resynchronises():
    monitor = ReplyMonitor()
    corrupted = bytearray(frame("raw"))
    corrupted[10] ^= 0x01  # one bit of the card data: the CRC no longer matches
    impossible_length = bytes.fromhex("53 e5 03 00 04")
    stream = (
        b"\x00\x11garbage"
        + bytes(corrupted)
        + frame("ack")
        + impossible_length
        + frame("keypad")
        + b"\x53"  # a lone SOM in noise
        + frame("lstatr")
    )
    replies = monitor.feed(stream)
    assert [r.code for r in replies] == [0x40, 0x53, 0x48]
    assert monitor.counters["bad_check"] >= 1
    assert monitor.counters["bad_header"] >= 1
    assert monitor.counters["noise_bytes"] >= 9


@pytest.mark.parametrize("seed", range(10))
def test_random_noise_never_breaks_the_monitor(seed):
    rng = random.Random(seed)
    monitor = ReplyMonitor()
    found = 0
    for _ in range(100):
        monitor.feed(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        # After at most one maximal packet of noise, a real reply is found again.
        monitor.feed(bytes(300))
        found += len(monitor.feed(frame("ack")))
    assert found == 100
    assert len(monitor._buf) <= 300
