"""The rule language of anju and its evaluation: pure, no I/O, time passed in.

Rules are YAML files (``config/rules/*.yaml``) loaded into a :class:`RuleSet` by
:func:`load_rules`; an :class:`Engine` evaluates readings (in batches of columns,
:meth:`Engine.on_batch`, over devices numbered by :meth:`Engine.set_subjects`) and events
against it and returns :class:`Transition` objects for the hub's alert lifecycle.
:meth:`Engine.snapshot` and :meth:`Engine.restore` keep its evaluation state across a restart
(:mod:`rules._snapshot`).

Rule kinds: ``threshold``, ``event``, ``rate_of_change``, ``absence`` (deadman per device),
``inactivity`` (welfare check per unit), ``flat_line`` (stuck sensor), ``count`` (N events in a
sliding window), ``correlation`` (several conditions at one place) and ``anomaly`` (EWMA z-score).
"""

from __future__ import annotations

from rules._snapshot import (
    SNAPSHOT_FORMAT,
    SNAPSHOT_VERSION,
    RestoreReport,
    SnapshotError,
    rule_fingerprint,
)
from rules.durations import parse_duration_ms
from rules.engine import (
    ActiveAlert,
    AlertState,
    Engine,
    EngineStatistics,
    Subject,
    Transition,
)
from rules.errors import RuleError, RulesError
from rules.loader import load_rules, parse_rules
from rules.models import (
    AbsenceRule,
    AnomalyRule,
    Condition,
    CorrelationRule,
    CountRule,
    EventMatch,
    EventRule,
    FlatLineRule,
    InactivityRule,
    IssueClass,
    RateOfChangeRule,
    Rule,
    RuleBase,
    Scope,
    Severity,
    ThresholdRule,
)
from rules.ruleset import RuleSet
from rules.schedule import Schedule
from rules.template import STANDARD_LABELS

__all__ = [
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_VERSION",
    "STANDARD_LABELS",
    "AbsenceRule",
    "ActiveAlert",
    "AlertState",
    "AnomalyRule",
    "Condition",
    "CorrelationRule",
    "CountRule",
    "Engine",
    "EngineStatistics",
    "EventMatch",
    "EventRule",
    "FlatLineRule",
    "InactivityRule",
    "IssueClass",
    "RateOfChangeRule",
    "RestoreReport",
    "Rule",
    "RuleBase",
    "RuleError",
    "RuleSet",
    "RulesError",
    "Schedule",
    "Scope",
    "Severity",
    "SnapshotError",
    "Subject",
    "ThresholdRule",
    "Transition",
    "load_rules",
    "parse_duration_ms",
    "parse_rules",
    "rule_fingerprint",
]
