"""The reading side of absence rules: when each device was last seen, kept in arrays.

An absence state (rule, device) learns of every reading of its device.  In the steady case (the
device's absence alerts armed, none firing, no silence ran out since its last reading) a
reading only moves "last seen" forward, the same for every absence rule of the device: that is
one array per slot here, written for the whole batch at once.  The engine's silence states take
it up (:meth:`LastSeen.sync`) before anything reads them: an event of the device, a timer in
``tick``, a snapshot.  Any other reading of the device goes through the engine's full step and
the slot's summary is taken again (:meth:`LastSeen.summarise`).
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rules._reference import Subject, _SilenceState
from rules.kinds._base import I64

_NEVER = np.iinfo(np.int64).max


class LastSeen:
    """Per device slot: when its absence states were last touched, and if a reading is steady.

    Attributes:
        slow: the next reading of the slot needs the engine's full step.
        last: the time all the slot's absence states were last touched.
        deadline: the earliest time one of its silences runs out; a later reading is not steady.
        watches: how many absence states the slot has (evaluations per steady reading).
        dirty: ``last`` moved since the states were last told.
    """

    def __init__(self, slots: int = 0) -> None:
        self.slow = np.ones(slots, dtype=np.bool_)
        self.last = np.zeros(slots, dtype=np.int64)
        self.deadline = np.zeros(slots, dtype=np.int64)
        self.min_for = np.zeros(slots, dtype=np.int64)
        self.watches = np.zeros(slots, dtype=np.int64)
        self.dirty = np.zeros(slots, dtype=np.bool_)
        self.states: list[tuple[_SilenceState, ...]] = [() for _ in range(slots)]

    def resize(self, slots: int) -> None:
        """Make room for ``slots`` slots; new ones need the full step first."""
        extra = slots - self.slow.size
        if extra <= 0:
            return
        self.slow = np.concatenate([self.slow, np.ones(extra, dtype=np.bool_)])
        for name in ("last", "deadline", "min_for", "watches"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(extra, np.int64)]))
        self.dirty = np.concatenate([self.dirty, np.zeros(extra, dtype=np.bool_)])
        self.states.extend(() for _ in range(extra))

    def touch(self, slots: I64, ts: I64) -> tuple[np.ndarray[tuple[int], np.dtype[np.bool_]], int]:
        """Record the steady readings of a segment (each slot at most once).

        Returns:
            Which readings need the full step, and the evaluations the steady ones made.
        """
        slow = self.slow[slots] | (ts > self.deadline[slots])
        if slow.all():
            return slow, 0
        # Older than what the states already know: no news of life, nothing to do.
        fresh = ~slow & (ts >= self.last[slots])
        at, when = slots[fresh], ts[fresh]
        self.last[at] = when
        self.deadline[at] = when + self.min_for[at]
        self.dirty[at] = True
        return slow, int(self.watches[at].sum())

    def sync(self, slot: int) -> None:
        """Tell the slot's absence states when it was last seen."""
        if not self.dirty[slot]:
            return
        last = int(self.last[slot])
        for state in self.states[slot]:
            state.last_ts_ms = max(state.last_ts_ms, last)
        self.dirty[slot] = False

    def sync_all(self) -> None:
        """Tell every slot's absence states (before a snapshot, or a change of subjects)."""
        for slot in np.flatnonzero(self.dirty).tolist():
            self.sync(slot)

    def mark(self, slot: int) -> None:
        """The slot's states may have changed outside: its next reading takes the full step."""
        self.sync(slot)
        self.slow[slot] = True

    def summarise(self, slot: int, states: Sequence[_SilenceState]) -> None:
        """After a full step: whether the slot's next readings can be steady."""
        self.states[slot] = tuple(states)
        self.dirty[slot] = False
        if not states:
            self.slow[slot] = False
            self.deadline[slot] = _NEVER
            self.watches[slot] = 0
            return
        lasts = {state.last_ts_ms for state in states}
        if len(lasts) > 1 or any(s.firing or s.timer_ms is None for s in states):
            self.slow[slot] = True
            return
        last = lasts.pop()
        min_for = min(state.for_ms for state in states)
        self.slow[slot] = False
        self.last[slot] = last
        self.min_for[slot] = min_for
        self.deadline[slot] = last + min_for
        self.watches[slot] = len(states)


