"""Snapshots of an engine's evaluation state, so that a restart of the hub does not reset it.

:meth:`Engine.snapshot <rules.Engine.snapshot>` writes and :meth:`Engine.restore
<rules.Engine.restore>` reads one JSON document (UTF-8 bytes)::

    {"format": "anju.rules.engine-state", "version": 1,
     "fields": {"thresholds": ["state", "since_ms", ...], ...},
     "rules": {"<rule id>": "<sha256 of the rule's definition>", ...},
     "subjects": [["<device>", {"<label>": "<value>", ...}], ...],
     "states": {"thresholds": [["<rule id>", "<subject key>", <field values>...], ...], ...}}

Each state is one row of its table, its fields in the order of ``fields`` (the engine's own
dataclass fields), with a subject stored once in ``subjects`` and referred to by index.  A state
is restored only if its rule still exists with the same fingerprint; a removed or changed rule
starts fresh.  JSON rather than pickle: the document is read by checking every value, so a
damaged or foreign file can at worst be refused, never run code.  A change of any state's fields
must bump :data:`SNAPSHOT_VERSION`; ``fields`` catches a forgotten bump.

Version 2 (what :class:`rules.Engine` writes) keeps the states that live in arrays as arrays:
the line ``ANJU-RULES-STATE`` and a newline, the header's length (8 bytes, little-endian), the
header (the JSON document above with ``"version": 2`` and four more keys), then raw array
buffers::

    {..., "devices": [["<device>", {"<label>": "<value>", ...}], ...],
     "buffers": [["<dtype>", [<shape>...], <offset>], ...],
     "groups": [{"table": "thresholds", "rules": ["<rule id>", ...],
                 "rule": <buffer>, "device": <buffer>, "columns": {"<name>": <buffer>, ...}}]}

Each group is the states of one kind, one entry per (rule, device) in every buffer: ``rule``
indexes the group's ``rules``, ``device`` indexes ``devices``.  ``"silences": {"rules": [...],
"columns": {...}}`` holds the absence states of devices in ``devices`` the same way; the other
silences (inactivity, by place) stay JSON rows.  Buffers are read
with a fixed set of plain dtypes, never pickled objects, so version 2 cannot run code either.
Version 1 documents are still read.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from rules._reference import (
    AlertState,
    EngineState,
    Subject,
    _AnomalyState,
    _CorrelationState,
    _CountState,
    _EventState,
    _FlatState,
    _RateState,
    _SilenceState,
    _ThresholdState,
)
from rules.errors import RulesError
from rules.models import (
    AbsenceRule,
    AnomalyRule,
    AnyRule,
    CorrelationRule,
    CountRule,
    EventRule,
    FlatLineRule,
    InactivityRule,
    RateOfChangeRule,
    RuleBase,
    ThresholdRule,
)
from rules.ruleset import RuleSet

SNAPSHOT_FORMAT = "anju.rules.engine-state"
SNAPSHOT_VERSION = 2
JSON_VERSION = 1  # a snapshot that is one JSON document, as SequentialEngine writes it
ARRAYS_MAGIC = b"ANJU-RULES-STATE\n"
_LENGTH_BYTES = 8
# The dtypes a version 2 buffer may have: plain numbers and booleans, nothing with objects.
_DTYPES = frozenset({"<i8", "<f8", "|b1", "|i1"})

# Table name (an EngineState field) -> the state class of its rows and the rule kinds they fit.
_TABLES: dict[str, tuple[type[Any], tuple[type[RuleBase], ...]]] = {
    "thresholds": (_ThresholdState, (ThresholdRule,)),
    "events": (_EventState, (EventRule,)),
    "rates": (_RateState, (RateOfChangeRule,)),
    "flats": (_FlatState, (FlatLineRule,)),
    "anomalies": (_AnomalyState, (AnomalyRule,)),
    "counts": (_CountState, (CountRule,)),
    "silences": (_SilenceState, (AbsenceRule, InactivityRule)),
    "correlations": (_CorrelationState, (CorrelationRule,)),
}
_NON_FINITE = frozenset({"inf", "-inf", "nan"})


class SnapshotError(RulesError):
    """A snapshot that cannot be restored: not a snapshot, damaged, or of another version."""


@dataclasses.dataclass(frozen=True, slots=True)
class RestoreReport:
    """What :meth:`Engine.restore <rules.Engine.restore>` did.

    Attributes:
        states: states restored.
        dropped: states dropped because their rule was removed or changed.
        dropped_rules: the ids of those rules, sorted.
    """

    states: int
    dropped: int
    dropped_rules: tuple[str, ...]


def rule_fingerprint(rule: RuleBase) -> str:
    """The sha256 (hex) of a rule's definition: equal for equal rules, in any process."""
    definition = orjson.dumps(
        rule.model_dump(mode="json", by_alias=True), option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(definition).hexdigest()


def _fields(cls: type[Any]) -> list[str]:
    return [field.name for field in dataclasses.fields(cls)]


# -- writing ----------------------------------------------------------------------------------


class _Subjects:
    """Numbers each distinct subject once; many states share one (a device with several rules)."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self._by_object: dict[int, int] = {}
        self._by_identity: dict[tuple[str, int], int] = {}
        self._by_content: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}

    def index(self, subject: Subject) -> int:
        # The hub builds one Subject per device: the object itself usually finds it.  Every
        # subject looked up stays alive in its state while the document is built.
        found = self._by_object.get(id(subject))
        if found is None:
            found = self._by_object[id(subject)] = self._index(subject)
        return found

    def _index(self, subject: Subject) -> int:
        fast = (subject.device, id(subject.labels))
        found = self._by_identity.get(fast)
        if found is None:
            content = (subject.device, tuple(subject.labels.items()))
            found = self._by_content.get(content)
            if found is None:
                found = self._by_content[content] = len(self.rows)
                self.rows.append([subject.device, dict(subject.labels)])
            self._by_identity[fast] = found
        return found


def _number(value: float) -> float | str:
    # JSON has no infinities or NaN; orjson would write null and lose them.
    return value if math.isfinite(value) else repr(value)


def _encoders(cls: type[Any], subjects: _Subjects) -> list[tuple[int, Callable[[Any], Any]]]:
    """(position, encoder) of the fields of ``cls`` that JSON cannot take as they are."""
    by_name: dict[str, Callable[[Any], Any]] = {
        "subject": subjects.index,
        "state": lambda state: state.value,
        "samples": lambda samples: [[ts, _number(v)] for ts, v in samples],
        "times": list,
        "seen": list,
    }
    floats = {"threshold", "reference", "mean", "var"}
    out: list[tuple[int, Callable[[Any], Any]]] = []
    for position, field in enumerate(dataclasses.fields(cls)):
        if field.name in by_name:
            out.append((position, by_name[field.name]))
        elif field.name in floats:
            out.append((position, _number))
    return out


def encode_state(rules: RuleSet, state: EngineState) -> bytes:
    """Serialise ``state``, evaluated under ``rules``, as a snapshot document (version 1)."""
    return orjson.dumps(encode_document(rules, state, rule_fingerprint, JSON_VERSION))


def encode_document(
    rules: RuleSet,
    state: EngineState,
    fingerprint: Callable[[RuleBase], str],
    version: int,
) -> dict[str, Any]:
    """``state`` as a snapshot document, not yet serialised."""
    subjects = _Subjects()
    fingerprints: dict[str, str] = {}
    tables: dict[str, list[list[Any]]] = {}
    for table, (cls, _) in _TABLES.items():
        # Ids and numbers go into the JSON as they are; only the others are converted.
        fetch = operator.attrgetter(*_fields(cls))
        encoders = _encoders(cls, subjects)
        rows: list[list[Any]] = []
        for (rule_id, key), item in getattr(state, table).items():
            if rule_id not in fingerprints:
                rule = rules.get(rule_id)
                fingerprints[rule_id] = "" if rule is None else fingerprint(rule)
            row = [rule_id, key, *fetch(item)]
            for position, encode in encoders:
                row[position + 2] = encode(row[position + 2])
            rows.append(row)
        tables[table] = rows
    return {
        "format": SNAPSHOT_FORMAT,
        "version": version,
        "fields": {table: _fields(cls) for table, (cls, _) in _TABLES.items()},
        "rules": fingerprints,
        "subjects": subjects.rows,
        "states": tables,
    }


def encode_arrays(document: dict[str, Any], buffers: list[NDArray[Any]]) -> bytes:
    """A version 2 snapshot: ``document`` as the header, ``buffers`` after it."""
    specs: list[list[Any]] = []
    chunks: list[bytes | memoryview] = []
    offset = 0
    for buffer in buffers:
        array = np.ascontiguousarray(buffer)
        specs.append([array.dtype.str, list(array.shape), offset])
        chunks.append(array.data.cast("B"))
        offset += array.nbytes
    header = orjson.dumps({**document, "buffers": specs})
    length = len(header).to_bytes(_LENGTH_BYTES, "little")
    return b"".join([ARRAYS_MAGIC, length, header, *chunks])


def decode_arrays(blob: bytes) -> tuple[dict[str, Any], list[NDArray[Any]]]:
    """Split a version 2 snapshot into its header and its buffers (read-only views of ``blob``).

    Raises:
        SnapshotError: the framing, the header or a buffer's description is damaged.
    """
    start = len(ARRAYS_MAGIC) + _LENGTH_BYTES
    length = int.from_bytes(blob[len(ARRAYS_MAGIC) : start], "little")
    if len(blob) < start or start + length > len(blob):
        raise SnapshotError("snapshot is cut short: its header is incomplete")
    try:
        document = _check_header(orjson.loads(blob[start : start + length]), SNAPSHOT_VERSION)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"snapshot header is not JSON ({exc})") from None
    specs = document.get("buffers")
    if not isinstance(specs, list):
        raise SnapshotError("snapshot 'buffers' is not a list")
    base = start + length
    buffers: list[NDArray[Any]] = []
    for index, spec in enumerate(specs):
        where = f"snapshot buffers[{index}]"
        ok = isinstance(spec, list) and len(spec) == 3  # noqa: PLR2004 - [dtype, shape, offset]
        dtype, shape, offset = spec if ok else (None, None, None)
        if (
            dtype not in _DTYPES
            or not isinstance(shape, list)
            or not all(type(n) is int and n >= 0 for n in shape)
            or type(offset) is not int
            or offset < 0
        ):
            raise SnapshotError(f"{where}: expected [dtype, [shape], offset]")
        count = math.prod(shape)
        size = count * np.dtype(dtype).itemsize
        if base + offset + size > len(blob):
            raise SnapshotError(f"{where}: runs past the end of the snapshot")
        array = np.frombuffer(blob, dtype=dtype, count=count, offset=base + offset)
        buffers.append(array.reshape(shape))
    return document, buffers


# -- reading ----------------------------------------------------------------------------------


class _BadValueError(Exception):
    """A value of the wrong type or out of range; the caller adds where it was."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Row:
    rule: AnyRule
    subjects: list[Subject]


def _int(raw: Any, _row: _Row) -> int:
    if type(raw) is not int:
        raise _BadValueError(f"expected an integer, got {raw!r}")
    return raw


def _optional_int(raw: Any, row: _Row) -> int | None:
    return None if raw is None else _int(raw, row)


def _float(raw: Any, _row: _Row) -> float:
    if type(raw) is float or type(raw) is int:
        return float(raw)
    if isinstance(raw, str) and raw in _NON_FINITE:
        return float(raw)
    raise _BadValueError(f"expected a number, got {raw!r}")


def _bool(raw: Any, _row: _Row) -> bool:
    if type(raw) is not bool:
        raise _BadValueError(f"expected true or false, got {raw!r}")
    return raw


def _str(raw: Any, _row: _Row) -> str:
    if not isinstance(raw, str):
        raise _BadValueError(f"expected a string, got {raw!r}")
    return raw


def _alert_state(raw: Any, _row: _Row) -> AlertState:
    # Only pending and firing alerts are held; the other states are transitions.
    if raw not in {AlertState.PENDING.value, AlertState.FIRING.value}:
        raise _BadValueError(f"expected 'pending' or 'firing', got {raw!r}")
    return AlertState(raw)


def _subject(raw: Any, row: _Row) -> Subject:
    if type(raw) is not int or not 0 <= raw < len(row.subjects):
        raise _BadValueError(f"expected a subject's index, got {raw!r}")
    return row.subjects[raw]


def _list(raw: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise _BadValueError(f"expected a list, got {raw!r}")
    return raw


def _samples(raw: Any, row: _Row) -> collections.deque[tuple[int, float]]:
    samples: collections.deque[tuple[int, float]] = collections.deque()
    for pair in _list(raw):
        if not isinstance(pair, list) or len(pair) != 2:  # noqa: PLR2004 - [ts, value]
            raise _BadValueError(f"expected [ts, value], got {pair!r}")
        samples.append((_int(pair[0], row), _float(pair[1], row)))
    if not samples:
        raise _BadValueError("a rate keeps at least one sample")
    return samples


def _times(raw: Any, row: _Row) -> collections.deque[int]:
    # The window keeps the last `count` events; the rule says how many.
    limit = row.rule.count if isinstance(row.rule, CountRule) else 0
    times = [_int(t, row) for t in _list(raw)]
    if len(times) > limit:
        raise _BadValueError(f"{len(times)} event times, more than the rule's count ({limit})")
    return collections.deque(times, maxlen=limit)


def _seen(raw: Any, row: _Row) -> list[int | None]:
    wanted = len(row.rule.conditions) if isinstance(row.rule, CorrelationRule) else 0
    seen = [_optional_int(t, row) for t in _list(raw)]
    if len(seen) != wanted:
        raise _BadValueError(f"{len(seen)} conditions seen; the rule has {wanted}")
    return seen


# How each state field is read back, by field name (equal names have equal meanings).
_DECODERS: dict[str, Callable[[Any, _Row], Any]] = {
    "state": _alert_state,
    "subject": _subject,
    "event_kind": _str,
    "since_ms": _int,
    "last_ts_ms": _int,
    "fired_ms": _int,
    "resolve_ms": _int,
    "for_ms": _int,
    "count": _int,
    "total": _int,
    "n": _int,
    "deadline_ms": _optional_int,
    "timer_ms": _optional_int,
    "threshold": _float,
    "reference": _float,
    "mean": _float,
    "var": _float,
    "firing": _bool,
    "samples": _samples,
    "times": _times,
    "seen": _seen,
}


def _check_header(document: Any, expected: int) -> dict[str, Any]:
    if not isinstance(document, dict) or document.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"not a rules engine snapshot (no 'format: {SNAPSHOT_FORMAT}')")
    version = document.get("version")
    if version != expected:
        raise SnapshotError(
            f"snapshot format version {version!r}; this engine reads versions {JSON_VERSION} "
            f"(JSON) and {SNAPSHOT_VERSION} (arrays)"
        )
    fields = document.get("fields")
    for table, (cls, _) in _TABLES.items():
        stored = fields.get(table) if isinstance(fields, dict) else None
        if stored != _fields(cls):
            raise SnapshotError(
                f"snapshot table {table!r} has fields {stored!r}, this engine {_fields(cls)!r}: "
                "it was written by another version of the engine"
            )
    return document


def _read_subjects(raw: Any) -> list[Subject]:
    if not isinstance(raw, list):
        raise SnapshotError("snapshot 'subjects' is not a list")
    subjects: list[Subject] = []
    for index, item in enumerate(raw):
        ok = isinstance(item, list) and len(item) == 2  # noqa: PLR2004 - [device, labels]
        device, labels = item if ok else (None, None)
        if (
            not isinstance(device, str)
            or not isinstance(labels, dict)
            or not all(isinstance(v, str) for v in labels.values())
        ):
            raise SnapshotError(f"snapshot subjects[{index}]: expected [device, {{label: text}}]")
        subjects.append(Subject(device, labels))
    return subjects


def kept_rules(
    rules: RuleSet, raw: Any, fingerprint: Callable[[RuleBase], str] = rule_fingerprint
) -> dict[str, AnyRule]:
    """The rules whose states can be restored: present, with the fingerprint stored."""
    if not isinstance(raw, dict):
        raise SnapshotError("snapshot 'rules' is not a mapping of rule id to fingerprint")
    kept: dict[str, AnyRule] = {}
    for rule_id, stored in raw.items():
        rule = rules.get(rule_id)
        if rule is not None and stored == fingerprint(rule):
            kept[rule_id] = rule
    return kept


def decode_state(rules: RuleSet, blob: bytes) -> tuple[EngineState, RestoreReport]:
    """Read a snapshot (version 1, one JSON document) for an engine evaluating ``rules``.

    Returns:
        The states of the rules that are unchanged, and a report of what was kept and dropped.

    Raises:
        SnapshotError: ``blob`` is not a snapshot, is damaged, or has another format version.
    """
    if blob.startswith(ARRAYS_MAGIC):
        raise SnapshotError(
            f"snapshot format version {SNAPSHOT_VERSION} (arrays) is read by rules.Engine only"
        )
    try:
        document = _check_header(orjson.loads(blob), JSON_VERSION)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"not a rules engine snapshot: not JSON ({exc})") from None
    return decode_document(rules, document)


