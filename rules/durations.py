"""Durations in rule files: ``"500ms"``, ``"10s"``, ``"5m"``, ``"1h30m"``, ``"2d"``, or ``0``."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# "ms" precedes "m" so that "500ms" is not read as 500 minutes followed by garbage.
_PART = r"(\d+)(ms|s|m|h|d)"
_DURATION_RE = re.compile(rf"(?:{_PART})+")
_PART_RE = re.compile(_PART)


def parse_duration_ms(value: object) -> int:
    """Parse a duration into milliseconds.

    A bare number other than 0 is refused: whether ``10`` means seconds or minutes is exactly the
    ambiguity that makes an alert fire 60 times too late, so the unit must be written.

    Args:
        value: the raw value from the rule file.

    Returns:
        The duration in milliseconds.

    Raises:
        ValueError: if ``value`` is not a duration.
    """
    if value == 0 and not isinstance(value, bool):
        return 0
    if not isinstance(value, str):
        msg = f"expected a duration with a unit such as '10s', '5m' or '1h30m', got {value!r}"
        raise ValueError(msg)  # noqa: TRY004 - pydantic reports ValueError, not TypeError
    text = value.strip()
    if text == "0":
        return 0
    if not _DURATION_RE.fullmatch(text):
        msg = f"not a duration: {value!r} (use e.g. '500ms', '10s', '5m', '1h30m', '2d')"
        raise ValueError(msg)
    return sum(int(n) * _UNIT_MS[unit] for n, unit in _PART_RE.findall(text))


# A duration field: written with a unit in YAML, held as integer milliseconds.
DurationMs = Annotated[int, BeforeValidator(parse_duration_ms), Field(ge=0)]
