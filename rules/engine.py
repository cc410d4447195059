"""Evaluate rules against readings and events: pure state machines per (rule, subject).

Nothing here does I/O or reads a clock.  Time is the timestamp of the reading or event being
evaluated, or the ``now_ms`` given to :meth:`Engine.tick`, so a replay or a test drives the engine
exactly as live data does.

Threshold rules::

    inactive --breach--> pending --held for `for`--> firing --back in the clear band--> resolved
                            |                           (for: 0 goes straight to firing)
                            +--condition gone--> cancelled (a pending alert that never fired)

Event rules fire on a matching event (no pending state) and resolve on a ``resolve_on`` event or
``auto_resolve`` after the last matching event.  Every change is returned as a
:class:`Transition`; "cancelled" is emitted so that whoever mirrors pending alerts (the hub's
persisted state, a console) can drop them without asking the engine.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import math
from collections.abc import Mapping
from typing import Any

from rules.models import EventRule, IssueClass, RuleBase, Severity, ThresholdRule
from rules.ruleset import RuleSet

_Key = tuple[str, str]  # (rule id, device)


class AlertState(enum.StrEnum):
    """The state a transition moves an alert (rule, subject) into."""

    PENDING = "pending"  # condition holds, waiting for `for`
    FIRING = "firing"
    RESOLVED = "resolved"  # a firing alert's condition cleared
    CANCELLED = "cancelled"  # a pending alert's condition went away before it fired


@dataclasses.dataclass(frozen=True, slots=True)
class Subject:
    """What a reading or event is about: a device and its labels from the hub's registry.

    Attributes:
        device: the device id.
        labels: site, gateway, device_kind, grid, grid_name, building, floor, unit, place
            (a human string such as "Building 3, floor 2, unit 201") and anything else the hub
            knows; missing ones render as "?" in messages.
    """

    device: str
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One change of one alert, with everything a notifier needs.

    Attributes:
        rule_id: the rule.
        device: the subject's device id.
        state: the state entered.
        ts_ms: when it happened (the timestamp of the reading/event, or the auto-resolve deadline).
        since_ms: when the condition started (the first breaching reading or matching event).
        severity: the rule's severity.
        issue_class: the rule's issue class.
        summary: rendered short title.
        message: rendered message naming the place.
        labels: subject labels, then the rule's labels, then rule_id, severity, issue_class and
            device (later ones win).
        value: for thresholds, the value that caused the transition; else None.
        event_kind: for event rules, the kind of the event that caused it; else None.
    """

    rule_id: str
    device: str
    state: AlertState
    ts_ms: int
    since_ms: int
    severity: Severity
    issue_class: IssueClass
    summary: str
    message: str
    labels: Mapping[str, str]
    value: float | None = None
    event_kind: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ActiveAlert:
    """A pending or firing alert as the engine holds it.

    Attributes:
        rule_id: the rule.
        device: the subject's device id.
        state: pending or firing.
        since_ms: when the condition started.
        last_ts_ms: the last reading or event that kept it in this state.
        count: readings (thresholds) or matching events (event rules) seen since it started.
    """

    rule_id: str
    device: str
    state: AlertState
    since_ms: int
    last_ts_ms: int
    count: int


@dataclasses.dataclass(frozen=True, slots=True)
class EngineStatistics:
    """Counters since the engine started.

    Attributes:
        readings: readings evaluated.
        events: events evaluated.
        evaluations: (rule, subject) checks made; the indexes keep this to the rules that can
            match, so it grows with matching rules, not with the size of the rule set.
        late: samples ignored because they were older than the state they would update.
        active: alerts currently pending or firing.
    """

    readings: int
    events: int
    evaluations: int
    late: int
    active: int


@dataclasses.dataclass(slots=True)
class _ThresholdState:
    state: AlertState
    since_ms: int
    last_ts_ms: int
    threshold: float
    count: int = 1


@dataclasses.dataclass(slots=True)
class _EventState:
    subject: Subject  # kept for rendering an auto-resolve, which has no event of its own
    event_kind: str
    since_ms: int
    last_ts_ms: int
    deadline_ms: int | None
    count: int = 1


