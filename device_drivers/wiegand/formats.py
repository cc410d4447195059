r"""Output formats of serial Wiegand converters (reference §2.6): bytes in, card reads out.

There is no standard, so each format is a small parser with the same interface
(:class:`FrameParser`).  Every parser resynchronises by itself: a bad line or frame becomes one
:class:`BadFrame` and parsing goes on with the next one.  Reasons in a :class:`BadFrame` never
quote the bytes, since they may hold a card number.

``hex_data``
    ASCII hex of the Wiegand *data* bits and CR (Priority 1 Design WIE232-A, ``XXYYZZ<cr>``):
    6 digits are the 24 data bits of a 26-bit frame (FC 123 / CN 4567 is ``7B11D7\r``),
    8 digits the 32 data bits of a 34-bit frame.  The frame is rebuilt with computed parity.
``hex_frame``
    ASCII hex of the whole frame, parity included, and CR: 7 digits for 26 bits
    (``2F623AE\r``), 9 for 34 bits.  Parity is checked (§2.2, §2.3); a bad one is dropped.
``decimal``
    10-digit zero-padded decimal of the data bits, then CR LF (S4A converters:
    ``0000123478\r\n`` is data ``0x1E256``).  Keypad keys arrive as single bytes between
    lines: 4-bit keys as ``0x00``-``0x0B``, 8-bit keys as a byte whose high nibble is the
    complement of the low one (§2.4).  Whether the data are 24 or 32 bits cannot be told from a
    decimal number, so ``frame_bits`` says it, or values up to 24 bits count as 26-bit frames.
``em4100``
    125 kHz readers of the RDM6300 kind: ``02``, 10 ASCII hex (version and 32-bit tag), 2 ASCII
    hex of the XOR checksum, ``03``.  The credential is the 40-bit tag, ``40:62e3086ced``.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from typing import ClassVar

from device_drivers.wiegand.bits import add_parity, check_parity, credential, format_name

__all__ = [
    "BadFrame",
    "CardRead",
    "ConverterFormat",
    "DecimalParser",
    "Em4100Parser",
    "Frame",
    "FrameParser",
    "HexDataParser",
    "HexFrameParser",
    "KeyPress",
    "make_parser",
]

_CR = 0x0D
_LF = 0x0A
_STX = 0x02
_ETX = 0x03
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_KEY_NAMES = "0123456789*#"


class ConverterFormat(enum.StrEnum):
    """Output formats of serial Wiegand converters."""

    HEX_DATA = "hex_data"
    HEX_FRAME = "hex_frame"
    DECIMAL = "decimal"
    EM4100 = "em4100"


@dataclasses.dataclass(frozen=True, slots=True)
class CardRead:
    """A card read: the frame's length and bits, and its format name."""

    bits: int
    value: int = dataclasses.field(repr=False)
    format: str

    @property
    def credential(self) -> str:
        """The raw credential string (``<bits>:<hex>``, see :mod:`device_drivers.wiegand.bits`)."""
        return credential(self.bits, self.value)


@dataclasses.dataclass(frozen=True, slots=True)
class KeyPress:
    """Keys pressed on the reader's keypad (``0``-``9``, ``*``, ``#``)."""

    keys: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class BadFrame:
    """Something that is not a valid frame.

    Attributes:
        kind: ``noise``, ``length``, ``parity``, ``checksum`` or ``truncated``.
        reason: what was wrong, without the bytes themselves.
    """

    kind: str
    reason: str


Frame = CardRead | KeyPress | BadFrame


class FrameParser(abc.ABC):
    """Turns a converter's byte stream into frames."""

    @property
    @abc.abstractmethod
    def pending(self) -> bool:
        """Whether part of a frame is buffered."""

    @abc.abstractmethod
    def feed(self, data: bytes) -> list[Frame]:
        """Parse ``data``; returns the frames (good or bad) it completes."""

    @abc.abstractmethod
    def reset(self) -> BadFrame | None:
        """Drop a partial frame (the line went quiet mid-frame); returns it as truncated."""


