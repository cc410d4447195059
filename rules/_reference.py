"""The sequential engine: rules evaluated one reading at a time, pure state machines.

:class:`SequentialEngine` is the reference the batch engine (:class:`rules.Engine`) is checked
against, reading for reading, and the base it inherits events, ticks, counts, silences and
correlations from: only the reading path is replaced there.

Nothing here does I/O or reads a clock.  Time is the timestamp of the reading or event being
evaluated, or the ``now_ms`` given to ``tick``, so a replay or a test drives the engine exactly as
live data does.

Threshold rules::

    inactive --breach--> pending --held for `for`--> firing --back in the clear band--> resolved
                            |                           (for: 0 goes straight to firing)
                            +--condition gone--> cancelled (a pending alert that never fired)

Event rules fire on a matching event (no pending state) and resolve on a ``resolve_on`` event or
``auto_resolve`` after the last matching event.  Rate-of-change, flat-line and anomaly rules fire
and resolve on readings (no pending state); count rules fire on the event that completes the
count and resolve in ``tick``; absence and inactivity rules fire in ``tick`` when a subject (a
device, or a place for inactivity) has been quiet too long and resolve on its next activity;
correlation rules fire when all their conditions occurred at one place within their window and
resolve in ``tick`` when that stops holding.  Alerts about a place (inactivity, correlation)
carry ``place:<labels joined by />`` as their device, e.g. ``place:3/2/201``.  Every change is
returned as a :class:`Transition`; "cancelled" is emitted so that whoever mirrors pending alerts
(the hub's persisted state, a console) can drop them without asking the engine.

``snapshot`` and ``restore`` carry the evaluation state across a restart of the hub (see
:mod:`rules._snapshot`); the engine goes on exactly as if it had never stopped.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import heapq
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rules.models import (
    AbsenceRule,
    AnomalyRule,
    CorrelationRule,
    CountRule,
    EventRule,
    FlatLineRule,
    InactivityRule,
    IssueClass,
    RateOfChangeRule,
    RuleBase,
    Severity,
    ThresholdRule,
    matches_fields,
)
from rules.ruleset import RuleSet

if TYPE_CHECKING:
    from rules._snapshot import RestoreReport

_Key = tuple[str, str]  # (rule id, device), or (rule id, place key) for inactivity
_MINUTE_MS = 60_000
# Place keys are not device ids; the prefix keeps the two from ever colliding in the hub.
PLACE_KEY_PREFIX = "place:"


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
        device: the subject's device id, or for a rule about a place (inactivity, correlation)
            the place key such as ``place:3/2/201``.
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


@dataclasses.dataclass(slots=True)
class _RateState:
    subject: Subject
    samples: collections.deque[tuple[int, float]]
    firing: bool = False
    since_ms: int = 0
    count: int = 0


@dataclasses.dataclass(slots=True)
class _FlatState:
    subject: Subject
    reference: float
    since_ms: int  # the first reading at the reference value
    last_ts_ms: int
    firing: bool = False
    count: int = 1


@dataclasses.dataclass(slots=True)
class _AnomalyState:
    subject: Subject
    last_ts_ms: int
    mean: float
    var: float = 0.0
    n: int = 1
    firing: bool = False
    since_ms: int = 0
    count: int = 0


@dataclasses.dataclass(slots=True)
class _CountState:
    subject: Subject
    event_kind: str
    times: collections.deque[int]  # the last `count` counted events
    last_ts_ms: int
    firing: bool = False
    since_ms: int = 0
    total: int = 0  # counted events since firing
    resolve_ms: int = 0  # when a firing alert resolves unless more events come
    timer_ms: int | None = None  # due time of this state's one live entry in the timer heap


@dataclasses.dataclass(slots=True)
class _SilenceState:
    subject: Subject  # the last active subject, for rendering
    for_ms: int
    last_ts_ms: int
    firing: bool = False
    fired_ms: int = 0
    timer_ms: int | None = None


@dataclasses.dataclass(slots=True)
class _CorrelationState:
    subject: Subject  # the place, with the labels of the device that last contributed
    seen: list[int | None]  # per condition, when it last occurred here
    firing: bool = False
    since_ms: int = 0
    fired_ms: int = 0
    count: int = 0
    resolve_ms: int = 0
    timer_ms: int | None = None


# What a subject's activity updates: the silence states of the watchers whose scope it is in.
_Watch = tuple[AbsenceRule | InactivityRule, _SilenceState]


@dataclasses.dataclass(slots=True, kw_only=True)
class EngineState:
    """The evaluation state of an engine, table by table: what a snapshot holds.

    Each table maps (rule id, subject key) to the state of one kind.  The engine's timer heaps and
    caches are not part of it: they are derived from these states.
    """

    thresholds: dict[_Key, _ThresholdState]
    events: dict[_Key, _EventState]
    rates: dict[_Key, _RateState]
    flats: dict[_Key, _FlatState]
    anomalies: dict[_Key, _AnomalyState]
    counts: dict[_Key, _CountState]
    silences: dict[_Key, _SilenceState]
    correlations: dict[_Key, _CorrelationState]


class SequentialEngine:
    """Evaluates a :class:`RuleSet` one reading at a time.

    Holds one state per (rule id, subject key) that is not idle.

    The subject key is the device, except for inactivity rules, which key by place.
    """

    def __init__(self, rules: RuleSet) -> None:
        self._rules = rules
        self._thresholds: dict[_Key, _ThresholdState] = {}
        self._events: dict[_Key, _EventState] = {}
        # Auto-resolve deadlines; entries go stale when a repeat moves the deadline, and are
        # skipped when popped, which is cheaper than finding and removing them.
        self._deadlines: list[tuple[int, str, str]] = []
        self._rates: dict[_Key, _RateState] = {}
        self._flats: dict[_Key, _FlatState] = {}
        self._anomalies: dict[_Key, _AnomalyState] = {}
        self._counts: dict[_Key, _CountState] = {}
        self._silences: dict[_Key, _SilenceState] = {}
        self._correlations: dict[_Key, _CorrelationState] = {}
        # The subject registry for absence and inactivity: device -> (the labels the scope was
        # matched against, the watches that apply).  Matching once per device keeps each
        # reading's update O(1) in the number of watcher rules that do not apply to it.
        self._watches: dict[str, tuple[Mapping[str, str], tuple[_Watch, ...]]] = {}
        # Count resolutions and silence deadlines.  Each state has at most one live entry,
        # and a deadline that moved later is re-queued when its old entry pops, so a device
        # reporting every second does not push an entry per reading.
        self._timers: list[tuple[int, str, str]] = []
        self._readings = 0
        self._scoped: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._event_count = 0
        self._evaluations = 0
        self._late = 0

    def adopt(
        self,
        rule_id: str,
        subject: Subject,
        *,
        firing: bool,
        since_ms: int,
        last_ts_ms: int,
        value: float | None = None,
        event_kind: str = "",
    ) -> bool:
        """Take back an alert the hub holds open but this engine has no state for.

        After a crash the engine resumes from its last snapshot and may not know of an alert
        that started after it; without its state a firing threshold would never clear and a
        pending one would start its ``for`` anew.  Thresholds and event rules are taken back;
        other kinds rebuild their state from the readings that follow.

        Returns:
            Whether the alert was adopted.
        """
        rule = self._rules.get(rule_id)
        key = (rule_id, subject.device)
        if isinstance(rule, ThresholdRule) and key not in self._thresholds:
            level = rule.breach(value) if value is not None else None
            if level is None:
                level = rule.above if rule.above is not None else rule.below
            state = AlertState.FIRING if firing or rule.for_ms == 0 else AlertState.PENDING
            self._thresholds[key] = _ThresholdState(
                state, since_ms, last_ts_ms, level if level is not None else float("nan")
            )
            return True
        if isinstance(rule, EventRule) and firing and key not in self._events:
            deadline = None
            if rule.auto_resolve_ms is not None:
                deadline = last_ts_ms + rule.auto_resolve_ms
                heapq.heappush(self._deadlines, (deadline, rule.id, subject.device))
            self._events[key] = _EventState(subject, event_kind, since_ms, last_ts_ms, deadline)
            return True
        return False

    def forget_scopes(self) -> None:
        """Match scopes anew: subjects' labels changed (a device moved to another place)."""
        self._scoped.clear()

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
            rules = self._in_scope(metric, subject)
            if not rules or not math.isfinite(value):
                continue
            for rule in rules:
                self._evaluations += 1
                if isinstance(rule, CorrelationRule):
                    met = [
                        i
                        for i, c in enumerate(rule.conditions)
                        if c.metric == metric and c.breach(value)
                    ]
                    self._correlate(rule, subject, ts_ms, met, out)
                    continue
                transition = self._metric(rule, subject, ts_ms, value)
                if transition is not None:
                    out.append(transition)
        if self._rules.watchers:
            self._touch(subject, ts_ms, None, None, out)
        return out

    def _in_scope(self, metric: str, subject: Subject) -> tuple[Any, ...]:
        """The rules on ``metric`` whose scope includes ``subject``, worked out once per device.

        A device's labels do not change while the engine runs, so the scope checks need not be
        repeated for every reading.
        """
        key = (metric, subject.device)
        rules = self._scoped.get(key)
        if rules is None:
            rules = tuple(
                rule
                for rule in self._rules.rules_for_metric(metric)
                if rule.scope.matches(subject.device, subject.labels)
            )
            self._scoped[key] = rules
        return rules

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
                if isinstance(rule, EventRule):
                    out.extend(self._event(rule, subject, ts_ms, kind, data))
                elif isinstance(rule, CountRule):
                    self._count(rule, subject, ts_ms, kind, data, out)
                else:
                    met = [
                        i
                        for i, c in enumerate(rule.conditions)
                        if c.event is not None
                        and kind in c.event.kinds
                        and matches_fields(data, c.event.data)
                    ]
                    self._correlate(rule, subject, ts_ms, met, out)
        if self._rules.watchers:
            self._touch(subject, ts_ms, kind, data, out)
        return out

    def tick(self, now_ms: int) -> list[Transition]:
        """Let time pass to ``now_ms``: the transitions that need no data to happen.

        Resolves event alerts whose ``auto_resolve`` deadline has passed and count alerts whose
        window no longer holds enough events; fires absence and inactivity alerts whose subject
        has been quiet too long.

        Returns:
            The transitions, event resolutions first, then the others in deadline order, each
            stamped with its deadline.
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
        while self._timers and self._timers[0][0] <= now_ms:
            due, rule_id, subject_key = heapq.heappop(self._timers)
            key = (rule_id, subject_key)
            rule = self._rules.get(rule_id)
            if isinstance(rule, CountRule):
                self._count_timer(rule, key, due, out)
            elif isinstance(rule, AbsenceRule | InactivityRule):
                self._silence_timer(rule, key, due, out)
            elif isinstance(rule, CorrelationRule):
                self._correlation_timer(rule, key, due, out)
        return out

    def active(self) -> list[ActiveAlert]:
        """Alerts currently pending or firing, ordered by rule id then subject key."""
        return active_alerts(self._state())

    def statistics(self) -> EngineStatistics:
        """A snapshot of the engine's counters."""
        return EngineStatistics(
            readings=self._readings,
            events=self._event_count,
            evaluations=self._evaluations,
            late=self._late,
            active=len(self._thresholds) + len(self._events) + self._firing_others(),
        )

    def snapshot(self) -> bytes:
        """The evaluation state as bytes, for :meth:`restore` after a restart.

        It holds every pending and firing alert, ``for`` timer, window, count, baseline, watched
        silence and correlation, with the subjects they are about and a fingerprint of each
        rule that has state; not the rules themselves, nor the counters of :meth:`statistics`.
        The bytes are JSON (see :mod:`rules._snapshot`): restoring them cannot run code.
        """
        from rules._snapshot import encode_state  # noqa: PLC0415 - it imports this module

        return encode_state(self._rules, self._state())

    def restore(self, blob: bytes) -> RestoreReport:
        """Replace the evaluation state with the one in ``blob`` (from :meth:`snapshot`).

        The states of rules that were removed, or whose definition changed, are dropped: a
        changed rule starts fresh.  Everything else goes on as if the engine had never stopped:
        a pending threshold fires at its original deadline, a window keeps its events.  On
        error the engine is left as it was.

        Returns:
            How many states were restored and dropped, and the rules whose states were dropped.

        Raises:
            SnapshotError: ``blob`` is not a snapshot, is corrupt or has another format version.
        """
        from rules._snapshot import decode_state  # noqa: PLC0415 - it imports this module

        state, report = decode_state(self._rules, blob)
        self._adopt(state)
        return report

    def _state(self) -> EngineState:
        return EngineState(
            thresholds=self._thresholds,
            events=self._events,
            rates=self._rates,
            flats=self._flats,
            anomalies=self._anomalies,
            counts=self._counts,
            silences=self._silences,
            correlations=self._correlations,
        )

    def _adopt(self, state: EngineState) -> None:
        self._thresholds = state.thresholds
        self._events = state.events
        self._rates = state.rates
        self._flats = state.flats
        self._anomalies = state.anomalies
        self._counts = state.counts
        self._silences = state.silences
        self._correlations = state.correlations
        # Every state with a deadline or a timer has exactly one live heap entry, the one its
        # deadline_ms or timer_ms names; the others in the heaps were stale.  Rebuilt from the
        # states, the heaps pop in the same order as before.
        self._deadlines = [
            (s.deadline_ms, *key) for key, s in self._events.items() if s.deadline_ms is not None
        ]
        heapq.heapify(self._deadlines)
        timed: tuple[Mapping[_Key, _CountState | _SilenceState | _CorrelationState], ...] = (
            self._counts,
            self._silences,
            self._correlations,
        )
        self._timers = [
            (s.timer_ms, *key)
            for table in timed
            for key, s in table.items()
            if s.timer_ms is not None
        ]
        heapq.heapify(self._timers)
        # Built again from the silence states at each device's next activity.
        self._watches = {}

    def _firing_others(self) -> int:
        states: tuple[Mapping[_Key, Any], ...] = (
            self._rates,
            self._flats,
            self._anomalies,
            self._counts,
            self._silences,
            self._correlations,
        )
        return sum(1 for table in states for state in table.values() if state.firing)

    def _metric(
        self,
        rule: ThresholdRule | RateOfChangeRule | FlatLineRule | AnomalyRule,
        subject: Subject,
        ts_ms: int,
        value: float,
    ) -> Transition | None:
        match rule:
            case ThresholdRule():
                return self._threshold(rule, subject, ts_ms, value)
            case RateOfChangeRule():
                return self._rate(rule, subject, ts_ms, value)
            case FlatLineRule():
                return self._flat(rule, subject, ts_ms, value)
            case AnomalyRule():
                return self._anomaly(rule, subject, ts_ms, value)

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

    # -- rate of change ---------------------------------------------------------------------

    def _rate(
        self, rule: RateOfChangeRule, subject: Subject, ts_ms: int, value: float
    ) -> Transition | None:
        key = (rule.id, subject.device)
        state = self._rates.get(key)
        if state is None:
            self._rates[key] = _RateState(subject, collections.deque([(ts_ms, value)]))
            return None
        samples = state.samples
        if ts_ms <= samples[-1][0]:
            self._late += 1  # an equal timestamp would make a rate out of nothing
            return None
        samples.append((ts_ms, value))
        state.subject = subject
        # Keep one sample at or before the window's start: the reference the rate is taken from.
        horizon = ts_ms - rule.window_ms
        while len(samples) > 2 and samples[1][0] <= horizon:  # noqa: PLR2004 - ref + newest
            samples.popleft()
        ref_ts, ref_value = samples[0]
        if ref_ts > horizon:
            return None  # not a full window of history yet
        rate = (value - ref_value) * _MINUTE_MS / (ts_ms - ref_ts)
        if state.firing:
            state.count += 1
            if rule.breach(rate):
                return None
            state.firing = False
            entered = AlertState.RESOLVED
        elif rule.breach(rate) and (rule.schedule is None or rule.schedule.contains(ts_ms)):
            state.firing, state.since_ms, state.count = True, ts_ms, 1
            entered = AlertState.FIRING
        else:
            return None
        fields = {
            "value": value,
            "metric": rule.metric,
            "rate": rate,
            "threshold": rule.max_per_minute,
        }
        return _transition(rule, subject, entered, ts_ms, state.since_ms, fields, value=value)

    # -- flat line --------------------------------------------------------------------------

    def _flat(
        self, rule: FlatLineRule, subject: Subject, ts_ms: int, value: float
    ) -> Transition | None:
        key = (rule.id, subject.device)
        state = self._flats.get(key)
        if state is None:
            self._flats[key] = _FlatState(subject, value, ts_ms, ts_ms)
            return None
        if ts_ms < state.last_ts_ms:
            self._late += 1
            return None
        state.last_ts_ms = ts_ms
        state.subject = subject
        if abs(value - state.reference) > rule.tolerance:
            was_firing, since_ms = state.firing, state.since_ms
            # The value moved: the stuck period (if any) ends and a new one may start here.
            state.reference, state.since_ms, state.count, state.firing = value, ts_ms, 1, False
            if not was_firing:
                return None
            entered = AlertState.RESOLVED
        else:
            state.count += 1
            if state.firing or ts_ms - state.since_ms < rule.for_ms:
                return None
            state.firing = True
            since_ms = state.since_ms
            entered = AlertState.FIRING
        fields = {
            "value": value,
            "metric": rule.metric,
            "stuck_min": (ts_ms - since_ms) / _MINUTE_MS,
        }
        return _transition(rule, subject, entered, ts_ms, since_ms, fields, value=value)

    # -- anomaly ----------------------------------------------------------------------------

    def _anomaly(
        self, rule: AnomalyRule, subject: Subject, ts_ms: int, value: float
    ) -> Transition | None:
        key = (rule.id, subject.device)
        state = self._anomalies.get(key)
        if state is None:
            self._anomalies[key] = _AnomalyState(subject, ts_ms, value)
            return None
        if ts_ms < state.last_ts_ms:
            self._late += 1  # a baseline fed out of order would not be the same on replay
            return None
        state.last_ts_ms = ts_ms
        state.subject = subject
        transition = None
        mean = state.mean
        zscore = rule.zscore(value, mean, state.var) if state.n >= rule.warmup else None
        if zscore is not None:
            breach = rule.breach(zscore)
            entered = None
            if state.firing:
                state.count += 1
                if not breach:
                    state.firing = False
                    entered = AlertState.RESOLVED
            elif breach and (rule.schedule is None or rule.schedule.contains(ts_ms)):
                state.firing, state.since_ms, state.count = True, ts_ms, 1
                entered = AlertState.FIRING
            if entered is not None:
                fields = {"value": value, "metric": rule.metric, "mean": mean, "zscore": zscore}
                transition = _transition(
                    rule, subject, entered, ts_ms, state.since_ms, fields, value=value
                )
        # EWMA mean and variance (West's incremental form).  Until 1/n drops below alpha the
        # weight is 1/n, an exact running mean, so the first reading does not bias the baseline.
        if zscore is not None:
            value = rule.clip(value, mean, state.var)
        state.n += 1
        alpha = max(rule.alpha, 1.0 / state.n)
        diff = value - mean
        step = alpha * diff
        state.mean = mean + step
        state.var = (1.0 - alpha) * (state.var + diff * step)
        return transition

    # -- count in a window ------------------------------------------------------------------

    def _count(
        self,
        rule: CountRule,
        subject: Subject,
        ts_ms: int,
        kind: str,
        data: Mapping[str, Any],
        out: list[Transition],
    ) -> None:
        key = (rule.id, subject.device)
        state = self._counts.get(key)
        if state is not None:
            if ts_ms < state.last_ts_ms:
                self._late += 1
                return
            if state.firing and state.resolve_ms <= ts_ms:
                # The alert ended before this event and tick() has not run yet.
                state.firing = False
                out.append(self._count_transition(rule, state, AlertState.RESOLVED))
        if not rule.counts(ts_ms, data):
            return
        if state is None:
            state = _CountState(subject, kind, collections.deque(maxlen=rule.count), ts_ms)
            self._counts[key] = state
        times = state.times
        times.append(ts_ms)
        state.last_ts_ms, state.subject, state.event_kind = ts_ms, subject, kind
        full = len(times) == rule.count and ts_ms - times[0] < rule.window_ms
        if rule.auto_resolve_ms is not None:
            resolve_ms = ts_ms + rule.auto_resolve_ms
        else:
            # The oldest of the last `count` events leaves the window then, if none follow.
            resolve_ms = times[0] + rule.window_ms
        if state.firing:
            state.total += 1
            state.resolve_ms = max(state.resolve_ms, resolve_ms)
            return
        if not full:
            return
        state.firing, state.since_ms, state.total = True, times[0], rule.count
        state.resolve_ms = resolve_ms
        state.timer_ms = resolve_ms
        heapq.heappush(self._timers, (resolve_ms, rule.id, subject.device))
        out.append(self._count_transition(rule, state, AlertState.FIRING))

    def _count_timer(self, rule: CountRule, key: _Key, due: int, out: list[Transition]) -> None:
        state = self._counts.get(key)
        if state is None or not state.firing or state.timer_ms != due:
            return  # stale: resolved since, and perhaps firing again with another entry
        if state.resolve_ms > due:
            state.timer_ms = state.resolve_ms
            heapq.heappush(self._timers, (state.resolve_ms, *key))
            return
        state.firing, state.timer_ms = False, None
        out.append(self._count_transition(rule, state, AlertState.RESOLVED))

    def _count_transition(
        self, rule: CountRule, state: _CountState, entered: AlertState
    ) -> Transition:
        # A count fires on its completing event and resolves at the computed resolve time.
        ts_ms = state.last_ts_ms if entered is AlertState.FIRING else state.resolve_ms
        if entered is AlertState.RESOLVED:
            state.timer_ms = None
        fields = {"event_kind": state.event_kind, "count": state.total}
        return _transition(
            rule,
            state.subject,
            entered,
            ts_ms,
            state.since_ms,
            fields,
            event_kind=state.event_kind,
        )

    # -- correlation ------------------------------------------------------------------------

    def _correlate(
        self,
        rule: CorrelationRule,
        subject: Subject,
        ts_ms: int,
        met: list[int],
        out: list[Transition],
    ) -> None:
        """Record that conditions ``met`` (indexes) occurred at ``subject``'s place at ``ts_ms``."""
        if not met:
            return
        place = _place_key(rule.place_by, subject)
        if place is None:
            return  # no place in the registry: it cannot be correlated with anything
        key = (rule.id, place)
        state = self._correlations.get(key)
        if state is None:
            state = _CorrelationState(Subject(place, subject.labels), [None] * len(rule.conditions))
            self._correlations[key] = state
        if state.firing and state.resolve_ms <= ts_ms:
            # Out of the window before this occurrence and tick() has not run yet.
            self._end_correlation(rule, state, out)
        state.subject = Subject(place, subject.labels)
        span = self._record(state.seen, met, ts_ms)
        if span is None or span[1] - span[0] >= rule.window_ms:
            return
        oldest, newest = span
        # The pair holds until the oldest occurrence leaves the window.
        state.resolve_ms = oldest + rule.window_ms
        if state.firing:
            state.count += 1
            return
        if rule.schedule is not None and not rule.schedule.contains(newest):
            return
        state.firing, state.since_ms, state.fired_ms, state.count = True, oldest, newest, 1
        if state.timer_ms is None:
            state.timer_ms = state.resolve_ms
            heapq.heappush(self._timers, (state.resolve_ms, *key))
        out.append(_transition(rule, state.subject, AlertState.FIRING, newest, oldest, {}))

    def _record(self, seen: list[int | None], met: list[int], ts_ms: int) -> tuple[int, int] | None:
        """Mark conditions ``met`` as seen at ``ts_ms``; (oldest, newest) once all were seen."""
        for index in met:
            previous = seen[index]
            if previous is not None and ts_ms < previous:
                self._late += 1  # a late sample must not move an occurrence back in time
                continue
            seen[index] = ts_ms
        times = [t for t in seen if t is not None]
        if len(times) < len(seen):
            return None
        return min(times), max(times)

    def _end_correlation(
        self, rule: CorrelationRule, state: _CorrelationState, out: list[Transition]
    ) -> None:
        state.firing = False
        ts_ms = state.resolve_ms
        out.append(_transition(rule, state.subject, AlertState.RESOLVED, ts_ms, state.since_ms, {}))

    def _correlation_timer(
        self, rule: CorrelationRule, key: _Key, due: int, out: list[Transition]
    ) -> None:
        state = self._correlations.get(key)
        if state is None or state.timer_ms != due:
            return
        state.timer_ms = None
        if not state.firing:
            return
        if state.resolve_ms > due:
            state.timer_ms = state.resolve_ms
            heapq.heappush(self._timers, (state.resolve_ms, *key))
            return
        self._end_correlation(rule, state, out)

    # -- absence and inactivity -------------------------------------------------------------

    def _touch(
        self,
        subject: Subject,
        ts_ms: int,
        kind: str | None,
        data: Mapping[str, Any] | None,
        out: list[Transition],
    ) -> None:
        """Record activity of ``subject`` (an event when ``kind`` is given, else a reading)."""
        cached = self._watches.get(subject.device)
        if cached is None or cached[0] is not subject.labels:
            # First sight of the device, or the hub re-registered it with new labels.
            cached = (subject.labels, self._watches_for(subject, ts_ms))
            self._watches[subject.device] = cached
        for rule, state in cached[1]:
            if isinstance(rule, InactivityRule) and (
                kind is None or data is None or not rule.is_activity(kind, data)
            ):
                continue
            if ts_ms < state.last_ts_ms:
                continue  # older than what the state already knows: no news of life
            self._evaluations += 1
            armed = state.timer_ms is not None  # else first activity (or firing, below)
            if armed and ts_ms - state.last_ts_ms > state.for_ms:
                # The silence ran out before this activity but tick() had not run yet (a
                # replay, or a stream with gaps): report the gap it had, as live data would.
                fire_ms = state.last_ts_ms + state.for_ms
                if rule.schedule is None or rule.schedule.contains(fire_ms):
                    state.firing, state.fired_ms = True, fire_ms
                    out.append(self._silence_transition(rule, state, fire_ms))
            state.subject = _silence_subject(rule, subject, state.subject.device)
            if state.firing:
                state.firing = False
                out.append(self._silence_transition(rule, state, ts_ms, resolved=True))
            state.last_ts_ms = ts_ms
            if state.timer_ms is None:
                state.timer_ms = ts_ms + state.for_ms
                heapq.heappush(self._timers, (state.timer_ms, rule.id, state.subject.device))

    def _watches_for(self, subject: Subject, ts_ms: int) -> tuple[_Watch, ...]:
        watches: list[_Watch] = []
        for rule in self._watchers_of(subject):
            subject_key = _silence_key(rule, subject)
            if subject_key is None:
                continue  # a device with no unit in the registry cannot show life at one
            key = (rule.id, subject_key)
            state = self._silences.get(key)
            if state is None:
                if isinstance(rule, AbsenceRule):
                    for_ms = rule.silence_ms(subject.labels)
                else:
                    for_ms = rule.for_ms
                # Seen for the first time.  The timer is queued by the first activity in
                # _touch: for inactivity that is an activity event, not this reading, so a
                # unit is watched only once someone has been seen moving in it.
                subject_at = _silence_subject(rule, subject, subject_key)
                state = _SilenceState(subject_at, for_ms, ts_ms, timer_ms=None)
                self._silences[key] = state
            watches.append((rule, state))
        return tuple(watches)

    def _watchers_of(self, subject: Subject) -> list[AbsenceRule | InactivityRule]:
        """The absence and inactivity rules whose scope includes ``subject``, in rule order."""
        return [r for r in self._rules.watchers if r.scope.matches(subject.device, subject.labels)]

    def _silence_timer(
        self, rule: AbsenceRule | InactivityRule, key: _Key, due: int, out: list[Transition]
    ) -> None:
        state = self._silences.get(key)
        if state is None or state.firing or state.timer_ms != due:
            return
        deadline = state.last_ts_ms + state.for_ms
        if deadline > due:
            # Activity since the entry was queued moved the deadline; queue it again.
            state.timer_ms = deadline
            heapq.heappush(self._timers, (deadline, *key))
            return
        if rule.schedule is not None and not rule.schedule.contains(due):
            # Schedules have minute resolution, so looking again at the next minute finds the
            # first instant inside the window without computing calendars here.
            state.timer_ms = (due // _MINUTE_MS + 1) * _MINUTE_MS
            heapq.heappush(self._timers, (state.timer_ms, *key))
            return
        state.firing, state.fired_ms, state.timer_ms = True, due, None
        out.append(self._silence_transition(rule, state, due))

    def _silence_transition(
        self,
        rule: AbsenceRule | InactivityRule,
        state: _SilenceState,
        ts_ms: int,
        *,
        resolved: bool = False,
    ) -> Transition:
        # The silence started at the last activity; that is also what makes the firing period
        # unique, since a new period needs new activity first.
        entered = AlertState.RESOLVED if resolved else AlertState.FIRING
        fields = {"silent_min": (ts_ms - state.last_ts_ms) / _MINUTE_MS}
        return _transition(rule, state.subject, entered, ts_ms, state.last_ts_ms, fields)


def active_alerts(state: EngineState) -> list[ActiveAlert]:
    """The pending and firing alerts of ``state``, ordered by rule id then subject key."""
    firing = AlertState.FIRING
    alerts = [
        ActiveAlert(key[0], key[1], s.state, s.since_ms, s.last_ts_ms, s.count)
        for key, s in state.thresholds.items()
    ]
    alerts.extend(
        ActiveAlert(key[0], key[1], firing, s.since_ms, s.last_ts_ms, s.count)
        for key, s in state.events.items()
    )
    alerts.extend(
        ActiveAlert(key[0], key[1], firing, r.since_ms, r.samples[-1][0], r.count)
        for key, r in state.rates.items()
        if r.firing
    )
    alerts.extend(
        ActiveAlert(key[0], key[1], firing, f.since_ms, f.last_ts_ms, f.count)
        for key, f in state.flats.items()
        if f.firing
    )
    alerts.extend(
        ActiveAlert(key[0], key[1], firing, a.since_ms, a.last_ts_ms, a.count)
        for key, a in state.anomalies.items()
        if a.firing
    )
    alerts.extend(
        ActiveAlert(key[0], key[1], firing, c.since_ms, c.last_ts_ms, c.total)
        for key, c in state.counts.items()
        if c.firing
    )
    alerts.extend(
        ActiveAlert(key[0], key[1], firing, c.since_ms, c.fired_ms, c.count)
        for key, c in state.correlations.items()
        if c.firing
    )
    alerts.extend(
        ActiveAlert(key[0], key[1], firing, q.fired_ms, q.last_ts_ms, 1)
        for key, q in state.silences.items()
        if q.firing
    )
    alerts.sort(key=lambda a: (a.rule_id, a.device))
    return alerts


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


def _place_key(place_by: tuple[str, ...], subject: Subject) -> str | None:
    """``place:`` and the subject's ``place_by`` labels joined by "/", or None if one is missing."""
    parts: list[str] = []
    for label in place_by:
        part = subject.labels.get(label)
        if not part:
            return None
        parts.append(part)
    return PLACE_KEY_PREFIX + "/".join(parts)


def _silence_key(rule: AbsenceRule | InactivityRule, subject: Subject) -> str | None:
    """The key a silence is tracked under: the device, or the place for inactivity."""
    if isinstance(rule, AbsenceRule):
        return subject.device
    return _place_key(rule.place_by, subject)


def _silence_subject(
    rule: AbsenceRule | InactivityRule, subject: Subject, subject_key: str
) -> Subject:
    # An inactivity alert is about a place: it carries the place key as its device, and the
    # labels of the device last active there (which name the place).
    if isinstance(rule, AbsenceRule):
        return subject
    return Subject(subject_key, subject.labels)


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