class Engine:
    """Evaluates a :class:`RuleSet`; holds one state per (rule id, device) that is not inactive."""

    def __init__(self, rules: RuleSet) -> None:
        self._rules = rules
        self._thresholds: dict[_Key, _ThresholdState] = {}
        self._events: dict[_Key, _EventState] = {}
        # Auto-resolve deadlines; entries go stale when a repeat moves the deadline, and are
        # skipped when popped, which is cheaper than finding and removing them.
        self._deadlines: list[tuple[int, str, str]] = []
        self._readings = 0
        self._event_count = 0
        self._evaluations = 0
        self._late = 0

    @property
    def rules(self) -> RuleSet:
        """The rules being evaluated."""
        return self._rules

    def on_reading(
        self, subject: Subject, ts_ms: int, values: Mapping[str, float]
    ) -> list[Transition]:
        """Evaluate one reading (a device's values at one instant).

        Args:
            subject: the device and its labels.
            ts_ms: the reading's timestamp, epoch milliseconds.
            values: value name -> number.

        Returns:
            The transitions it causes, in rule order.
        """
        self._readings += 1
        out: list[Transition] = []
        for metric, value in values.items():
            rules = self._rules.rules_for_metric(metric)
            if not rules or not math.isfinite(value):
                continue
            for rule in rules:
                if rule.scope.matches(subject.device, subject.labels):
                    self._evaluations += 1
                    transition = self._threshold(rule, subject, ts_ms, value)
                    if transition is not None:
                        out.append(transition)
        return out

    def on_event(
        self, subject: Subject, ts_ms: int, kind: str, data: Mapping[str, Any]
    ) -> list[Transition]:
        """Evaluate one event.

        Args:
            subject: the device and its labels.
            ts_ms: the event's timestamp, epoch milliseconds.
            kind: the event kind, e.g. ``alarm.smoke``.
            data: the event's data as normalised by :func:`wire.validate_event_data` (defaults
                filled in), so that ``active: true`` is present even when the gateway left it out.

        Returns:
            The transitions it causes, in rule order.
        """
        self._event_count += 1
        out: list[Transition] = []
        for rule in self._rules.rules_for_event(kind):
            if rule.scope.matches(subject.device, subject.labels):
                self._evaluations += 1
                out.extend(self._event(rule, subject, ts_ms, kind, data))
        return out

    def tick(self, now_ms: int) -> list[Transition]:
        """Resolve the event alerts whose ``auto_resolve`` deadline is at or before ``now_ms``.

        Returns:
            The resolutions, in deadline order, each stamped with its deadline.
        """
        out: list[Transition] = []
        while self._deadlines and self._deadlines[0][0] <= now_ms:
            deadline, rule_id, device = heapq.heappop(self._deadlines)
            key = (rule_id, device)
            state = self._events.get(key)
            rule = self._rules.get(rule_id)
            if state is None or state.deadline_ms != deadline or not isinstance(rule, EventRule):
                continue  # stale: resolved since, or the deadline moved on a repeat
            del self._events[key]
            out.append(self._event_transition(rule, state, AlertState.RESOLVED, deadline))
        return out

    def active(self) -> list[ActiveAlert]:
        """Alerts currently pending or firing, ordered by rule id then device."""
        alerts = [
            ActiveAlert(key[0], key[1], s.state, s.since_ms, s.last_ts_ms, s.count)
            for key, s in self._thresholds.items()
        ]
        alerts.extend(
            ActiveAlert(key[0], key[1], AlertState.FIRING, s.since_ms, s.last_ts_ms, s.count)
            for key, s in self._events.items()
        )
        alerts.sort(key=lambda a: (a.rule_id, a.device))
        return alerts

    def statistics(self) -> EngineStatistics:
        """A snapshot of the engine's counters."""
        return EngineStatistics(
            readings=self._readings,
            events=self._event_count,
            evaluations=self._evaluations,
            late=self._late,
            active=len(self._thresholds) + len(self._events),
        )

    # -- thresholds -------------------------------------------------------------------------

    def _threshold(
        self, rule: ThresholdRule, subject: Subject, ts_ms: int, value: float
    ) -> Transition | None:
        key = (rule.id, subject.device)
        state = self._thresholds.get(key)
        if state is None:
            threshold = rule.breach(value)
            if threshold is None:
                return None
            entered = AlertState.FIRING if rule.for_ms == 0 else AlertState.PENDING
            state = _ThresholdState(entered, ts_ms, ts_ms, threshold)
            self._thresholds[key] = state
            return self._threshold_transition(rule, subject, state, ts_ms, value)
        if ts_ms < state.last_ts_ms:
            # A replayed or reordered sample would move `for` backwards; the state keeps time.
            self._late += 1
            return None
        state.last_ts_ms = ts_ms
        state.count += 1
        moved_to = _next_threshold_state(rule, state, ts_ms, value)
        if moved_to is None:
            return None
        state.state = moved_to
        if moved_to is not AlertState.FIRING:
            del self._thresholds[key]
        return self._threshold_transition(rule, subject, state, ts_ms, value)

    def _threshold_transition(
        self,
        rule: ThresholdRule,
        subject: Subject,
        state: _ThresholdState,
        ts_ms: int,
        value: float,
    ) -> Transition:
        fields = {"value": value, "metric": rule.metric, "threshold": state.threshold}
        return _transition(rule, subject, state.state, ts_ms, state.since_ms, fields, value=value)

    # -- events -----------------------------------------------------------------------------

    def _event(
        self, rule: EventRule, subject: Subject, ts_ms: int, kind: str, data: Mapping[str, Any]
    ) -> list[Transition]:
        key = (rule.id, subject.device)
        state = self._events.get(key)
        out: list[Transition] = []
        if state is not None:
            if ts_ms < state.last_ts_ms:
                self._late += 1
                return out
            if state.deadline_ms is not None and ts_ms >= state.deadline_ms:
                # The alert expired before this event; tick() has not run yet.  Close the old
                # firing period at its deadline so this event can start a new one.
                del self._events[key]
                out.append(
                    self._event_transition(rule, state, AlertState.RESOLVED, state.deadline_ms)
                )
                state = None
        if rule.resolves(data):
            if state is not None:
                del self._events[key]
                state.subject, state.event_kind = subject, kind
                out.append(self._event_transition(rule, state, AlertState.RESOLVED, ts_ms))
            return out
        if not rule.fires(ts_ms, data):
            return out
        deadline = None if rule.auto_resolve_ms is None else ts_ms + rule.auto_resolve_ms
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, rule.id, subject.device))
        if state is not None:
            # Already firing: a repeat is counted, not fired again, and keeps the alert alive.
            state.count += 1
            state.last_ts_ms = ts_ms
            state.deadline_ms = deadline
            state.subject = subject
            return out
        state = _EventState(subject, kind, ts_ms, ts_ms, deadline)
        self._events[key] = state
        out.append(self._event_transition(rule, state, AlertState.FIRING, ts_ms))
        return out

    def _event_transition(
        self, rule: EventRule, state: _EventState, entered: AlertState, ts_ms: int
    ) -> Transition:
        fields = {"event_kind": state.event_kind}
        return _transition(
            rule, state.subject, entered, ts_ms, state.since_ms, fields, event_kind=state.event_kind
        )


