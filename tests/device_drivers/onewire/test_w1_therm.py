"""Parsing and checking w1_slave content (reference/device-protocols.md, section 5.4)."""

from __future__ import annotations

import contextlib
import random

import pytest

from device_drivers.onewire import W1Error, crc8_maxim, parse_w1_slave
from tests.device_drivers.onewire.w1_helpers import POWER_ON, REFERENCE, w1_slave_text


def test_crc8_maxim_check_values() -> None:
    assert crc8_maxim(b"123456789") == 0xA1
    assert crc8_maxim(bytes.fromhex("72 01 4B 46 7F FF 0E 10")) == 0x57
    assert crc8_maxim(bytes.fromhex("50 05 4b 46 7f ff 0c 10")) == 0x1C


def test_the_reference_reading() -> None:
    reading = parse_w1_slave(REFERENCE)
    assert reading.milli_c == 23125
    assert reading.celsius == 23.125
    assert reading.scratchpad == bytes.fromhex("72 01 4b 46 7f ff 0e 10 57")
    # Scratchpad bytes 0-1 are the same value: int16 LE / 16.
    assert int.from_bytes(reading.scratchpad[:2], "little", signed=True) / 16 == 23.125


@pytest.mark.parametrize("milli_c", [-55000, -10125, 0, 62, 23125, 84937, 85062, 125000])
def test_readings_across_the_range(milli_c: int) -> None:
    # 62 °mC is not a multiple of 62.5; the kernel's t= is what counts.
    assert parse_w1_slave(w1_slave_text(milli_c)).milli_c == milli_c


@pytest.mark.parametrize(
    ("content", "kind", "in_reason"),
    [
        (w1_slave_text(21000, kernel_crc_ok=False), "crc", "crc="),
        (w1_slave_text(21000, damage_crc=True), "crc", "computed"),
        (POWER_ON, "power_on_reset", "85 °C"),
        (
            "00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n",
            "no_data",
            "stuck low",
        ),
        ("", "parse", "2 lines"),
        ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", "parse", "2 lines"),
        ("hello\nworld\n", "parse", "unexpected"),
        (REFERENCE.replace("t=23125", "t=abc"), "parse", "unexpected"),
        (REFERENCE.replace("10 57 t=", "10 58 t="), "parse", "different scratchpads"),
    ],
)
def test_bad_content_is_rejected_with_a_kind(content: str, kind: str, in_reason: str) -> None:
    with pytest.raises(W1Error) as info:
        parse_w1_slave(content)
    assert info.value.kind == kind
    assert in_reason in info.value.reason


def test_exactly_85000_is_rejected_even_with_a_good_crc() -> None:
    with pytest.raises(W1Error) as info:
        parse_w1_slave(w1_slave_text(85000))
    assert info.value.kind == "power_on_reset"


def test_random_content_only_ever_raises_w1_error() -> None:
    rng = random.Random(18)
    for _ in range(500):
        garbage = rng.randbytes(rng.randrange(0, 120)).decode("latin-1")
        with pytest.raises(W1Error):
            parse_w1_slave(garbage)
        mutated = list(REFERENCE)
        mutated[rng.randrange(len(mutated))] = chr(rng.randrange(32, 127))
        with contextlib.suppress(W1Error):
            parse_w1_slave("".join(mutated))