# The fields of a silence state written as columns (``subject`` is the slot's, ``timer_ms``
# None is ``timed`` false).
SILENCE_COLUMNS: dict[str, np.dtype[Any]] = {
    "rule": np.dtype(np.int64),
    "device": np.dtype(np.int64),
    "for_ms": np.dtype(np.int64),
    "last_ts_ms": np.dtype(np.int64),
    "firing": np.dtype(np.bool_),
    "fired_ms": np.dtype(np.int64),
    "timer_ms": np.dtype(np.int64),
    "timed": np.dtype(np.bool_),
}


def dump_silences(
    silences: Mapping[tuple[str, str], _SilenceState],
    watchers: Mapping[str, int],
    slot_of: Mapping[str, int],
    subjects: Sequence[Subject],
) -> tuple[dict[tuple[str, str], _SilenceState], dict[str, NDArray[Any]]]:
    """Split silence states into columns (a device's own, with its slot's subject) and the rest.

    Args:
        silences: (rule id, subject key) -> state.
        watchers: absence rule id -> its index in the columns' ``rule``.
        slot_of: device -> slot (the columns' ``device``).
        subjects: slot -> subject.
    """
    rest: dict[tuple[str, str], _SilenceState] = {}
    rows: list[tuple[int, int, int, int, bool, int, int, bool]] = []
    for key, state in silences.items():
        rule = watchers.get(key[0])
        slot = slot_of.get(key[1])
        subject = None if slot is None else subjects[slot]
        if (
            rule is None
            or subject is None
            or not (state.subject is subject or state.subject == subject)
        ):
            rest[key] = state
            continue
        timer = state.timer_ms
        rows.append(
            (
                rule,
                slot_of[key[1]],
                state.for_ms,
                state.last_ts_ms,
                state.firing,
                state.fired_ms,
                -1 if timer is None else timer,
                timer is not None,
            )
        )
    columns = {
        name: np.array([row[i] for row in rows], dtype=dtype)
        for i, (name, dtype) in enumerate(SILENCE_COLUMNS.items())
    }
    return rest, columns


def check_silences(columns: Mapping[str, NDArray[Any]], rules: int, devices: int) -> str | None:
    """Why silence columns from a snapshot cannot be taken, or None."""
    if set(columns) != set(SILENCE_COLUMNS):
        return f"has columns {sorted(columns)}, expected {sorted(SILENCE_COLUMNS)}"
    n = columns["rule"].size
    for name, dtype in SILENCE_COLUMNS.items():
        if columns[name].dtype != dtype or columns[name].shape != (n,):
            return f"column {name!r} is not {n} of {dtype}"
    if n and not (columns["rule"].min() >= 0 and columns["rule"].max() < rules):
        return "a state names a rule the silences do not list"
    if n and not (columns["device"].min() >= 0 and columns["device"].max() < devices):
        return "a state names a device the snapshot does not list"
    return None


def load_silences(
    columns: Mapping[str, NDArray[Any]],
    rules: Sequence[str],
    kept: Container[str],
    subjects: Sequence[Subject],
) -> tuple[dict[tuple[str, str], _SilenceState], list[str]]:
    """The silence states of checked columns whose rule is ``kept``.

    Args:
        columns: as :func:`dump_silences` wrote them.
        rules: the columns' ``rule`` -> rule id.
        kept: the rules whose states can be restored.
        subjects: the columns' ``device`` -> subject.

    Returns:
        The states, and the ids of the rules whose states were dropped.
    """
    out: dict[tuple[str, str], _SilenceState] = {}
    dropped: list[str] = []
    lists = [columns[name].tolist() for name in SILENCE_COLUMNS]
    for rule, device, for_ms, last, firing, fired, timer, timed in zip(*lists, strict=True):
        rule_id = rules[rule]
        if rule_id not in kept:
            dropped.append(rule_id)
            continue
        subject = subjects[device]
        out[rule_id, subject.device] = _SilenceState(
            subject, for_ms, last, firing, fired, timer if timed else None
        )
    return out, dropped
