"""What every compiled reading rule kind shares: pairs of (rule, device slot) and their state.

A :class:`ReadingGroup` holds all the rules of one kind, whatever their metric.  Each device
slot in a rule's scope owns one *pair*; a slot's pairs are contiguous and in rule order, so a
batch of readings turns into the pairs it meets with a few array operations
(:meth:`ReadingGroup.gather`) and the rules a reading cannot meet cost nothing.  One group per
kind rather than per (kind, metric) keeps the number of array operations per batch small.
State lives in one array per field, indexed by pair.  Evaluation is vectorised; only the few
pairs whose alert changes leave numpy, as :data:`Action` callbacks that the engine runs in the
order the sequential engine would have.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from rules._reference import AlertState, Subject, Transition, _transition
from rules.models import RuleBase

Key = tuple[str, str]
"""(rule id, device): the key of a state in the engine's tables and snapshots."""
Order = tuple[int, int, int]
"""(reading's row in the segment, position of the value name in the batch, rule's position in
the rules of that value name)."""
Action = tuple[Order, Callable[[list[Transition]], None]]
"""Something to do for one (reading, rule) outside numpy, and where it goes in the output."""
Correlate = Callable[[Any, Subject, int, list[int], list[Transition]], None]

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Bools = NDArray[np.bool_]
_MINUTE_MS = 60_000
# Below this many subjects, matching scopes in Python is cheaper than building label arrays.
_VECTOR_SCOPE_MIN = 64


@dataclasses.dataclass(frozen=True, slots=True)
class View:
    """A segment of a batch (each slot at most once) as the groups read it.

    Attributes:
        slots: each reading's slot.
        ts: each reading's timestamp.
        values: (reading, column) -> value, NaN where the reading has none.
        column: value name -> its column in ``values``.
        position: column -> the value name's position in the batch's fields (for ordering).
    """

    slots: I64
    ts: I64
    values: F64
    column: Mapping[str, int]
    position: I64


@dataclasses.dataclass(slots=True)
class Batch:
    """One segment of a batch being evaluated: what the groups report back to the engine.

    Attributes:
        subjects: slot -> subject, for rendering.
        correlate: the engine's correlation step, for the reading side of correlations.
        actions: transitions and state changes to apply in sequential order.
        evaluations: (reading, rule) checks made.
        late: readings ignored because they were older than the state they would update.
    """

    subjects: Sequence[Subject]
    correlate: Correlate
    actions: list[Action] = dataclasses.field(default_factory=list)
    evaluations: int = 0
    late: int = 0

    def emit(
        self,
        order: Order,
        rule: RuleBase,
        slot: int,
        state: AlertState,
        ts_ms: int,
        since_ms: int,
        fields: Mapping[str, object],
        value: float,
    ) -> None:
        """Queue the rendering of one transition, at ``order`` in the output."""
        subject = self.subjects[slot]

        def render(out: list[Transition]) -> None:
            out.append(_transition(rule, subject, state, ts_ms, since_ms, fields, value=value))

        self.actions.append((order, render))


