"""The rule language of anju and its evaluation: pure, no I/O, time passed in.

Rules are YAML files (``config/rules/*.yaml``) loaded into a :class:`RuleSet` by
:func:`load_rules`; an :class:`Engine` evaluates readings and events against it and returns
:class:`Transition` objects for the hub's alert lifecycle.
"""

from __future__ import annotations

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
    EventMatch,
    EventRule,
    IssueClass,
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
    "STANDARD_LABELS",
    "ActiveAlert",
    "AlertState",
    "Engine",
    "EngineStatistics",
    "EventMatch",
    "EventRule",
    "IssueClass",
    "Rule",
    "RuleBase",
    "RuleError",
    "RuleSet",
    "RulesError",
    "Schedule",
    "Scope",
    "Severity",
    "Subject",
    "ThresholdRule",
    "Transition",
    "load_rules",
    "parse_duration_ms",
    "parse_rules",
]
