"""Load rule files into a :class:`RuleSet`, with errors that name file, line, rule and field.

A rule file is YAML of the form ``rules: [ ... ]``.  The YAML is composed into a node tree first,
so that every problem pydantic finds can be traced back to the line of the offending key.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from rules.errors import FieldError, RuleError
from rules.models import (
    LABEL_KEY_PATTERN,
    METRIC_PATTERN,
    RULE_ID_PATTERN,
    AbsenceRule,
    AnomalyRule,
    AnyRule,
    Condition,
    CorrelationRule,
    CountRule,
    EventMatch,
    EventRule,
    FlatLineRule,
    InactivityRule,
    RateOfChangeRule,
    Rule,
    Scope,
    ThresholdRule,
)
from rules.ruleset import RuleSet
from rules.schedule import TIME_OF_DAY_PATTERN, Schedule

_RULE: TypeAdapter[AnyRule] = TypeAdapter(Rule)
# The rule kinds, read from the union's members: Rule is Annotated[A | B, discriminator].
_KINDS: tuple[str, ...] = tuple(
    model.model_fields["kind"].default for model in get_args(get_args(Rule)[0])
)
_TOP_KEY = "rules"

# Every field name a rule file may use, for "did you mean" hints on unknown fields.
_MODELS: tuple[type[BaseModel], ...] = (
    ThresholdRule,
    EventRule,
    RateOfChangeRule,
    AbsenceRule,
    InactivityRule,
    FlatLineRule,
    CountRule,
    CorrelationRule,
    Condition,
    AnomalyRule,
    Scope,
    EventMatch,
    Schedule,
)
_KNOWN_FIELDS = sorted(
    {info.alias or name for model in _MODELS for name, info in model.model_fields.items()}
)
# Patterns explained in words; pydantic would quote the regular expression.
_PATTERN_WORDS = {
    RULE_ID_PATTERN: "an id of lower-case letters, digits, '_', '.' or '-' "
    "(starting with a letter or digit, at most 64 characters)",
    METRIC_PATTERN: "a value name of lower-case letters, digits and '_' (e.g. temperature)",
    LABEL_KEY_PATTERN: "a label name of lower-case letters, digits and '_'",
    TIME_OF_DAY_PATTERN: "a time of day 'HH:MM' between 00:00 and 23:59",
}
# YAML 1.1 reads 22:00 as the base-60 integer 1320; schedules need the string.
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_STR_TAG = "tag:yaml.org,2002:str"

_Loc = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves ``22:00`` a string instead of a base-60 number."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0] and _SEXAGESIMAL.fullmatch(value):
            return _STR_TAG
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]

    def construct_checked_timestamp(self, node: yaml.ScalarNode) -> Any:
        """A YAML date or time, with an impossible one (2026-13-02) reported at its line."""
        try:
            return self.construct_yaml_timestamp(node)
        except ValueError as exc:
            # PyYAML lets datetime's ValueError escape without a position.
            problem = f"invalid date {node.value!r}: {exc}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_checked_timestamp)


@dataclasses.dataclass(frozen=True, slots=True)
class _Loaded:
    rule: AnyRule
    file: str
    line: int


def parse_rules(text: str, source: str = "<string>") -> RuleSet:
    """Parse the rules in YAML ``text``.

    Args:
        text: a rule file's content (``rules: [ ... ]``).
        source: the name to use for it in error messages.

    Raises:
        RuleError: for invalid YAML, an invalid rule or a duplicate id.
    """
    return _build(_parse(text, source))


def load_rules(paths: Iterable[Path]) -> RuleSet:
    """Load and merge the rule files at ``paths``; rule ids must be unique across all of them.

    Args:
        paths: rule files, e.g. ``sorted(Path("config/rules").glob("*.yaml"))``.

    Raises:
        RuleError: for an unreadable file, invalid YAML, an invalid rule or a duplicate id.
    """
    loaded: list[_Loaded] = []
    for path in paths:
        file = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise RuleError("not UTF-8 text", file=file) from None
        except OSError as exc:
            raise RuleError(f"cannot read: {exc.strerror or exc}", file=file) from None
        loaded.extend(_parse(text, file))
    return _build(loaded)


def _build(loaded: Iterable[_Loaded]) -> RuleSet:
    seen: dict[str, _Loaded] = {}
    for item in loaded:
        first = seen.get(item.rule.id)
        if first is not None:
            raise RuleError(
                f"duplicate rule id, first defined at {first.file}:{first.line}",
                file=item.file,
                line=item.line,
                rule=item.rule.id,
                field="id",
            )
        seen[item.rule.id] = item
    sources = {rule_id: f"{item.file}:{item.line}" for rule_id, item in seen.items()}
    return RuleSet((item.rule for item in seen.values()), sources)


def _parse(text: str, file: str) -> list[_Loaded]:
    loaded: list[_Loaded] = []
    for index, (item, item_node) in enumerate(_rule_items(text, file)):
        label = _rule_label(item, index)
        try:
            rule = _RULE.validate_python(item)
        except ValidationError as exc:
            raise _translate(exc, file, item_node, label) from None
        loaded.append(_Loaded(rule, file, _locate(item_node, ("id",))))
    return loaded


def _compose(text: str, file: str) -> tuple[yaml.Node, Any]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise RuleError(f"empty file; expected '{_TOP_KEY}:' with a list of rules", file=file)
        # Before constructing: PyYAML silently keeps the last of two equal keys.
        _check_duplicate_keys(node, file)
        return node, loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise RuleError(f"not valid YAML: {exc.problem or exc}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise RuleError(f"not valid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()


def _rule_items(text: str, file: str) -> list[tuple[Any, yaml.Node]]:
    """The raw rules of a file, each with its node (for line numbers)."""
    node, data = _compose(text, file)
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
        reason = f"expected a mapping with '{_TOP_KEY}:' at the top"
        raise RuleError(reason, file=file, line=_line(node))
    for key_node, _ in node.value:
        if key_node.value != _TOP_KEY:
            reason = f"unknown top-level key {key_node.value!r}; expected only '{_TOP_KEY}'"
            raise RuleError(reason, file=file, line=_line(key_node))
    rules_node = _child(node, _TOP_KEY)
    if rules_node is None:
        raise RuleError(f"missing '{_TOP_KEY}:'", file=file, line=_line(node))
    items = data[_TOP_KEY]
    if items is None:
        return []  # "rules:" with nothing under it: a file with every rule commented out
    if not isinstance(items, list) or not isinstance(rules_node, yaml.SequenceNode):
        raise RuleError(f"'{_TOP_KEY}' must be a list", file=file, line=_line(rules_node))
    return list(zip(items, rules_node.value, strict=True))


def _rule_label(item: object, index: int) -> str | int:
    rule_id = item.get("id") if isinstance(item, dict) else None
    return rule_id if isinstance(rule_id, str) and rule_id else index


def _translate(exc: ValidationError, file: str, node: yaml.Node, rule: str | int) -> RuleError:
    err = exc.errors(include_url=False)[0]
    kind, ctx = err["type"], err.get("ctx") or {}
    loc: _Loc = tuple(err["loc"])
    if kind in {"union_tag_invalid", "union_tag_not_found"}:
        expected = ", ".join(_KINDS)
        found = ctx.get("tag")
        reason = f"unknown rule kind {found!r}" if found is not None else "missing"
        return RuleError(
            f"{reason}; expected one of: {expected}",
            file=file,
            line=_locate(node, ("kind",)),
            rule=rule,
            field="kind",
        )
    if loc and loc[0] in _KINDS:
        # pydantic prefixes the discriminator's tag; the file has no such level.
        loc = loc[1:]
    cause = ctx.get("error")
    if isinstance(cause, FieldError):
        loc = (*loc, *cause.field.split("."))
        reason = cause.reason
    elif isinstance(cause, ValueError):
        reason = str(cause)
    elif kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _KNOWN_FIELDS, n=1) if loc else []
        reason = f"unknown field; did you mean {close[0]!r}?" if close else "unknown field"
    elif kind == "missing":
        reason = "required field is missing"
    elif kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERN_WORDS:
        reason = f"expected {_PATTERN_WORDS[ctx['pattern']]}, got {err['input']!r}"
    elif kind == "model_attributes_type" and not loc:
        reason = "a rule must be a mapping of fields"
    else:
        reason = err["msg"]
    return RuleError(
        reason, file=file, line=_locate(node, loc), rule=rule, field=_dotted(loc) or None
    )


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _child(node: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return value_node  # type: ignore[no-any-return]
    return None


def _locate(node: yaml.Node, path: Sequence[str | int]) -> int:
    """The line of the deepest node on ``path``: the key's line for a mapping entry."""
    line = _line(node)
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                    line, node = _line(key_node), value_node
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = _line(node)
        else:
            break
    return line


def _check_duplicate_keys(root: yaml.Node, file: str) -> None:
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, _Loc]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue  # an alias: already checked, and it may point back at an ancestor
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, (*path, i)) for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None and key != "<<":
                    if key in keys:
                        raise _duplicate_key(root, (*path, key), _line(key_node), file)
                    keys.add(key)
                stack.append((value_node, (*path, key if key is not None else "?")))


def _duplicate_key(root: yaml.Node, path: _Loc, line: int, file: str) -> RuleError:
    reason = "duplicate key; YAML would silently keep only the last one"
    if len(path) > 2 and path[0] == _TOP_KEY and isinstance(path[1], int):  # noqa: PLR2004
        rules_node = _child(root, _TOP_KEY)
        assert isinstance(rules_node, yaml.SequenceNode)  # noqa: S101 - the path came from it
        item_node = rules_node.value[path[1]]
        id_node = _child(item_node, "id")
        rule: str | int = path[1]
        if isinstance(id_node, yaml.ScalarNode) and id_node.value:
            rule = id_node.value
        return RuleError(reason, file=file, line=line, rule=rule, field=_dotted(path[2:]))
    return RuleError(reason, file=file, line=line, field=_dotted(path))
