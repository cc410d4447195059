"""The reading side of correlation rules: which readings meet a metric condition.

A correlation's state is about a place, shared by every device there, and changes only when a
condition occurs; so the array work is finding the readings that meet a condition, and each of
those goes to the engine's correlation step in sequential order.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import numpy as np

from rules.kinds._base import F64, I64, Batch, ReadingGroup
from rules.models import CorrelationRule


class CorrelationGroup(ReadingGroup):
    """The correlation rules with a condition on one metric."""

    table: ClassVar[str | None] = None
    rules: tuple[CorrelationRule, ...]

    def compile(self) -> None:
        """Bounds of each rule's conditions on this metric, one column per condition."""
        conditions = [
            [c for c in rule.conditions if c.metric == self.metric] for rule in self.rules
        ]
        width = max((len(c) for c in conditions), default=0)
        self.above = np.full((len(self.rules), width), np.inf)
        self.below = np.full((len(self.rules), width), -np.inf)
        for r, mine in enumerate(conditions):
            for k, condition in enumerate(mine):
                if condition.above is not None:
                    self.above[r, k] = condition.above
                if condition.below is not None:
                    self.below[r, k] = condition.below

    def evaluate(self, batch: Batch, rows: I64, slots: I64, ts: I64, values: F64, pos: int) -> None:
        """Hand the readings that meet a condition to the engine's correlation step."""
        expanded = self.expand(slots)
        if expanded is None:
            return
        pairs, reading = expanded
        batch.evaluations += pairs.size
        rule = self.pair_rule[pairs]
        value = values[reading][:, None]
        met = ((value > self.above[rule]) | (value < self.below[rule])).any(axis=1)
        for i in np.flatnonzero(met).tolist():
            r, j = int(rule[i]), int(reading[i])
            model = self.rules[r]
            subject = batch.subjects[int(slots[j])]
            reading_value = float(values[j])
            indexes = [
                k
                for k, c in enumerate(model.conditions)
                if c.metric == self.metric and c.breach(reading_value)
            ]
            step = functools.partial(batch.correlate, model, subject, int(ts[j]), indexes)
            batch.actions.append(((int(rows[j]), pos, int(self.position[r])), step))