def decode_document(
    rules: RuleSet,
    document: dict[str, Any],
    fingerprint: Callable[[RuleBase], str] = rule_fingerprint,
) -> tuple[EngineState, RestoreReport]:
    """The states of a checked snapshot document (see :func:`decode_state`)."""
    subjects = _read_subjects(document.get("subjects"))
    kept = kept_rules(rules, document.get("rules"), fingerprint)
    states = document.get("states")
    if not isinstance(states, dict):
        raise SnapshotError("snapshot 'states' is not a mapping of tables")
    tables: dict[str, dict[tuple[str, str], Any]] = {}
    dropped: list[str] = []
    for table in _TABLES:
        tables[table] = _read_table(table, states.get(table), kept, subjects, dropped)
    report = RestoreReport(
        states=sum(len(t) for t in tables.values()),
        dropped=len(dropped),
        dropped_rules=tuple(sorted(set(dropped))),
    )
    return EngineState(**tables), report


def _read_table(
    table: str,
    rows: Any,
    kept: Mapping[str, AnyRule],
    subjects: list[Subject],
    dropped: list[str],
) -> dict[tuple[str, str], Any]:
    """The states of one table whose rules are ``kept``; the ids of the others go to ``dropped``."""
    if not isinstance(rows, list):
        raise SnapshotError(f"snapshot states.{table} is not a list")
    cls, kinds = _TABLES[table]
    names = _fields(cls)
    decoded: dict[tuple[str, str], Any] = {}
    for index, row in enumerate(rows):
        where = f"snapshot states.{table}[{index}]"
        if (
            not isinstance(row, list)
            or len(row) != 2 + len(names)
            or not isinstance(row[0], str)
            or not isinstance(row[1], str)
        ):
            raise SnapshotError(f"{where}: expected [rule id, key, {', '.join(names)}]")
        rule_id, key = row[0], row[1]
        rule = kept.get(rule_id)
        if rule is None:
            dropped.append(rule_id)
            continue
        if not isinstance(rule, kinds):
            raise SnapshotError(f"{where}: rule {rule_id!r} is a {rule.kind} rule")
        context = _Row(rule, subjects)
        values: dict[str, Any] = {}
        for name, raw in zip(names, row[2:], strict=True):
            try:
                values[name] = _DECODERS[name](raw, context)
            except _BadValueError as exc:
                raise SnapshotError(f"{where}.{name}: {exc}") from None
        decoded[rule_id, key] = cls(**values)
    return decoded