class ReadingGroup(abc.ABC):
    """The rules of one kind, compiled: parameters and state in arrays.

    An *entry* is a rule on one metric: one per rule, except for a correlation rule with
    conditions on several metrics, which has one per metric (its state is not kept here).

    Subclasses declare their state fields in :attr:`columns` (name -> dtype and the value of a
    pair without state), compile rule parameters in :meth:`compile` and evaluate in
    :meth:`evaluate`.  ``table`` names the :class:`rules._reference.EngineState` table their
    states are exchanged through (snapshots, a change of subjects); None for a kind with no
    state of its own per pair.
    """

    columns: ClassVar[Mapping[str, tuple[type[np.generic], object]]] = {}
    table: ClassVar[str | None] = None

    def __init__(self, members: Sequence[tuple[str, int, Any]]) -> None:
        """Compile ``members``: (metric, position in the metric's rule list, rule)."""
        self.metrics: tuple[str, ...] = tuple(sorted({metric for metric, _, _ in members}))
        self.members = tuple(members)
        self.entry_metric = np.array(
            [self.metrics.index(metric) for metric, _, _ in members], dtype=np.int64
        )
        self.entry_metric_name = tuple(metric for metric, _, _ in members)
        self.rules: tuple[Any, ...] = tuple(rule for _, _, rule in members)
        self.position = np.array([position for _, position, _ in members], dtype=np.int64)
        self.index: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            self.index.setdefault(rule.id, i)
        self.size = 0
        self.pair_rule = np.zeros(0, dtype=np.int64)
        self.pair_slot = np.zeros(0, dtype=np.int64)
        self.slot_start = np.zeros(0, dtype=np.int64)
        self.slot_count = np.zeros(0, dtype=np.int64)
        self.col: dict[str, NDArray[Any]] = {
            name: np.zeros(0, dtype=dtype) for name, (dtype, _) in self.columns.items()
        }
        self.compile()

    def compile(self) -> None:  # noqa: B027 - optional hook
        """Turn rule parameters into arrays indexed by the rule's position in the group."""

    @abc.abstractmethod
    def evaluate(self, batch: Batch, view: View) -> None:
        """Evaluate a segment's readings against the group's rules."""

    def gather(self, batch: Batch, view: View) -> tuple[I64, I64, I64, I64, F64, I64] | None:
        """The (reading, entry) pairs of a segment that have a finite value of their metric.

        Returns:
            None if there are none; else for each pair: the pair, the reading's row in the
            segment, the entry, the timestamp, the value and the position of its value name
            in the batch (for ordering).
        """
        columns = np.array([view.column.get(m, -1) for m in self.metrics], dtype=np.int64)
        if (columns < 0).all():
            return None
        expanded = self.expand(view.slots)
        if expanded is None:
            return None
        pairs, reading = expanded
        entry = self.pair_rule[pairs]
        column = columns[self.entry_metric[entry]]
        value = view.values[reading, column]
        ok = np.isfinite(value) & (column >= 0)
        if not ok.all():
            pairs, reading, entry, column, value = (
                pairs[ok],
                reading[ok],
                entry[ok],
                column[ok],
                value[ok],
            )
            if not pairs.size:
                return None
        batch.evaluations += pairs.size
        return pairs, reading, entry, view.ts[reading], value, view.position[column]

    def export(
        self,
        subjects: Sequence[Subject],  # noqa: ARG002 - a kind without states exports none
        pairs: I64 | None = None,  # noqa: ARG002
    ) -> dict[Key, Any]:
        """The states held (of ``pairs``, or all), as the sequential engine's state objects."""
        return {}

    def live_pairs(self, pairs: I64 | None = None) -> list[int]:
        """The pairs that hold a state, among ``pairs`` or all."""
        live = self.live()
        if pairs is None:
            return np.flatnonzero(live).tolist()
        found: list[int] = pairs[live[pairs]].tolist()
        return found

    def slot_pairs(self, slot: int) -> I64:
        """The pairs of ``slot``."""
        if slot >= self.slot_start.size:
            return np.zeros(0, dtype=np.int64)
        start = int(self.slot_start[slot])
        return np.arange(start, start + int(self.slot_count[slot]))

    def clear(self, pairs: I64) -> None:
        """Forget the states of ``pairs`` (their slot is being scoped anew)."""
        for name, (_, fill) in self.columns.items():
            self.col[name][pairs] = fill

    def load(  # noqa: B027 - a kind without states takes none
        self,
        states: dict[Key, Any],
        slot_of: Mapping[str, int],
        devices: Sequence[str] | None = None,
    ) -> None:
        """Take the states of ``states`` whose (rule, device) has a pair; remove them from it.

        Args:
            states: (rule id, device) -> state, of any kind.
            slot_of: device -> slot.
            devices: look only for the states of these devices (a slot just added).
        """

    # -- snapshots --------------------------------------------------------------------------

    def live(self) -> Bools:
        """Which pairs hold a state."""
        return self.col["has"][: self.size]

    def dump(self) -> tuple[I64, dict[str, NDArray[Any]]]:
        """The pairs that hold a state, and their state columns (for a snapshot)."""
        pairs = np.flatnonzero(self.live())
        return pairs, {name: column[pairs] for name, column in self.col.items()}

    def check(self, columns: Mapping[str, NDArray[Any]], n: int) -> str | None:
        """Why ``columns`` (``n`` states, from a snapshot) cannot be taken, or None."""
        expected = {name: np.dtype(dtype) for name, (dtype, _) in self.columns.items()}
        if set(columns) != set(expected):
            return f"has columns {sorted(columns)}, expected {sorted(expected)}"
        for name, column in columns.items():
            if column.dtype != expected[name] or column.shape != (n,):
                return f"column {name!r} is not {n} of {expected[name]}"
        return None

    def put(self, pairs: I64, columns: Mapping[str, NDArray[Any]]) -> None:
        """Set the states of ``pairs`` from snapshot columns (see :meth:`dump`)."""
        for name in self.columns:
            self.col[name][pairs] = columns[name]

    def detach(
        self, rules: I64, subjects: Sequence[Subject], columns: Mapping[str, NDArray[Any]]
    ) -> dict[Key, Any]:
        """Snapshot states with no pair here, as the sequential engine's state objects."""
        scratch = type(self)(self.members)
        n = int(rules.size)
        scratch.pair_rule = rules.astype(np.int64)
        scratch.pair_slot = np.arange(n, dtype=np.int64)
        scratch.resize(n)
        scratch.size = n
        scratch.put(np.arange(n), columns)
        return scratch.export(subjects)

    def locate(self, rules: I64, slots: I64) -> I64:
        """The pair of each (rule, slot), or -1 (no such slot, or out of the rule's scope)."""
        out = np.full(rules.size, -1, dtype=np.int64)
        at = np.flatnonzero((slots >= 0) & (slots < self.slot_start.size))
        start = self.slot_start[slots[at]]
        count = self.slot_count[slots[at]]
        for k in range(int(count.max(initial=0))):
            candidate = start + k
            inside = np.minimum(candidate, self.size - 1)
            hit = (k < count) & (self.pair_rule[inside] == rules[at])
            out[at[hit]] = candidate[hit]
        return out

    # -- pairs ------------------------------------------------------------------------------

    def scope_slots(self, slots: I64, masks: Bools) -> None:
        """Give ``slots`` the pairs of the rules whose scope includes them.

        Args:
            slots: new slots, or slots whose subject changed (their old pairs are abandoned;
                their states must have been exported first).
            masks: (rules of the group, len(slots)): whether each rule's scope includes each.
        """
        if not slots.size:
            return
        needed = int(slots.max()) + 1
        if needed > self.slot_start.size:
            grow = needed - self.slot_start.size
            self.slot_start = np.concatenate([self.slot_start, np.zeros(grow, np.int64)])
            self.slot_count = np.concatenate([self.slot_count, np.zeros(grow, np.int64)])
        # Row-major over (slot, rule): each slot's pairs together, in rule order.
        which, rule = np.nonzero(masks.T)
        counts = masks.sum(axis=0, dtype=np.int64)
        self.slot_start[slots] = self.size + np.cumsum(counts) - counts
        self.slot_count[slots] = counts
        added = int(which.size)
        self.pair_rule = np.concatenate([self.pair_rule, rule.astype(np.int64)])
        self.pair_slot = np.concatenate([self.pair_slot, slots[which]])
        self.resize(self.size + added)
        self.size += added

    def resize(self, size: int) -> None:
        """Make every state array ``size`` long, new pairs without state."""
        for name, (dtype, fill) in self.columns.items():
            old = self.col[name]
            if old.size < size:
                extra = np.full(size - old.size, fill, dtype=dtype)
                self.col[name] = np.concatenate([old, extra])

    def expand(self, slots: I64) -> tuple[I64, I64] | None:
        """The pairs readings at ``slots`` meet, and for each the index of its reading."""
        if slots.size == 1:  # one reading (Engine.on_reading): plain ints are cheaper
            slot = int(slots[0])
            n = int(self.slot_count[slot])
            if not n:
                return None
            begin = int(self.slot_start[slot])
            return np.arange(begin, begin + n), np.zeros(n, dtype=np.int64)
        count = self.slot_count[slots]
        total = int(count.sum())
        if not total:
            return None
        start = self.slot_start[slots]
        reading = np.repeat(np.arange(count.size), count)
        first = np.cumsum(count) - count
        pairs = np.repeat(start - first, count) + np.arange(total)
        return pairs, reading

    def find(self, rule: int, slot: int) -> int | None:
        """The pair of (``rule``, ``slot``), or None when the rule's scope leaves the slot out."""
        if slot >= self.slot_start.size:
            return None
        start = int(self.slot_start[slot])
        found = np.flatnonzero(self.pair_rule[start : start + int(self.slot_count[slot])] == rule)
        return start + int(found[0]) if found.size else None

    def take(
        self,
        states: dict[Key, Any],
        slot_of: Mapping[str, int],
        devices: Sequence[str] | None = None,
    ) -> list[tuple[int, Any]]:
        """Remove from ``states`` those of this group's rules with a pair: (pair, state)."""
        taken: list[tuple[int, Any]] = []
        if devices is None:
            keys = [key for key in states if key[0] in self.index]
        else:
            keys = [(r.id, d) for d in devices for r in self.rules if (r.id, d) in states]
        for key in keys:
            slot = slot_of.get(key[1])
            pair = None if slot is None else self.find(self.index[key[0]], slot)
            if pair is not None:
                taken.append((pair, states.pop(key)))
        return taken

    def rule_array(self, read: Callable[[Any], float]) -> F64:
        """One float per rule of the group."""
        return np.array([read(rule) for rule in self.rules], dtype=np.float64)


