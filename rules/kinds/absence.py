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

from collections.abc import Sequence

import numpy as np

from rules._reference import _SilenceState
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
