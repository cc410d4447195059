"""Flat-line rules on one metric: a value that has not moved by more than ``tolerance``.

The whole state machine is array operations; Python only renders the transitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from rules._reference import AlertState, Subject, _FlatState
from rules.kinds._base import _MINUTE_MS, I64, Batch, Key, ReadingGroup, View
from rules.models import FlatLineRule


class FlatLineGroup(ReadingGroup):
    """The flat-line rules on one metric."""

    columns: ClassVar[Mapping[str, tuple[type[np.generic], object]]] = {
        "has": (np.bool_, False),
        "reference": (np.float64, 0.0),
        "since": (np.int64, 0),
        "last": (np.int64, 0),
        "firing": (np.bool_, False),
        "count": (np.int64, 0),
    }
    table: ClassVar[str | None] = "flats"
    rules: tuple[FlatLineRule, ...]

    def compile(self) -> None:
        """Tolerances and durations as arrays."""
        self.tolerance = self.rule_array(lambda r: r.tolerance)
        self.for_ms = np.array([r.for_ms for r in self.rules], dtype=np.int64)

    def evaluate(self, batch: Batch, view: View) -> None:
        """Move references, count steady readings, fire and resolve."""
        gathered = self.gather(batch, view)
        if gathered is None:
            return
        pairs, reading, rule, t, v, position = gathered
        col = self.col
        has = col["has"][pairs]
        if not has.all():
            new, tn, vn = pairs[~has], t[~has], v[~has]
            col["has"][new] = True
            col["reference"][new] = vn
            col["since"][new] = tn
            col["last"][new] = tn
            col["count"][new] = 1
            pairs, reading, rule, t, v = pairs[has], reading[has], rule[has], t[has], v[has]
            position = position[has]
        late = t < col["last"][pairs]
        if late.any():
            batch.late += int(late.sum())
            keep = ~late
            pairs, reading, rule, t, v = pairs[keep], reading[keep], rule[keep], t[keep], v[keep]
            position = position[keep]
        if not pairs.size:
            return
        col["last"][pairs] = t
        since = col["since"][pairs]
        firing = col["firing"][pairs]
        moved = np.abs(v - col["reference"][pairs]) > self.tolerance[rule]
        # The value moved: the stuck period (if any) ends and a new one may start here.
        at = pairs[moved]
        col["reference"][at] = v[moved]
        col["since"][at] = t[moved]
        col["count"][at] = 1
        col["firing"][at] = False
        still = pairs[~moved]
        col["count"][still] += 1
        fire = ~moved & ~firing & (t - since >= self.for_ms[rule])
        col["firing"][pairs[fire]] = True
        for i in np.flatnonzero(fire | (moved & firing)).tolist():
            r, j = int(rule[i]), int(reading[i])
            entered = AlertState.FIRING if fire[i] else AlertState.RESOLVED
            ts_ms, started, value = int(t[i]), int(since[i]), float(v[i])
            fields = {
                "value": value,
                "metric": self.rules[r].metric,
                "stuck_min": (ts_ms - started) / _MINUTE_MS,
            }
            order = (j, int(position[i]), int(self.position[r]))
            batch.emit(
                order, self.rules[r], int(view.slots[j]), entered, ts_ms, started, fields, value
            )

    def export(self, subjects: Sequence[Subject], pairs: I64 | None = None) -> dict[Key, Any]:
        """Every pair with a reference, as :class:`_FlatState` objects."""
        col = self.col
        out: dict[Key, Any] = {}
        for pair in self.live_pairs(pairs):
            rule = self.rules[int(self.pair_rule[pair])]
            subject = subjects[int(self.pair_slot[pair])]
            out[rule.id, subject.device] = _FlatState(
                subject,
                float(col["reference"][pair]),
                int(col["since"][pair]),
                int(col["last"][pair]),
                bool(col["firing"][pair]),
                int(col["count"][pair]),
            )
        return out

    def load(
        self,
        states: dict[Key, Any],
        slot_of: Mapping[str, int],
        devices: Sequence[str] | None = None,
    ) -> None:
        """Take the flat-line states whose pair exists."""
        col = self.col
        for pair, state in self.take(states, slot_of, devices):
            col["has"][pair] = True
            col["reference"][pair] = state.reference
            col["since"][pair] = state.since_ms
            col["last"][pair] = state.last_ts_ms
            col["firing"][pair] = state.firing
            col["count"][pair] = state.count