def _next_threshold_state(
    rule: ThresholdRule, state: _ThresholdState, ts_ms: int, value: float
) -> AlertState | None:
    """The state a pending or firing threshold alert moves to at this reading, or None."""
    if state.state is AlertState.PENDING:
        threshold = rule.breach(value)
        if threshold is None:
            return AlertState.CANCELLED
        # With both bounds the value may have jumped to the other side; report the one it crosses.
        state.threshold = threshold
        return AlertState.FIRING if ts_ms - state.since_ms >= rule.for_ms else None
    # Firing: only the clear band ends it, not merely dropping back under the threshold.
    return AlertState.RESOLVED if rule.cleared(value) else None


def _transition(
    rule: RuleBase,
    subject: Subject,
    state: AlertState,
    ts_ms: int,
    since_ms: int,
    fields: Mapping[str, object],
    *,
    value: float | None = None,
    event_kind: str | None = None,
) -> Transition:
    fixed = {
        "rule_id": rule.id,
        "severity": rule.severity.value,
        "issue_class": rule.issue_class.value,
        "device": subject.device,
    }
    labels = {**subject.labels, **rule.labels, **fixed}
    summary, message = rule.render({**labels, **fields})
    return Transition(
        rule_id=rule.id,
        device=subject.device,
        state=state,
        ts_ms=ts_ms,
        since_ms=since_ms,
        severity=rule.severity,
        issue_class=rule.issue_class,
        summary=summary,
        message=message,
        labels=labels,
        value=value,
        event_kind=event_kind,
    )
