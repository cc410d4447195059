"""Rate-of-change rules on one metric: the rate over ``window`` against ``max_per_minute``.

Each pair keeps its recent samples in a ring (one row of a 2-D array, as wide as the longest
history any pair needs; it widens when one needs more).  Appending the reading, dropping the
samples the window no longer needs and computing the rate are array operations for the whole
batch; only a pair whose alert fires or resolves leaves numpy.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from rules._reference import AlertState, Subject, _RateState
from rules.kinds._base import _MINUTE_MS, I64, Batch, Key, ReadingGroup, View
from rules.models import RateOfChangeRule

_INITIAL_WIDTH = 8


class RateGroup(ReadingGroup):
    """The rate-of-change rules on one metric."""

    columns: ClassVar[Mapping[str, tuple[type[np.generic], object]]] = {
        "has": (np.bool_, False),
        "head": (np.int64, 0),
        "size": (np.int64, 0),
        "firing": (np.bool_, False),
        "since": (np.int64, 0),
        "count": (np.int64, 0),
    }
    table: ClassVar[str | None] = "rates"
    rules: tuple[RateOfChangeRule, ...]

    def compile(self) -> None:
        """Windows, limits and directions as arrays; the sample rings empty."""
        self.window = np.array([r.window_ms for r in self.rules], dtype=np.int64)
        self.limit = self.rule_array(lambda r: r.max_per_minute)
        self.rise = np.array([r.direction != "fall" for r in self.rules], dtype=np.bool_)
        self.fall = np.array([r.direction != "rise" for r in self.rules], dtype=np.bool_)
        self.width = _INITIAL_WIDTH
        self.ring_ts: NDArray[np.int64] = np.zeros((0, self.width), dtype=np.int64)
        self.ring_value: NDArray[np.float64] = np.zeros((0, self.width), dtype=np.float64)

    def resize(self, size: int) -> None:
        """Grow the state arrays and the rings."""
        super().resize(size)
        extra = size - self.ring_ts.shape[0]
        if extra > 0:
            self.ring_ts = np.concatenate([self.ring_ts, np.zeros((extra, self.width), np.int64)])
            self.ring_value = np.concatenate(
                [self.ring_value, np.zeros((extra, self.width), np.float64)]
            )

    def _widen(self, width: int) -> None:
        # Unroll every ring to start at column 0, in a wider array.
        rows = np.arange(self.ring_ts.shape[0])[:, None]
        columns = (self.col["head"][: self.ring_ts.shape[0], None] + np.arange(self.width)) % (
            self.width
        )
        ring_ts = np.zeros((self.ring_ts.shape[0], width), dtype=np.int64)
        ring_value = np.zeros((self.ring_ts.shape[0], width), dtype=np.float64)
        ring_ts[:, : self.width] = self.ring_ts[rows, columns]
        ring_value[:, : self.width] = self.ring_value[rows, columns]
        self.ring_ts, self.ring_value, self.width = ring_ts, ring_value, width
        self.col["head"][:] = 0

    def evaluate(  # noqa: PLR0915 - one vectorised state machine, read top to bottom
        self, batch: Batch, view: View
    ) -> None:
        """Append each reading to its pairs' rings, take the rates, step the changed alerts."""
        gathered = self.gather(batch, view)
        if gathered is None:
            return
        pairs, reading, rule, t, v, position = gathered
        col = self.col
        has = col["has"][pairs]
        if not has.all():
            # A first sample starts the ring; there is no rate yet.
            new = pairs[~has]
            col["has"][new] = True
            col["head"][new] = 0
            col["size"][new] = 1
            self.ring_ts[new, 0] = t[~has]
            self.ring_value[new, 0] = v[~has]
            pairs, reading, rule, t, v = pairs[has], reading[has], rule[has], t[has], v[has]
            position = position[has]
        size = col["size"][pairs]
        if int(size.max(initial=0)) >= self.width:
            self._widen(self.width * 2)
        width = self.width
        # The rings seen flat (rows are contiguous): one index per sample, cheap to gather.
        ring_ts, ring_value = self.ring_ts.reshape(-1), self.ring_value.reshape(-1)
        head = col["head"][pairs]
        base = pairs * width
        newest = ring_ts[base + (head + size - 1) % width]
        late = t <= newest  # an equal timestamp would make a rate out of nothing
        if late.any():
            batch.late += int(late.sum())
            keep = ~late
            pairs, reading, rule, t, v = pairs[keep], reading[keep], rule[keep], t[keep], v[keep]
            size, head, position, base = size[keep], head[keep], position[keep], base[keep]
        if not pairs.size:
            return
        tail = base + (head + size) % width
        ring_ts[tail] = t
        ring_value[tail] = v
        size += 1
        horizon = t - self.window[rule]
        # Keep one sample at or before the window's start, the reference: drop the older ones
        # (never the newest two).  At a steady rate that is one per reading.
        while True:
            drop = (size > 2) & (ring_ts[base + (head + 1) % width] <= horizon)  # noqa: PLR2004
            if not drop.any():
                break
            head = (head + drop) % width
            size -= drop
        col["head"][pairs] = head
        col["size"][pairs] = size
        ref_ts = ring_ts[base + head]
        full = ref_ts <= horizon  # else not a full window of history yet
        if not full.any():
            return
        pairs, reading, t, v, rule = pairs[full], reading[full], t[full], v[full], rule[full]
        ref_ts, position, base, head = ref_ts[full], position[full], base[full], head[full]
        ref_value = ring_value[base + head]
        rate = (v - ref_value) * float(_MINUTE_MS) / (t - ref_ts)
        limit = self.limit[rule]
        breach = (self.rise[rule] & (rate > limit)) | (self.fall[rule] & (rate < -limit))
        firing = col["firing"][pairs]
        col["count"][pairs[firing]] += 1
        for i in np.flatnonzero(firing != breach).tolist():
            r, j = int(rule[i]), int(reading[i])
            self._change(
                batch,
                (j, int(position[i]), int(self.position[r])),
                r,
                int(pairs[i]),
                int(view.slots[j]),
                int(t[i]),
                float(v[i]),
                float(rate[i]),
            )

    def _change(
        self,
        batch: Batch,
        order: tuple[int, int, int],
        r: int,
        pair: int,
        slot: int,
        ts_ms: int,
        value: float,
        rate: float,
    ) -> None:
        rule = self.rules[r]
        col = self.col
        if col["firing"][pair]:
            col["firing"][pair] = False
            entered = AlertState.RESOLVED
        elif rule.schedule is None or rule.schedule.contains(ts_ms):
            col["firing"][pair] = True
            col["since"][pair] = ts_ms
            col["count"][pair] = 1
            entered = AlertState.FIRING
        else:
            return
        fields = {
            "value": value,
            "metric": rule.metric,
            "rate": rate,
            "threshold": rule.max_per_minute,
        }
        since = int(col["since"][pair])
        batch.emit(order, rule, slot, entered, ts_ms, since, fields, value)

    def dump(self) -> tuple[I64, dict[str, NDArray[Any]]]:
        """Also the rings, unrolled to start at column 0."""
        pairs, columns = super().dump()
        unrolled = (columns["head"][:, None] + np.arange(self.width)) % self.width
        columns["ring_ts"] = self.ring_ts[pairs[:, None], unrolled]
        columns["ring_value"] = self.ring_value[pairs[:, None], unrolled]
        columns["head"] = np.zeros(pairs.size, dtype=np.int64)
        return pairs, columns

    def check(self, columns: Mapping[str, NDArray[Any]], n: int) -> str | None:
        """Also the rings: as many rows as states, each holding ``size`` samples."""
        rings = {"ring_ts": np.dtype(np.int64), "ring_value": np.dtype(np.float64)}
        plain = {name: column for name, column in columns.items() if name not in rings}
        problem = super().check(plain, n)
        if problem is not None:
            return problem
        for name, dtype in rings.items():
            ring = columns.get(name)
            if ring is None or ring.dtype != dtype or ring.ndim != 2 or ring.shape[0] != n:  # noqa: PLR2004
                return f"column {name!r} is not {n} rows of {dtype}"
        width = columns["ring_ts"].shape[1]
        if columns["ring_value"].shape[1] != width:
            return "its rings differ in width"
        size = columns["size"]
        if not (columns["has"].all() and (size >= 1).all() and (size <= width).all()):
            return "holds a ring with no samples, or more than it has room for"
        if (columns["head"] != 0).any():
            return "holds a ring that does not start at column 0"
        return None

    def put(self, pairs: I64, columns: Mapping[str, NDArray[Any]]) -> None:
        """Also the rings, widened to fit."""
        super().put(pairs, columns)
        width = int(columns["ring_ts"].shape[1])
        if width > self.width:
            wider = self.width
            while wider < width:
                wider *= 2
            self._widen(wider)
            self.col["head"][pairs] = 0
        self.ring_ts[pairs, :width] = columns["ring_ts"]
        self.ring_value[pairs, :width] = columns["ring_value"]

    def export(self, subjects: Sequence[Subject], pairs: I64 | None = None) -> dict[Key, Any]:
        """Every pair with samples, as :class:`_RateState` objects."""
        col = self.col
        out: dict[Key, Any] = {}
        width = self.width
        for pair in self.live_pairs(pairs):
            rule = self.rules[int(self.pair_rule[pair])]
            subject = subjects[int(self.pair_slot[pair])]
            head = int(col["head"][pair])
            columns = [(head + k) % width for k in range(int(col["size"][pair]))]
            samples = collections.deque(
                (int(self.ring_ts[pair, c]), float(self.ring_value[pair, c])) for c in columns
            )
            out[rule.id, subject.device] = _RateState(
                subject,
                samples,
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
        """Take the rate states whose pair exists, rings widened to fit."""
        taken = self.take(states, slot_of, devices)
        longest = max((len(state.samples) for _, state in taken), default=0)
        width = self.width
        while width <= longest:
            width *= 2
        if width != self.width:
            self._widen(width)
        col = self.col
        for pair, state in taken:
            col["has"][pair] = True
            col["head"][pair] = 0
            col["size"][pair] = len(state.samples)
            for k, (ts_ms, value) in enumerate(state.samples):
                self.ring_ts[pair, k] = ts_ms
                self.ring_value[pair, k] = value
            col["firing"][pair] = state.firing
            col["since"][pair] = state.since_ms
            col["count"][pair] = state.count
