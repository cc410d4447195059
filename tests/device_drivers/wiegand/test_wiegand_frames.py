"""Wiegand frames and converter formats, with the reference's byte-exact examples (§2)."""

from __future__ import annotations

import random

import pytest

from device_drivers.wiegand import (
    BadFrame,
    CardRead,
    ConverterFormat,
    KeyPress,
    add_parity,
    check_parity,
    credential,
    encode_h10301,
    encode_h10306,
    from_msb_first,
    make_parser,
)
from device_drivers.wiegand.formats import DecimalParser, Frame

FC123_CN4567 = "26:02f623ae"


# -- frames -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facility", "number", "frame", "bits_text"),
    [
        (123, 4567, 0x2F623AE, "10111101100010001110101110"),
        (90, 324, 0x0B40288, "00101101000000001010001000"),
        (99, 999, 0x0C607CF, "00110001100000011111001111"),
    ],
)
def test_h10301_frames_match_the_reference(facility, number, frame, bits_text):
    assert encode_h10301(facility, number) == frame
    assert f"{frame:026b}" == bits_text
    assert check_parity(frame, 26)
    assert (frame >> 17) & 0xFF == facility
    assert (frame >> 1) & 0xFFFF == number


def test_34_bit_frame_matches_the_reference():
    frame = encode_h10306(1234, 56789)
    assert frame == 0x209A5BBAA
    assert f"{frame:034b}" == "1000001001101001011011101110101010"
    assert check_parity(frame, 34)
    assert credential(34, frame) == "34:0209a5bbaa"


@pytest.mark.parametrize(("frame", "bits"), [(0x2F623AE, 26), (0x0C607CF, 26), (0x209A5BBAA, 34)])
def test_every_single_bit_error_breaks_the_parity(frame, bits):
    for bit in range(bits):
        assert not check_parity(frame ^ (1 << bit), bits)


def test_the_credential_is_the_whole_frame_padded_to_bytes():
    assert credential(26, 0x2F623AE) == FC123_CN4567
    assert credential(26, 0) == "26:00000000"
    assert credential(8, 0xAB) == "8:ab"
    assert credential(40, 0x62E3086CED) == "40:62e3086ced"
    for bits, value in [(26, 1 << 26), (0, 0), (8, -1)]:
        with pytest.raises(ValueError, match="frame"):
            credential(bits, value)


def test_osdp_raw_bits_give_the_same_credential_as_a_converter():
    # Reference §1.5: osdp_RAW data bd 88 eb 80, 26 bits, MSB first and left-justified.
    raw = from_msb_first(bytes.fromhex("bd88eb80"), 26)
    assert raw == 0x2F623AE
    assert credential(26, raw) == FC123_CN4567
    assert add_parity(0x7B11D7, 24) == (0x2F623AE, 26)
    with pytest.raises(ValueError, match="bytes"):
        from_msb_first(b"\xbd\x88\xeb", 26)


def test_frame_builders_refuse_what_does_not_fit():
    with pytest.raises(ValueError, match="H10301"):
        encode_h10301(256, 1)
    with pytest.raises(ValueError, match="34-bit"):
        encode_h10306(1, 65536)
    with pytest.raises(ValueError, match="frame"):
        add_parity(1 << 24, 24)
    with pytest.raises(ValueError, match="frame"):
        add_parity(1, 23)
    with pytest.raises(ValueError, match="parity"):
        check_parity(1, 37)


# -- converter formats --------------------------------------------------------------------------


def cards(frames: list[Frame]) -> list[CardRead]:
    return [f for f in frames if isinstance(f, CardRead)]


def bad(frames: list[Frame]) -> list[str]:
    return [f.kind for f in frames if isinstance(f, BadFrame)]


def test_hex_data_wie232_example():
    parser = make_parser(ConverterFormat.HEX_DATA)
    (frame,) = parser.feed(b"7B11D7\r")
    assert isinstance(frame, CardRead)
    assert (frame.bits, frame.format, frame.credential) == (26, "wiegand26", FC123_CN4567)
    (frame34,) = parser.feed(b"04d2ddd5\r")  # FC 1234 / CN 56789 as 32 data bits
    assert isinstance(frame34, CardRead)
    assert frame34.credential == "34:0209a5bbaa"
    assert bad(parser.feed(b"7B11D\r7B11D7XX\r7B11D7D7D7\r")) == ["length", "noise", "length"]


def test_hex_frame_checks_the_parity():
    parser = make_parser(ConverterFormat.HEX_FRAME)
    assert [f.credential for f in cards(parser.feed(b"2F623AE\r209A5BBAA\n"))] == [
        FC123_CN4567,
        "34:0209a5bbaa",
    ]
    assert bad(parser.feed(b"2F623AF\r")) == ["parity"]
    assert bad(parser.feed(b"FFFFFFF\r2F623A\r")) == ["length", "length"]


