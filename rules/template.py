"""Message templates: ``"Smoke at {place} (grid {grid_name}), device {device}"``.

A template is parsed once, when its rule loads, and checked against the names that rule can
supply; rendering then cannot fail.  Only plain names are allowed: attribute access and indexing
(``{a.b}``, ``{a[0]}``) would let a rule file reach into Python objects, and conversions
(``!r``) would leak Python quoting into messages read by residents and guards.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Collection, Mapping

from rules.errors import FieldError

# Labels the hub supplies for every subject (from its registry); a rule may name any of them.
STANDARD_LABELS: tuple[str, ...] = (
    "site",
    "gateway",
    "device_kind",
    "grid",
    "grid_name",
    "building",
    "floor",
    "unit",
    "place",
)
# What a template renders for a name the subject does not have.
MISSING = "?"

_FORMATTER = string.Formatter()


@dataclasses.dataclass(frozen=True, slots=True)
class _Placeholder:
    name: str
    spec: str


@dataclasses.dataclass(frozen=True, slots=True)
class Template:
    """A parsed template.

    Attributes:
        source: the template as written.
        parts: literal text, each followed by a placeholder or None.
    """

    source: str
    parts: tuple[tuple[str, _Placeholder | None], ...]

    @classmethod
    def parse(cls, text: str, *, field: str = "message") -> Template:
        """Parse ``text``.

        Raises:
            FieldError: at ``field`` for unbalanced braces, positional or dotted names,
                indexing, conversions or nested format specs.
        """
        try:
            raw = list(_FORMATTER.parse(text))
        except ValueError as exc:
            raise FieldError(field, f"not a valid template: {exc}") from None
        parts: list[tuple[str, _Placeholder | None]] = []
        for literal, name, spec, conversion in raw:
            if name is None:
                parts.append((literal, None))
                continue
            where = f"placeholder {{{name}}}"
            if "." in name or "[" in name:
                reason = f"{where}: only plain names are allowed, no '.' or '[' access"
                raise FieldError(field, reason)
            if not name.isidentifier():
                reason = f"{where}: use a name such as {{place}}, not a position or an expression"
                raise FieldError(field, reason)
            if conversion is not None:
                raise FieldError(
                    field, f"{where}: conversions such as !{conversion} are not allowed"
                )
            if spec and "{" in spec:
                raise FieldError(field, f"{where}: nested placeholders in a format spec")
            parts.append((literal, _Placeholder(name, spec or "")))
        return cls(text, tuple(parts))

    @property
    def names(self) -> frozenset[str]:
        """The names the template refers to."""
        return frozenset(p.name for _, p in self.parts if p is not None)

    def check(
        self, allowed: Collection[str], numeric: Collection[str], *, field: str = "message"
    ) -> None:
        """Check that every name is ``allowed`` and every format spec suits its value.

        Args:
            allowed: the names the rule can supply.
            numeric: those of ``allowed`` that are numbers (the rest are strings).
            field: where to report a problem.

        Raises:
            FieldError: naming the first unknown name or unusable format spec.
        """
        for _, placeholder in self.parts:
            if placeholder is None:
                continue
            name = placeholder.name
            if name not in allowed:
                known = ", ".join(sorted(allowed))
                raise FieldError(field, f"unknown placeholder {{{name}}}; known names: {known}")
            if placeholder.spec:
                # Try the spec on a sample of the right type now, so rendering never raises.
                sample: object = 1.5 if name in numeric else "x"
                try:
                    format(sample, placeholder.spec)
                except ValueError as exc:
                    reason = f"placeholder {{{name}:{placeholder.spec}}}: {exc}"
                    raise FieldError(field, reason) from None

    def render(self, values: Mapping[str, object]) -> str:
        """Render with ``values``; a missing or None value renders as ``?``."""
        out: list[str] = []
        for literal, placeholder in self.parts:
            out.append(literal)
            if placeholder is None:
                continue
            value = values.get(placeholder.name)
            if value is None:
                out.append(MISSING)
            elif placeholder.spec:
                out.append(format(value, placeholder.spec))
            elif isinstance(value, float):
                out.append(format_number(value))
            else:
                out.append(str(value))
        return "".join(out)


def format_number(value: float) -> str:
    """Format a reading for people: ``57``, ``57.25``, ``0.004``, never ``57.000000001``."""
    if value.is_integer() and abs(value) < 1e15:  # noqa: PLR2004 - beyond this floats lose units
        return str(int(value))
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    if text in {"0", "-0"}:
        # Two decimals would print a small non-zero reading as 0; keep three significant digits.
        return f"{value:.3g}"
    return text
