"""Reading rule kinds compiled for batches: one module per kind, registered in :data:`KINDS`.

Each kind evaluates all its rules over a batch of readings as array operations
(see :mod:`rules.kinds._base`); :mod:`rules.kinds.absence` is the reading side of absence rules.
"""

from __future__ import annotations

from rules.kinds._base import Batch, ReadingGroup, View, scope_masks
from rules.kinds.absence import LastSeen
from rules.kinds.anomaly import AnomalyGroup
from rules.kinds.correlation import CorrelationGroup
from rules.kinds.flat_line import FlatLineGroup
from rules.kinds.rate_of_change import RateGroup
from rules.kinds.threshold import ThresholdGroup
from rules.models import (
    AnomalyRule,
    CorrelationRule,
    FlatLineRule,
    RateOfChangeRule,
    RuleBase,
    ThresholdRule,
)

KINDS: dict[type[RuleBase], type[ReadingGroup]] = {
    ThresholdRule: ThresholdGroup,
    RateOfChangeRule: RateGroup,
    FlatLineRule: FlatLineGroup,
    AnomalyRule: AnomalyGroup,
    CorrelationRule: CorrelationGroup,
}
"""Rule model -> the group that evaluates the rules of that kind."""

__all__ = ["KINDS", "Batch", "LastSeen", "ReadingGroup", "View", "scope_masks"]