class _LineParser(FrameParser):
    """Frames that are lines of printable ASCII ended by CR and/or LF."""

    max_line: ClassVar[int] = 24
    description: ClassVar[str]

    def __init__(self) -> None:
        self._line = bytearray()
        self._garbage = False

    @property
    def pending(self) -> bool:
        """Whether part of a line is buffered."""
        return bool(self._line) or self._garbage

    def feed(self, data: bytes) -> list[Frame]:
        """Parse ``data`` line by line."""
        frames: list[Frame] = []
        for byte in data:
            if self._terminator(byte, frames):
                continue
            if not self.pending and self._between_lines(byte, frames):
                continue
            if not 0x20 <= byte < 0x7F or len(self._line) >= self.max_line:  # noqa: PLR2004
                self._garbage = True
            else:
                self._line.append(byte)
        return frames

    def reset(self) -> BadFrame | None:
        """Drop a partial line."""
        if not self.pending:
            return None
        self._line.clear()
        self._garbage = False
        return BadFrame("truncated", f"{self.description}: line cut off")

    def _terminator(self, byte: int, frames: list[Frame]) -> bool:
        if byte not in {_CR, _LF}:
            return False
        if self.pending:
            frames.append(self._finish())
        return True

    def _between_lines(self, byte: int, frames: list[Frame]) -> bool:
        """Handle a byte outside any line; ``True`` if it was consumed."""
        del byte, frames
        return False

    def _finish(self) -> Frame:
        line, garbage = bytes(self._line).strip(), self._garbage
        self._line.clear()
        self._garbage = False
        if garbage:
            return BadFrame("noise", f"{self.description}: unprintable bytes or overlong line")
        return self.parse_line(line)

    @abc.abstractmethod
    def parse_line(self, line: bytes) -> Frame:
        """A complete line, without its terminator."""


def _hex_value(line: bytes, description: str) -> int | BadFrame:
    if not line or not set(line) <= _HEX_DIGITS:
        return BadFrame("noise", f"{description}: not hex digits")
    return int(line, 16)


class HexDataParser(_LineParser):
    """``hex_data``: 6 or 8 hex digits of data bits; the parity is rebuilt."""

    description = "hex_data"

    def parse_line(self, line: bytes) -> Frame:
        """6 hex digits make a 26-bit frame, 8 a 34-bit one."""
        value = _hex_value(line, self.description)
        if isinstance(value, BadFrame):
            return value
        width = {6: 24, 8: 32}.get(len(line))
        if width is None:
            return BadFrame("length", f"hex_data: {len(line)} digits, expected 6 or 8")
        frame, bits = add_parity(value, width)
        return CardRead(bits, frame, format_name(bits))


class HexFrameParser(_LineParser):
    """``hex_frame``: 7 or 9 hex digits of the whole frame; the parity is checked."""

    description = "hex_frame"

    def parse_line(self, line: bytes) -> Frame:
        """7 hex digits hold a 26-bit frame, 9 a 34-bit one."""
        value = _hex_value(line, self.description)
        if isinstance(value, BadFrame):
            return value
        bits = {7: 26, 9: 34}.get(len(line))
        if bits is None or value >> bits:
            return BadFrame("length", f"hex_frame: {len(line)} digits do not hold 26 or 34 bits")
        if not check_parity(value, bits):
            return BadFrame("parity", f"hex_frame: bad parity in a {bits}-bit frame")
        return CardRead(bits, value, format_name(bits))


def _key_of_byte(byte: int) -> str | None:
    """The key of a 4-bit (``0x00``-``0x0B``) or 8-bit (complemented nibble) key byte."""
    if byte < len(_KEY_NAMES):
        return _KEY_NAMES[byte]
    low = byte & 0x0F
    if (byte >> 4) == (~low & 0x0F) and low < len(_KEY_NAMES):
        return _KEY_NAMES[low]
    return None


