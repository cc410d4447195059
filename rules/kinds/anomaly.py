"""Anomaly rules on one metric: an EWMA baseline per pair and a z-score after the warm-up.

Every reading updates its baselines, so the z-scores, the clipping and the EWMA step are array
operations, written so that each number comes out bit for bit as the sequential engine's:
``max``/``min`` are spelt as the comparisons Python makes, not as ``np.maximum``, which differs
on NaN.  Python only checks schedules and renders transitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from rules._reference import AlertState, Subject, _AnomalyState
from rules.kinds._base import F64, I64, Batch, Key, ReadingGroup, View
from rules.models import AnomalyRule


class AnomalyGroup(ReadingGroup):
    """The anomaly rules on one metric."""

    columns: ClassVar[Mapping[str, tuple[type[np.generic], object]]] = {
        "has": (np.bool_, False),
        "last": (np.int64, 0),
        "mean": (np.float64, 0.0),
        "var": (np.float64, 0.0),
        "n": (np.int64, 0),
        "firing": (np.bool_, False),
        "since": (np.int64, 0),
        "count": (np.int64, 0),
    }
    table: ClassVar[str | None] = "anomalies"
    rules: tuple[AnomalyRule, ...]

    def compile(self) -> None:
        """Weights, warm-ups, limits and directions as arrays."""
        self.alpha = self.rule_array(lambda r: r.alpha)
        self.warmup = np.array([r.warmup for r in self.rules], dtype=np.int64)
        self.z = self.rule_array(lambda r: r.z)
        self.min_std = self.rule_array(lambda r: r.min_std)
        self.rise = np.array([r.direction != "fall" for r in self.rules], dtype=np.bool_)
        self.fall = np.array([r.direction != "rise" for r in self.rules], dtype=np.bool_)

    def evaluate(  # noqa: PLR0915 - one vectorised state machine, read top to bottom
        self, batch: Batch, view: View
    ) -> None:
        """Score each reading against its baselines, step the alerts, update the baselines."""
        gathered = self.gather(batch, view)
        if gathered is None:
            return
        pairs, reading, rule, t, v, position = gathered
        col = self.col
        has = col["has"][pairs]
        if not has.all():
            new = pairs[~has]
            col["has"][new] = True
            col["last"][new] = t[~has]
            col["mean"][new] = v[~has]
            col["var"][new] = 0.0
            col["n"][new] = 1
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
        mean, var, n = col["mean"][pairs], col["var"][pairs], col["n"][pairs]
        root = np.sqrt(var)
        floor = self.min_std[rule]
        std = np.where(floor > root, floor, root)  # max(sqrt(var), min_std)
        scored = (n >= self.warmup[rule]) & (std != 0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            zscore = (v - mean) / std
        z = self.z[rule]
        breach = scored & ((self.rise[rule] & (zscore > z)) | (self.fall[rule] & (zscore < -z)))
        firing = col["firing"][pairs]
        col["count"][pairs[firing & scored]] += 1
        change = scored & (firing != breach)
        if change.any():
            self._change(batch, view, position, pairs, reading, rule, t, v, mean, zscore, change)
        # EWMA mean and variance (West's incremental form), the outlier clipped to z·std.  An
        # overflow to inf is what the sequential engine's floats do too: no warning.
        with np.errstate(over="ignore", invalid="ignore"):
            limit = z * std
            low, high = mean - limit, mean + limit
            clipped = np.where(low > v, low, v)
            clipped = np.where(high < clipped, high, clipped)
            value = np.where(scored, clipped, v)
            n = n + 1
            inverse = 1.0 / n
            alpha = self.alpha[rule]
            alpha = np.where(inverse > alpha, inverse, alpha)
            diff = value - mean
            step = alpha * diff
            col["mean"][pairs] = mean + step
            col["var"][pairs] = (1.0 - alpha) * (var + diff * step)
        col["n"][pairs] = n

    def _change(
        self,
        batch: Batch,
        view: View,
        position: I64,
        pairs: I64,
        reading: I64,
        rule: I64,
        t: I64,
        v: F64,
        mean: F64,
        zscore: F64,
        change: np.ndarray[Any, np.dtype[np.bool_]],
    ) -> None:
        col = self.col
        for i in np.flatnonzero(change).tolist():
            r, pair, ts_ms = int(rule[i]), int(pairs[i]), int(t[i])
            model = self.rules[r]
            if col["firing"][pair]:
                col["firing"][pair] = False
                entered = AlertState.RESOLVED
            elif model.schedule is None or model.schedule.contains(ts_ms):
                col["firing"][pair] = True
                col["since"][pair] = ts_ms
                col["count"][pair] = 1
                entered = AlertState.FIRING
            else:
                continue
            value = float(v[i])
            fields = {
                "value": value,
                "metric": model.metric,
                "mean": float(mean[i]),
                "zscore": float(zscore[i]),
            }
            j = int(reading[i])
            order = (j, int(position[i]), int(self.position[r]))
            since = int(col["since"][pair])
            batch.emit(order, model, int(view.slots[j]), entered, ts_ms, since, fields, value)

    def export(self, subjects: Sequence[Subject], pairs: I64 | None = None) -> dict[Key, Any]:
        """Every pair with a baseline, as :class:`_AnomalyState` objects."""
        col = self.col
        out: dict[Key, Any] = {}
        for pair in self.live_pairs(pairs):
            rule = self.rules[int(self.pair_rule[pair])]
            subject = subjects[int(self.pair_slot[pair])]
            out[rule.id, subject.device] = _AnomalyState(
                subject,
                int(col["last"][pair]),
                float(col["mean"][pair]),
                float(col["var"][pair]),
                int(col["n"][pair]),
                bool(col["firing"][pair]),
                int(col["since"][pair]),
                int(col["count"][pair]),
            )
        return out

    def load(
        self,
        states: dict[Key, Any],
        slot_of: Mapping[str, int],
        devices: Sequence[str] | None = None,
    ) -> None:
        """Take the anomaly states whose pair exists."""
        col = self.col
        for pair, state in self.take(states, slot_of, devices):
            col["has"][pair] = True
            col["last"][pair] = state.last_ts_ms
            col["mean"][pair] = state.mean
            col["var"][pair] = state.var
            col["n"][pair] = state.n
            col["firing"][pair] = state.firing
            col["since"][pair] = state.since_ms
            col["count"][pair] = state.count
