"""A small PromQL scanner for tests: which series names and label names an expression uses.

Enough for the expressions the boards generate (selectors, aggregations with ``by``, binary
operators with ``on``/``unless``, functions, range and subquery brackets, Grafana variables); it
raises on anything it does not understand rather than guessing.
"""

from __future__ import annotations

import dataclasses
import re

KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool"})
SET_OPERATORS = frozenset({"and", "or", "unless"})
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile"}
)
FUNCTIONS = frozenset(
    {
        "count_over_time",
        "max_over_time",
        "min_over_time",
        "sum_over_time",
        "avg_over_time",
        "last_over_time",
        "increase",
        "rate",
        "timestamp",
        "time",
        "vector",
        "label_values",
    }
)
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<variable>\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)
  | (?P<range>\[[^\]]*\])
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=])
  | (?P<punct>[(){},])
    """,
    re.VERBOSE,
)


@dataclasses.dataclass
class Selector:
    """One series selector: its name (or name regex) and the labels it matches on."""

    name: str | None
    name_regex: str | None
    labels: list[str]
    values: dict[str, str]


@dataclasses.dataclass
class Scan:
    """What an expression uses."""

    selectors: list[Selector] = dataclasses.field(default_factory=list)
    grouping_labels: set[str] = dataclasses.field(default_factory=set)
    functions: set[str] = dataclasses.field(default_factory=set)


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot scan {expr[pos : pos + 20]!r} in {expr!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "space":
            out.append((kind, m.group()))
    return out


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def _label_list(toks: list[tuple[str, str]], start: int, result: Scan, expr: str) -> int:
    """Read ``( a, b )`` from ``start`` (at the parenthesis); return the index after it."""
    j = start + 1
    while toks[j][1] != ")":
        if toks[j][0] == "ident":
            result.grouping_labels.add(toks[j][1])
        elif toks[j][1] != ",":
            raise ValueError(f"unexpected {toks[j][1]!r} in a label list of {expr!r}")
        j += 1
    return j + 1


def _selector(toks: list[tuple[str, str]], start: int, expr: str) -> tuple[Selector, int]:
    """Read ``name``, ``name{...}`` or ``{...}`` from ``start``; return it and the next index."""
    kind, text = toks[start]
    selector = Selector(text if kind == "ident" else None, None, [], {})
    j = start + 1 if kind == "ident" else start
    if j >= len(toks) or toks[j][1] != "{":
        return selector, j
    j += 1
    while toks[j][1] != "}":
        label, op, value = toks[j], toks[j + 1], toks[j + 2]
        if label[0] != "ident" or op[0] != "op" or value[0] != "string":
            raise ValueError(f"bad matcher at {label[1]!r} in {expr!r}")
        if label[1] == "__name__":
            selector.name_regex = _unquote(value[1])
        else:
            selector.labels.append(label[1])
            selector.values[label[1]] = _unquote(value[1])
        j += 3
        if toks[j][1] == ",":
            j += 1
    return selector, j + 1


def scan(expr: str) -> Scan:
    """The selectors, grouping labels and functions of ``expr``."""
    result = Scan()
    toks = tokens(expr)
    depth = 0
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        followed_by_paren = i + 1 < len(toks) and toks[i + 1][1] == "("
        if kind == "ident" and text in LABEL_LIST_KEYWORDS and followed_by_paren:
            i = _label_list(toks, i + 1, result, expr)
        elif kind == "ident" and (followed_by_paren or text in AGGREGATIONS):
            if text not in FUNCTIONS | AGGREGATIONS:
                raise ValueError(f"unknown function {text!r} in {expr!r}")
            result.functions.add(text)
            i += 1
        elif kind == "ident" and text in KEYWORDS | SET_OPERATORS:
            i += 1
        elif kind == "ident" or text == "{":
            selector, i = _selector(toks, i, expr)
            result.selectors.append(selector)
        else:
            depth += {"(": 1, ")": -1}.get(text, 0)
            i += 1
    if depth != 0:
        raise ValueError(f"unbalanced parentheses in {expr!r}")
    return result


def scan_label_values(query: str) -> tuple[Scan, str]:
    """A ``label_values(selector, label)`` variable query: the selector's scan and the label."""
    m = re.fullmatch(
        r"label_values\((?P<selector>.+),\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\)", query
    )
    if m is None:
        raise ValueError(f"not a label_values(selector, label) query: {query!r}")
    return scan(m["selector"]), m["label"]