def test_decimal_s4a_example_and_keys():
    parser = make_parser(ConverterFormat.DECIMAL)
    frames = parser.feed(bytes.fromhex("30 30 30 30 31 32 33 34 37 38 0D 0A"))
    (frame,) = cards(frames)
    assert frame.credential == credential(26, add_parity(0x1E256, 24)[0])
    assert frame.format == "wiegand26"
    # 4-bit keys 1, 2, '*' (0x0A, not after CR), '#'; then 8-bit keys 4, 2, '#'.
    keys = parser.feed(bytes([0x01, 0x02, 0x0A, 0x0B, 0xB4, 0xD2, 0x4B]))
    assert [k.keys for k in keys if isinstance(k, KeyPress)] == list("12*#42#")
    assert bad(parser.feed(b"\x99")) == ["noise"]
    (same,) = cards(parser.feed(b"0008065495\r\n"))  # 0x7B11D7: FC 123 / CN 4567
    assert same.credential == FC123_CN4567


def test_decimal_frame_length_can_be_fixed():
    (guessed,) = cards(make_parser(ConverterFormat.DECIMAL).feed(b"0008065495\r\n"))
    fixed = make_parser(ConverterFormat.DECIMAL, frame_bits=34)
    (frame,) = cards(fixed.feed(b"0008065495\r\n"))
    assert (guessed.bits, frame.bits) == (26, 34)
    assert frame.credential == credential(34, add_parity(8065495, 32)[0])
    assert bad(make_parser(ConverterFormat.DECIMAL, frame_bits=26).feed(b"4294967295\r\n")) == [
        "length"
    ]
    assert bad(make_parser(ConverterFormat.DECIMAL).feed(b"9999999999\r\n12345\r\n")) == [
        "length",
        "length",
    ]
    with pytest.raises(ValueError, match="frame_bits"):
        DecimalParser(30)


def test_em4100_rdm6300_example():
    parser = make_parser(ConverterFormat.EM4100)
    frame_bytes = bytes.fromhex("02 36 32 45 33 30 38 36 43 45 44 30 38 03")
    (frame,) = parser.feed(frame_bytes)
    assert isinstance(frame, CardRead)
    assert (frame.bits, frame.format, frame.credential) == (40, "em4100", "40:62e3086ced")
    corrupted = bytearray(frame_bytes)
    corrupted[12] = ord("9")  # checksum 09 instead of 08
    assert bad(parser.feed(bytes(corrupted))) == ["checksum"]
    assert bad(parser.feed(b"\x0262E3086CED08X")) == ["length"]
    assert bad(parser.feed(b"\x0262E3086CEDZZ\x03")) == ["noise"]
    assert bad(parser.feed(b"\x0262E3\x02" + frame_bytes[1:])) == ["truncated"]
    assert bad(parser.feed(b"junk\r\n")) == ["noise"]


@pytest.mark.parametrize("fmt", list(ConverterFormat))
def test_frames_split_anywhere_still_parse(fmt):
    stream = {
        ConverterFormat.HEX_DATA: b"7B11D7\r",
        ConverterFormat.HEX_FRAME: b"2F623AE\r",
        ConverterFormat.DECIMAL: b"0008065495\r\n",
        ConverterFormat.EM4100: bytes.fromhex("02 36 32 45 33 30 38 36 43 45 44 30 38 03"),
    }[fmt]
    parser = make_parser(fmt)
    frames = []
    for byte in stream * 3:
        frames += parser.feed(bytes([byte]))
    assert len(cards(frames)) == 3
    assert bad(frames) == []
    assert not parser.pending


@pytest.mark.parametrize("fmt", list(ConverterFormat))
def test_a_cut_off_frame_is_reported_truncated_on_reset(fmt):
    parser = make_parser(fmt)
    start = b"\x0262E3" if fmt is ConverterFormat.EM4100 else b"7B1"
    assert parser.feed(start) == []
    assert parser.pending
    truncated = parser.reset()
    assert truncated is not None
    assert truncated.kind == "truncated"
    assert parser.reset() is None


@pytest.mark.parametrize("fmt", list(ConverterFormat))
@pytest.mark.parametrize("seed", range(5))
def test_random_noise_never_breaks_a_parser_and_it_resynchronises(fmt, seed):
    rng = random.Random(seed)
    parser = make_parser(fmt)
    good = {
        ConverterFormat.HEX_DATA: b"\r7B11D7\r",
        ConverterFormat.HEX_FRAME: b"\r2F623AE\r",
        ConverterFormat.DECIMAL: b"\r\n0008065495\r\n",
        ConverterFormat.EM4100: bytes.fromhex("02 36 32 45 33 30 38 36 43 45 44 30 38 03"),
    }[fmt]
    for _ in range(50):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        for frame in parser.feed(noise):
            assert isinstance(frame, CardRead | KeyPress | BadFrame)
            if isinstance(frame, BadFrame):
                assert frame.reason  # never the bytes themselves
        parser.reset()
        (card,) = cards(parser.feed(good))
        assert card.credential in {FC123_CN4567, "40:62e3086ced"}


def test_bad_frame_reasons_never_quote_the_card():
    parser = make_parser(ConverterFormat.HEX_FRAME)
    (frame,) = parser.feed(b"2F623AF\r")
    assert isinstance(frame, BadFrame)
    assert "2f623a" not in frame.reason.lower()
    assert "2F623AE" not in repr(cards(make_parser(ConverterFormat.HEX_FRAME).feed(b"2F623AE\r")))
