"""Wiegand frames: parity, the 26- and 34-bit layouts, and the raw credential string.

Credential convention, shared by every door driver so that the same card gives the same
pseudonym at every reader::

    credential = f"{bits}:{hex}"

where ``hex`` is the lowercase hex of the FULL raw card bit string as read (parity bits
included), left-padded with zero bits to whole bytes.  A 26-bit H10301 frame is 26 bits, padded
to 4 bytes, so 8 hex digits: FC 123 / CN 4567 is ``0x2F623AE`` and gives ``26:02f623ae``; the
34-bit FC 1234 / CN 56789 (``0x209A5BBAA``) gives ``34:0209a5bbaa``.  An OSDP ``osdp_RAW`` read
of the same card (``bd 88 eb 80``, 26 bits, MSB first and left-justified) gives the same string
through :func:`from_msb_first`, and a converter that outputs only the data bits gives it through
:func:`add_parity`, which rebuilds the frame with computed parity.

Both layouts (reference §2.2, §2.3) are ``PE | data | PO``: PE makes the first half of the frame
(PE and the first half of the data) even, PO makes the second half odd.
"""

from __future__ import annotations

__all__ = [
    "add_parity",
    "check_parity",
    "credential",
    "data_bits",
    "encode_h10301",
    "encode_h10306",
    "format_name",
    "from_msb_first",
]

# Frame lengths whose parity this module knows (P/data/P with halves of equal size).
PARITY_FORMATS = frozenset({26, 34})
_BYTE = 0xFF
_WORD = 0xFFFF
_MIN_DATA_WIDTH = 2


def _parity(value: int) -> int:
    return value.bit_count() & 1


def credential(bits: int, value: int) -> str:
    """The raw credential string of a ``bits``-long frame whose bits are ``value``.

    Raises:
        ValueError: if ``bits`` is not positive or ``value`` does not fit in ``bits`` bits.
    """
    if bits < 1 or value < 0 or value >> bits:
        msg = f"{value:#x} is not a {bits}-bit frame"
        raise ValueError(msg)
    width = (bits + 7) // 8 * 2
    return f"{bits}:{value:0{width}x}"


def from_msb_first(data: bytes, bits: int) -> int:
    """The frame in ``data`` (MSB first, left-justified, as OSDP ``osdp_RAW`` carries it).

    Raises:
        ValueError: if ``data`` is shorter than ``bits`` need.
    """
    size = (bits + 7) // 8
    if bits < 1 or len(data) < size:
        msg = f"{len(data)} bytes cannot hold {bits} bits"
        raise ValueError(msg)
    return int.from_bytes(data[:size], "big") >> (size * 8 - bits)


def check_parity(value: int, bits: int) -> bool:
    """Whether a 26- or 34-bit frame has valid leading even and trailing odd parity.

    Raises:
        ValueError: for a length without a known parity layout.
    """
    if bits not in PARITY_FORMATS:
        msg = f"no parity layout for {bits}-bit frames"
        raise ValueError(msg)
    half = bits // 2
    return _parity(value >> half) == 0 and _parity(value & ((1 << half) - 1)) == 1


def add_parity(data: int, data_width: int) -> tuple[int, int]:
    """Wrap ``data_width`` data bits in P/data/P parity; returns ``(frame, bits)``.

    24 data bits give an H10301 26-bit frame, 32 give a 34-bit frame.

    Raises:
        ValueError: if ``data`` does not fit, or ``data_width`` is odd or too small.
    """
    if data_width < _MIN_DATA_WIDTH or data_width % 2 or data < 0 or data >> data_width:
        msg = f"cannot frame {data:#x} as {data_width} data bits"
        raise ValueError(msg)
    half = data_width // 2
    even = _parity(data >> half)
    odd = 1 - _parity(data & ((1 << half) - 1))
    return even << (data_width + 1) | data << 1 | odd, data_width + 2


def data_bits(value: int, bits: int) -> int:
    """The data bits of a P/data/P frame (the frame without its two parity bits)."""
    return (value >> 1) & ((1 << (bits - 2)) - 1)


def encode_h10301(facility: int, number: int) -> int:
    """The 26-bit H10301 frame of facility code (8 bits) and card number (16 bits).

    Raises:
        ValueError: if a field is out of range.
    """
    if not (0 <= facility <= _BYTE and 0 <= number <= _WORD):
        msg = "H10301 has an 8-bit facility code and a 16-bit card number"
        raise ValueError(msg)
    return add_parity(facility << 16 | number, 24)[0]


def encode_h10306(facility: int, number: int) -> int:
    """The 34-bit frame of facility code (16 bits) and card number (16 bits).

    Raises:
        ValueError: if a field is out of range.
    """
    if not (0 <= facility <= _WORD and 0 <= number <= _WORD):
        msg = "34-bit frames have a 16-bit facility code and a 16-bit card number"
        raise ValueError(msg)
    return add_parity(facility << 16 | number, 32)[0]


def format_name(bits: int) -> str:
    """The ``format`` of a Wiegand frame in ``door.access`` events, e.g. ``wiegand26``."""
    return f"wiegand{bits}"