def scope_masks(rules: Sequence[RuleBase], subjects: Sequence[Subject]) -> dict[str, Bools]:
    """Rule id -> whether its scope includes each of ``subjects``, as ``Scope.matches`` says."""
    if len(subjects) < _VECTOR_SCOPE_MIN:
        return {
            rule.id: np.array(
                [rule.scope.matches(s.device, s.labels) for s in subjects], dtype=np.bool_
            )
            for rule in rules
        }
    n = len(subjects)
    codes: dict[str, tuple[dict[str | None, int], I64]] = {}
    cache: dict[object, Bools] = {}

    def label_codes(label: str) -> tuple[dict[str | None, int], I64]:
        found = codes.get(label)
        if found is None:
            table: dict[str | None, int] = {}
            column = np.fromiter(
                (table.setdefault(s.labels.get(label), len(table)) for s in subjects),
                dtype=np.int64,
                count=n,
            )
            found = codes[label] = (table, column)
        return found

    def check(label: str, names: frozenset[str]) -> Bools:
        mask = cache.get((label, names))
        if mask is None:
            table, column = label_codes(label)
            wanted = np.array([table[name] for name in names if name in table], dtype=np.int64)
            mask = cache[label, names] = np.isin(column, wanted)
        return mask

    masks: dict[str, Bools] = {}
    for rule in rules:
        devices, checks = rule.scope.compiled
        mask = np.ones(n, dtype=np.bool_)
        if devices is not None:
            mask &= np.fromiter((s.device in devices for s in subjects), dtype=np.bool_, count=n)
        for label, names in checks:
            mask &= check(label, names)
        masks[rule.id] = mask
    return masks
