"""A loaded set of rules, indexed by what can trigger them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping

from rules.errors import RuleError
from rules.models import (
    AbsenceRule,
    AnyRule,
    CorrelationRule,
    CountRule,
    EventDrivenRule,
    EventRule,
    InactivityRule,
    ReadingRule,
)


class RuleSet:
    """An immutable collection of rules with unique ids, indexed for evaluation.

    The indexes are what keeps evaluation cheap: a reading meets only the rules on its value
    names, and an event only the rules on its kind (exact kinds through a dict, ``prefix.*``
    patterns through a short list).  Absence and inactivity rules watch every subject, so they
    are listed apart for the engine's subject registry.
    """

    def __init__(self, rules: Iterable[AnyRule], sources: Mapping[str, str] | None = None) -> None:
        """Index ``rules``.

        Args:
            rules: the rules, in the order they were written.
            sources: rule id -> where it was defined (``file:line``), for messages.

        Raises:
            RuleError: if two rules share an id.
        """
        by_id: dict[str, AnyRule] = {}
        by_metric: defaultdict[str, list[ReadingRule]] = defaultdict(list)
        by_kind: defaultdict[str, list[EventDrivenRule]] = defaultdict(list)
        by_prefix: defaultdict[str, list[EventDrivenRule]] = defaultdict(list)
        watchers: list[AbsenceRule | InactivityRule] = []
        for rule in rules:
            if rule.id in by_id:
                raise RuleError("duplicate rule id", rule=rule.id, field="id")
            by_id[rule.id] = rule
            match rule:
                case AbsenceRule() | InactivityRule():
                    watchers.append(rule)
                case CorrelationRule():
                    # Indexed under each of its parts; a rule with two conditions on one
                    # kind is still listed once there.
                    for metric in sorted(rule.metrics):
                        by_metric[metric].append(rule)
                    for match in dict.fromkeys(m.kind for m in rule.event_matches):
                        if match.endswith(".*"):
                            by_prefix[match[:-1]].append(rule)
                        else:
                            by_kind[match].append(rule)
                case EventRule() | CountRule() if rule.match.is_pattern:
                    by_prefix[rule.match.prefix].append(rule)
                case EventRule() | CountRule():
                    by_kind[rule.match.kind].append(rule)
                case _:
                    by_metric[rule.metric].append(rule)
        self._by_id = by_id
        self._sources = dict(sources or {})
        self._by_metric = {metric: tuple(rs) for metric, rs in by_metric.items()}
        self._by_kind = {kind: tuple(rs) for kind, rs in by_kind.items()}
        self._by_prefix = tuple((prefix, tuple(rs)) for prefix, rs in by_prefix.items())
        self._watchers = tuple(watchers)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[AnyRule]:
        return iter(self._by_id.values())

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._by_id

    def __repr__(self) -> str:
        return f"<RuleSet of {len(self)} rules>"

    def get(self, rule_id: str) -> AnyRule | None:
        """The rule with ``rule_id``, or None."""
        return self._by_id.get(rule_id)

    def source_of(self, rule_id: str) -> str | None:
        """Where the rule was defined (``file:line``), when it came from the loader."""
        return self._sources.get(rule_id)

    @property
    def metrics(self) -> frozenset[str]:
        """Value names that some rule watches."""
        return frozenset(self._by_metric)

    def rules_for_metric(self, metric: str) -> tuple[ReadingRule, ...]:
        """Rules a reading of ``metric`` can trigger."""
        return self._by_metric.get(metric, ())

    def rules_for_event(self, kind: str) -> tuple[EventDrivenRule, ...]:
        """Rules an event of ``kind`` can trigger: exact kind first, then matching patterns."""
        exact = self._by_kind.get(kind, ())
        if not self._by_prefix:
            return exact
        patterned = tuple(
            rule for prefix, rules in self._by_prefix if kind.startswith(prefix) for rule in rules
        )
        return exact + patterned if patterned else exact

    @property
    def watchers(self) -> tuple[AbsenceRule | InactivityRule, ...]:
        """Rules that watch subjects for silence (absence, inactivity), in the order written."""
        return self._watchers