class DecimalParser(_LineParser):
    """``decimal``: 10 decimal digits and CR LF; keys as single bytes between lines.

    Args:
        frame_bits: 26 or 34 when the converter's readers are known; ``None`` guesses from the
            value (up to 24 bits of data is a 26-bit frame).
    """

    description = "decimal"

    def __init__(self, frame_bits: int | None = None) -> None:
        super().__init__()
        if frame_bits not in {None, 26, 34}:
            msg = "frame_bits must be 26, 34 or None"
            raise ValueError(msg)
        self._frame_bits = frame_bits
        self._after_cr = False

    def _terminator(self, byte: int, frames: list[Frame]) -> bool:
        after_cr, self._after_cr = self._after_cr, byte == _CR
        if byte == _LF and not self.pending and not after_cr:
            return False  # a lone LF between lines is the 4-bit key "*"
        return super()._terminator(byte, frames)

    def _between_lines(self, byte: int, frames: list[Frame]) -> bool:
        if 0x30 <= byte <= 0x39:  # noqa: PLR2004 - a digit starts a line
            return False
        key = _key_of_byte(byte)
        if key is None:
            frames.append(BadFrame("noise", "decimal: stray byte between lines"))
        else:
            frames.append(KeyPress(key))
        return True

    def parse_line(self, line: bytes) -> Frame:
        """Ten digits of data bits."""
        if len(line) != 10 or not line.isdigit():  # noqa: PLR2004
            return BadFrame("length", "decimal: expected 10 digits")
        value = int(line)
        width = {26: 24, 34: 32}.get(self._frame_bits or 0)
        if width is None:
            width = 24 if value < 1 << 24 else 32
        if value >> width:
            return BadFrame("length", f"decimal: value exceeds {width} data bits")
        frame, bits = add_parity(value, width)
        return CardRead(bits, frame, format_name(bits))


class Em4100Parser(FrameParser):
    """``em4100``: STX, 10 hex digits of tag, 2 of XOR checksum, ETX."""

    _BODY = 13  # 10 tag digits, 2 checksum digits, ETX

    def __init__(self) -> None:
        self._frame: bytearray | None = None
        self._stray = 0

    @property
    def pending(self) -> bool:
        """Whether a frame has started."""
        return self._frame is not None

    def feed(self, data: bytes) -> list[Frame]:
        """Hunt STX, collect the body, check it."""
        frames: list[Frame] = []
        for byte in data:
            if byte == _STX:
                self._flush_stray(frames)
                if self._frame is not None:
                    frames.append(BadFrame("truncated", "em4100: new frame inside a frame"))
                self._frame = bytearray()
            elif self._frame is None:
                if byte not in {_CR, _LF}:
                    self._stray += 1
            else:
                self._frame.append(byte)
                if len(self._frame) == self._BODY:
                    frames.append(self._check(bytes(self._frame)))
                    self._frame = None
        self._flush_stray(frames)
        return frames

    def reset(self) -> BadFrame | None:
        """Drop a partial frame."""
        if self._frame is None:
            return None
        self._frame = None
        return BadFrame("truncated", "em4100: frame cut off")

    def _flush_stray(self, frames: list[Frame]) -> None:
        if self._stray:
            frames.append(BadFrame("noise", f"em4100: {self._stray} stray bytes"))
            self._stray = 0

    @staticmethod
    def _check(body: bytes) -> Frame:
        if body[-1] != _ETX:
            return BadFrame("length", "em4100: no ETX after 12 digits")
        digits = body[:-1]
        if not set(digits) <= _HEX_DIGITS:
            return BadFrame("noise", "em4100: not hex digits")
        raw = bytes.fromhex(digits.decode())
        checksum = 0
        for byte in raw[:5]:
            checksum ^= byte
        if checksum != raw[5]:
            return BadFrame("checksum", "em4100: bad checksum")
        return CardRead(40, int.from_bytes(raw[:5], "big"), "em4100")


def make_parser(fmt: ConverterFormat, *, frame_bits: int | None = None) -> FrameParser:
    """A parser for ``fmt``; ``frame_bits`` applies to ``decimal`` only."""
    match fmt:
        case ConverterFormat.HEX_DATA:
            return HexDataParser()
        case ConverterFormat.HEX_FRAME:
            return HexFrameParser()
        case ConverterFormat.DECIMAL:
            return DecimalParser(frame_bits)
        case ConverterFormat.EM4100:
            return Em4100Parser()
