"""Threshold rules on one metric: ``above``/``below``, ``for``, and a clear band (hysteresis).

Most readings breach nothing and have no alert open: one comparison per pair finds them and
they cost nothing more.  A pair that breaches or has an alert pending or firing is stepped in
Python, exactly as :meth:`rules._reference.SequentialEngine._threshold` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from rules._reference import AlertState, Subject, _ThresholdState
from rules.kinds._base import I64, Batch, Key, ReadingGroup, View
from rules.models import ThresholdRule

_NONE, _PENDING, _FIRING = 0, 1, 2
_STATES = {_PENDING: AlertState.PENDING, _FIRING: AlertState.FIRING}
_CODES = {AlertState.PENDING: _PENDING, AlertState.FIRING: _FIRING}


class ThresholdGroup(ReadingGroup):
    """The threshold rules on one metric."""

    columns: ClassVar[Mapping[str, tuple[type[np.generic], object]]] = {
        "state": (np.int8, _NONE),
        "since": (np.int64, 0),
        "last": (np.int64, 0),
        "level": (np.float64, np.nan),
        "count": (np.int64, 0),
    }
    table: ClassVar[str | None] = "thresholds"
    rules: tuple[ThresholdRule, ...]

    def compile(self) -> None:
        """Levels as arrays; a missing bound never breaches."""
        self.above = self.rule_array(lambda r: np.inf if r.above is None else r.above)
        self.below = self.rule_array(lambda r: -np.inf if r.below is None else r.below)

    def evaluate(self, batch: Batch, view: View) -> None:
        """Find the pairs that breach or have an alert open; step those one by one."""
        gathered = self.gather(batch, view)
        if gathered is None:
            return
        pairs, reading, rule, ts, value, position = gathered
        live = (value > self.above[rule]) | (value < self.below[rule])
        live |= self.col["state"][pairs] != _NONE
        if not live.any():
            return
        for i in np.flatnonzero(live).tolist():
            r, j = int(rule[i]), int(reading[i])
            self._step(
                batch,
                (j, int(position[i]), int(self.position[r])),
                r,
                int(pairs[i]),
                int(view.slots[j]),
                int(ts[i]),
                float(value[i]),
            )

    def _step(
        self,
        batch: Batch,
        order: tuple[int, int, int],
        r: int,
        pair: int,
        slot: int,
        ts_ms: int,
        value: float,
    ) -> None:
        rule = self.rules[r]
        col = self.col
        state = int(col["state"][pair])
        if state == _NONE:
            threshold = rule.breach(value)
            if threshold is None:
                return
            entered = AlertState.FIRING if rule.for_ms == 0 else AlertState.PENDING
            col["state"][pair] = _CODES[entered]
            col["since"][pair] = col["last"][pair] = ts_ms
            col["level"][pair] = threshold
            col["count"][pair] = 1
            self._emit(batch, order, rule, slot, entered, ts_ms, ts_ms, value, threshold)
            return
        if ts_ms < int(col["last"][pair]):
            # A replayed or reordered sample would move `for` backwards; the state keeps time.
            batch.late += 1
            return
        col["last"][pair] = ts_ms
        col["count"][pair] += 1
        since = int(col["since"][pair])
        level = float(col["level"][pair])
        if state == _PENDING:
            threshold = rule.breach(value)
            if threshold is None:
                col["state"][pair] = _NONE
                self._emit(
                    batch, order, rule, slot, AlertState.CANCELLED, ts_ms, since, value, level
                )
                return
            col["level"][pair] = threshold
            if ts_ms - since >= rule.for_ms:
                col["state"][pair] = _FIRING
                self._emit(
                    batch, order, rule, slot, AlertState.FIRING, ts_ms, since, value, threshold
                )
            return
        if rule.cleared(value):
            col["state"][pair] = _NONE
            self._emit(batch, order, rule, slot, AlertState.RESOLVED, ts_ms, since, value, level)

    def _emit(
        self,
        batch: Batch,
        order: tuple[int, int, int],
        rule: ThresholdRule,
        slot: int,
        state: AlertState,
        ts_ms: int,
        since_ms: int,
        value: float,
        threshold: float,
    ) -> None:
        fields = {"value": value, "metric": rule.metric, "threshold": threshold}
        batch.emit(order, rule, slot, state, ts_ms, since_ms, fields, value)

    def live(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Pairs with an alert pending or firing."""
        live: np.ndarray[Any, np.dtype[np.bool_]] = self.col["state"][: self.size] != _NONE
        return live

    def check(self, columns: Mapping[str, NDArray[Any]], n: int) -> str | None:
        """Also: only pending and firing alerts are held."""
        problem = super().check(columns, n)
        if problem is None and not np.isin(columns["state"], (_PENDING, _FIRING)).all():
            problem = "holds a state that is neither pending nor firing"
        return problem

    def export(self, subjects: Sequence[Subject], pairs: I64 | None = None) -> dict[Key, Any]:
        """Pending and firing alerts as :class:`_ThresholdState` objects."""
        col = self.col
        out: dict[Key, Any] = {}
        for pair in self.live_pairs(pairs):
            rule = self.rules[int(self.pair_rule[pair])]
            device = subjects[int(self.pair_slot[pair])].device
            out[rule.id, device] = _ThresholdState(
                _STATES[int(col["state"][pair])],
                int(col["since"][pair]),
                int(col["last"][pair]),
                float(col["level"][pair]),
                int(col["count"][pair]),
            )
        return out

    def load(
        self,
        states: dict[Key, Any],
        slot_of: Mapping[str, int],
        devices: Sequence[str] | None = None,
    ) -> None:
        """Take the threshold states whose pair exists."""
        col = self.col
        for pair, state in self.take(states, slot_of, devices):
            col["state"][pair] = _CODES[state.state]
            col["since"][pair] = state.since_ms
            col["last"][pair] = state.last_ts_ms
            col["level"][pair] = state.threshold
            col["count"][pair] = state.count
