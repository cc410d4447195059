"""Errors of the rules package.

RulesError
 └── RuleError   a rule file or a rule that does not load (names file, line, rule and field)

``FieldError`` is internal: model validators raise it so that the loader can report the
exact field of a cross-field check, in the way :mod:`wire` reports ``DecodeError`` through pydantic.
"""

from __future__ import annotations


class RulesError(Exception):
    """Root of every error raised by :mod:`rules`."""


class RuleError(RulesError, ValueError):
    """A rule file, or one rule in it, that does not load.

    Attributes:
        file: the file as given to the loader (``<string>`` for text), or None.
        line: 1-based line in ``file`` of the offending field (or of the rule), or None.
        rule: the rule's id when it has a usable one, else its 0-based index in ``rules:``.
        field: dotted path of the offending field inside the rule (``scope.sites[0]``), or None.
        reason: what is wrong, in words an operator can act on.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        rule: str | int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.rule = rule
        self.field = field
        self.reason = reason
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        what = []
        if isinstance(self.rule, int):
            what.append(f"rules[{self.rule}]")
        elif self.rule is not None:
            what.append(f"rule {self.rule!r}")
        if self.field is not None:
            what.append(f"field {self.field!r}")
        prefix = ", ".join(what)
        return f"{where}{prefix}: {self.reason}" if prefix else f"{where}{self.reason}"


class FieldError(ValueError):
    """A validation problem located at ``field`` (dotted, relative to the model that raised it)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
