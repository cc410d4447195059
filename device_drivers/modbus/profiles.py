"""Register maps as data: what each value is, where it lives, and how its words decode.

A value is a :class:`ValueSpec` (function code, address, encoding, scale, offset, name, unit).
Built-in :data:`PROFILES` follow ``reference/device-protocols.md`` §3.4-3.5; a device with
another map gets its specs from the config instead.  :func:`plan_reads` merges the values of
one device into as few requests as the map allows, and :func:`decode_block` turns the words of
one answer back into named numbers.  Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import struct
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

__all__ = [
    "MAX_BITS_PER_READ",
    "MAX_REGISTERS_PER_READ",
    "PROFILES",
    "Encoding",
    "FunctionCode",
    "Profile",
    "ReadBlock",
    "ValueSpec",
    "WordOrder",
    "decode_block",
    "decode_words",
    "plan_reads",
]

# Protocol limits of one read (Modbus Application Protocol V1.1b3 §6.1-6.4).
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000
_WORD_MAX = 0xFFFF

WordOrder = Literal["big", "little"]


class FunctionCode(enum.IntEnum):
    """The read function codes sensors use."""

    READ_COILS = 1
    READ_DISCRETE_INPUTS = 2
    READ_HOLDING_REGISTERS = 3
    READ_INPUT_REGISTERS = 4

    @property
    def reads_bits(self) -> bool:
        """Whether the function reads single bits (coils, discrete inputs)."""
        return self in {FunctionCode.READ_COILS, FunctionCode.READ_DISCRETE_INPUTS}

    @property
    def max_count(self) -> int:
        """Most items one request of this function may read."""
        return MAX_BITS_PER_READ if self.reads_bits else MAX_REGISTERS_PER_READ


class Encoding(enum.StrEnum):
    """How the raw bits or 16-bit words of one value are read as a number."""

    BIT = "bit"  # one coil or discrete input: 0 or 1
    INT16 = "int16"  # two's complement: 0xFF83 is -125
    UINT16 = "uint16"
    INT32 = "int32"  # two words, order given by the value's word_order
    UINT32 = "uint32"
    FLOAT32 = "float32"  # IEEE 754 single precision in two words
    # KinCony-style offset sign: raw >= 10000 means -(raw - 10000); 10125 is -125.
    SIGN10000 = "sign10000"

    @property
    def width(self) -> int:
        """Number of bits (for BIT) or 16-bit registers the value takes."""
        return 2 if self in _TWO_WORD else 1

    @property
    def is_bit(self) -> bool:
        """Whether this encodes a single coil or discrete input."""
        return self is Encoding.BIT


_TWO_WORD = frozenset({Encoding.INT32, Encoding.UINT32, Encoding.FLOAT32})


def decode_words(encoding: Encoding, words: Sequence[int], word_order: WordOrder = "big") -> float:
    """The number that ``words`` (16-bit registers, or 0/1 for a bit) encode.

    Args:
        encoding: how to read them.
        words: exactly ``encoding.width`` items.
        word_order: for two-word encodings, ``big`` when the high word comes first (the usual
            Modbus order), ``little`` when the low word comes first ("word swapped").

    Raises:
        ValueError: if the number of words is wrong, a word is out of range, or a float32 is
            not finite (NaN and infinities are not readings).
    """
    if len(words) != encoding.width:
        msg = f"{encoding} takes {encoding.width} word(s), got {len(words)}"
        raise ValueError(msg)
    if any(not 0 <= word <= _WORD_MAX for word in words):
        msg = f"register words must be 0..65535, got {list(words)}"
        raise ValueError(msg)
    if encoding is Encoding.BIT:
        return 1.0 if words[0] else 0.0
    if encoding.width == 1:
        return float(_decode_one(encoding, words[0]))
    high, low = (words[0], words[1]) if word_order == "big" else (words[1], words[0])
    raw = high << 16 | low
    if encoding is Encoding.UINT32:
        return float(raw)
    if encoding is Encoding.INT32:
        return float(raw - (1 << 32) if raw & 0x8000_0000 else raw)
    value: float = struct.unpack(">f", raw.to_bytes(4, "big"))[0]
    if not math.isfinite(value):
        msg = f"float32 {raw:#010x} is not a finite number"
        raise ValueError(msg)
    return value


def _decode_one(encoding: Encoding, word: int) -> int:
    if encoding is Encoding.INT16:
        return word - 0x10000 if word & 0x8000 else word
    if encoding is Encoding.SIGN10000:
        return -(word - 10_000) if word >= 10_000 else word  # noqa: PLR2004 - the encoding's pivot
    return word


@dataclasses.dataclass(frozen=True, slots=True)
class ValueSpec:
    """One value of a register map: ``reading = decoded * scale + offset``.

    Attributes:
        name: value name in readings (``^[a-z][a-z0-9_]{0,31}$``), e.g. ``temperature``.
        function: function code that reads it.
        address: first register or bit, as on the wire (0-based protocol address).
        encoding: how its words decode; ``bit`` for coils and discrete inputs.
        scale: factor applied to the decoded number, e.g. 0.1 for tenths of a degree.
        offset: added after scaling (calibration).
        unit: unit of the reading after scaling, e.g. ``°C``; empty for flags and counts.
        word_order: order of the two words of 32-bit encodings.
        invert: bits only: report 1 when the input reads 0 (fail-safe contacts where 1 = OK).
        event: kind of an ``{active}`` event emitted when the value turns non-zero or back to
            zero (``alarm.water_leak``, ``alarm.smoke``); ``None`` for plain telemetry.
    """

    name: str
    function: FunctionCode
    address: int
    encoding: Encoding = Encoding.UINT16
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    word_order: WordOrder = "big"
    invert: bool = False
    event: str | None = None

    def __post_init__(self) -> None:
        if self.encoding.is_bit != self.function.reads_bits:
            kind = "bit" if self.function.reads_bits else "register"
            msg = f"{self.name}: function {int(self.function)} reads {kind}s, not {self.encoding}"
            raise ValueError(msg)
        if self.invert and not self.encoding.is_bit:
            msg = f"{self.name}: invert applies to bits only"
            raise ValueError(msg)
        if not 0 <= self.address <= _WORD_MAX - (self.encoding.width - 1):
            msg = f"{self.name}: address {self.address} is outside 0..65535"
            raise ValueError(msg)
        if self.scale == 0 or not math.isfinite(self.scale) or not math.isfinite(self.offset):
            msg = f"{self.name}: scale must be finite and non-zero, offset finite"
            raise ValueError(msg)

    @property
    def end(self) -> int:
        """First address after this value."""
        return self.address + self.encoding.width

    def decode(self, words: Sequence[int]) -> float:
        """The reading this value's raw words give, scaled, offset and (for bits) inverted."""
        number = decode_words(self.encoding, words, self.word_order)
        if self.invert:
            number = 1.0 - number
        # Round away binary noise of decimal scales (305 * 0.1 = 30.500000000000004).
        return round(number * self.scale + self.offset, 9)

    def with_calibration(self, *, scale: float | None, offset: float | None) -> ValueSpec:
        """A copy with ``scale`` and/or ``offset`` replaced (``None`` keeps the current one)."""
        return dataclasses.replace(
            self,
            scale=self.scale if scale is None else scale,
            offset=self.offset if offset is None else offset,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ReadBlock:
    """One request: ``count`` registers or bits from ``address`` with ``function``."""

    function: FunctionCode
    address: int
    count: int
    values: tuple[ValueSpec, ...]


def plan_reads(specs: Iterable[ValueSpec]) -> tuple[ReadBlock, ...]:
    """Group values into as few requests as possible.

    Values of one function code that are adjacent or overlap share a request, up to the
    protocol's limit per request.  Gaps are never read across: many devices answer "illegal
    data address" for registers they do not have.

    Raises:
        ValueError: if two values of the same function code overlap.
    """
    blocks: list[ReadBlock] = []
    ordered = sorted(specs, key=lambda s: (int(s.function), s.address))
    current: list[ValueSpec] = []
    for spec in ordered:
        if current:
            last = current[-1]
            first = current[0]
            if spec.function == last.function and spec.address < last.end:
                msg = f"{spec.name} overlaps {last.name} (function {int(spec.function)})"
                raise ValueError(msg)
            fits = spec.end - first.address <= spec.function.max_count
            if spec.function == last.function and spec.address == last.end and fits:
                current.append(spec)
                continue
            blocks.append(_block(current))
        current = [spec]
    if current:
        blocks.append(_block(current))
    return tuple(blocks)


def _block(specs: list[ValueSpec]) -> ReadBlock:
    first = specs[0]
    return ReadBlock(first.function, first.address, specs[-1].end - first.address, tuple(specs))


def decode_block(block: ReadBlock, words: Sequence[int]) -> dict[str, float]:
    """Named readings from the answer to ``block`` (registers, or bits as 0/1).

    Raises:
        ValueError: if the answer is shorter than the block, or a value does not decode.
    """
    if len(words) < block.count:
        msg = (
            f"short answer: {len(words)} of {block.count} item(s) "
            f"from function {int(block.function)} at {block.address:#06x}"
        )
        raise ValueError(msg)
    values: dict[str, float] = {}
    for spec in block.values:
        start = spec.address - block.address
        values[spec.name] = spec.decode(words[start : start + spec.encoding.width])
    return values


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    """A built-in register map of a device family."""

    name: str
    description: str
    values: tuple[ValueSpec, ...]
    line: str = "9600 8N1"  # factory serial settings, as a hint for installers

    def __post_init__(self) -> None:
        plan_reads(self.values)  # rejects overlaps early


_IR = FunctionCode.READ_INPUT_REGISTERS
_HR = FunctionCode.READ_HOLDING_REGISTERS
_DI = FunctionCode.READ_DISCRETE_INPUTS


def _t(
    function: FunctionCode,
    address: int,
    scale: float = 0.1,
    encoding: Encoding = Encoding.INT16,
) -> ValueSpec:
    return ValueSpec("temperature", function, address, encoding, scale=scale, unit="°C")


def _rh(function: FunctionCode, address: int, scale: float = 0.1) -> ValueSpec:
    return ValueSpec("humidity", function, address, Encoding.UINT16, scale=scale, unit="%RH")


def _alarm(name: str, address: int, *, invert: bool) -> ValueSpec:
    return ValueSpec(name, _DI, address, Encoding.BIT, invert=invert, event=f"alarm.{name}")


_BUILTIN = (
    Profile(
        "xy_md02",
        "XY-MD02 / XY-MD01 (SHT20, SHT40): input registers 0x0001 temperature (int16 x0.1 °C), "
        "0x0002 humidity (uint16 x0.1 %RH), read together",
        (_t(_IR, 0x0001), _rh(_IR, 0x0002)),
        line="9600 8N1 (some batches only 8E1)",
    ),
    Profile(
        "xy_md02_fine",
        'the "MD02" variant with hundredths: input registers 0x0001 temperature '
        "(int16 x0.01 °C), 0x0002 humidity (uint16 x0.01 %RH)",
        (_t(_IR, 0x0001, 0.01), _rh(_IR, 0x0002, 0.01)),
    ),
    Profile(
        "sht30_rh_first",
        "SHT20/SHT30 RS-485 transmitter housings (Renke style): holding registers 0x0000 "
        "humidity (uint16 x0.1 %RH), 0x0001 temperature (int16 x0.1 °C)",
        (_rh(_HR, 0x0000), _t(_HR, 0x0001)),
        line="4800 8N1 on many; 9600 8N1 on others",
    ),
    Profile(
        "sht30_t_first",
        "transmitters that put temperature first (e.g. L-com SRTH100): holding registers "
        "0x0000 temperature (int16 x0.1 °C), 0x0001 humidity (uint16 x0.1 %RH)",
        (_t(_HR, 0x0000), _rh(_HR, 0x0001)),
    ),
    Profile(
        "kincony_sht30",
        "KinCony SHT30 DIN sensor: input registers 0x0000 temperature (x0.1 °C, raw >= 10000 "
        "is negative: 10125 = -12.5 °C), 0x0001 humidity (uint16 x0.1 %RH)",
        (_t(_IR, 0x0000, encoding=Encoding.SIGN10000), _rh(_IR, 0x0001)),
    ),
    Profile(
        "di_leak_smoke",
        "RS-485 digital-input module with dry contacts that close on alarm: discrete input 0 "
        "water leak probe, input 1 smoke detector relay (1 = alarm); alarm events on change",
        (_alarm("water_leak", 0, invert=False), _alarm("smoke", 1, invert=False)),
    ),
    Profile(
        "di_leak_smoke_failsafe",
        "the same module with fail-safe (normally closed) loops where 1 = OK: discrete input "
        "0 water leak, input 1 smoke; a cut wire reads as alarm",
        (_alarm("water_leak", 0, invert=True), _alarm("smoke", 1, invert=True)),
    ),
)

PROFILES: Mapping[str, Profile] = types.MappingProxyType({p.name: p for p in _BUILTIN})
