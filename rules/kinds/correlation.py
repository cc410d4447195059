"""The reading side of correlation rules: which readings meet a metric condition.

A correlation's state is about a place, shared by every device there, and changes only when a
condition occurs; so the array work is finding the readings that meet a condition, and each of
those goes to the engine's correlation step in sequential order.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import numpy as np

from rules.kinds._base import Batch, ReadingGroup, View
from rules.models import CorrelationRule


class CorrelationGroup(ReadingGroup):
    """The correlation rules, one entry per metric a rule has conditions on."""

    table: ClassVar[str | None] = None
    rules: tuple[CorrelationRule, ...]

    def compile(self) -> None:
        """Bounds of each entry's conditions on its metric, one column per condition."""
        conditions = [
            [c for c in rule.conditions if c.metric == metric]
            for metric, rule in zip(self.entry_metric_name, self.rules, strict=True)
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

    def evaluate(self, batch: Batch, view: View) -> None:
        """Hand the readings that meet a condition to the engine's correlation step."""
        gathered = self.gather(batch, view)
        if gathered is None:
            return
        _, reading, rule, ts, value, position = gathered
        column = value[:, None]
        met = ((column > self.above[rule]) | (column < self.below[rule])).any(axis=1)
        for i in np.flatnonzero(met).tolist():
            r, j = int(rule[i]), int(reading[i])
            model, metric = self.rules[r], self.entry_metric_name[r]
            subject = batch.subjects[int(view.slots[j])]
            reading_value = float(value[i])
            indexes = [
                k
                for k, c in enumerate(model.conditions)
                if c.metric == metric and c.breach(reading_value)
            ]
            step = functools.partial(batch.correlate, model, subject, int(ts[i]), indexes)
            batch.actions.append(((j, int(position[i]), int(self.position[r])), step))
