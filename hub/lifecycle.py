"""The alert lifecycle as a pure state machine on injected time.

``pending → firing → acknowledged → resolved``, with three overlays that hold notifications
back without changing the state: *silenced* (an operator's silence or a maintenance window),
*inhibited* (a firing source alert such as a dead gateway) and *flapping* (an alert that fires
and resolves too often is notified once when it starts flapping and once when it stops).

:class:`AlertBook` takes the rules engine's transitions, operator actions and the passing of
time, and answers with :class:`Outcome` objects: the alerts and silences that changed (for the
caller to persist) and the :class:`Dispatch` objects to deliver.  It does no I/O, so tests and
``anju rules test --replay`` run it on virtual time, and the hub persists its state to survive a
restart.

Escalation follows the alert's :class:`~hub.routing.Route`: step 0 (the grid's worker) when the
alert fires (after the group wait unless it is life-safety), each later step after the previous
step's wait unless acknowledged, then repeats of the whole chain's recipients up to the route's
limit.  An acknowledged alert that is not resolved within the acknowledgement timeout fires
again and resumes its escalation.  Everyone notified of a firing is notified of its resolve.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import hashlib
import heapq
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import orjson

from hub.errors import HubError
from hub.routing import EVERY_TIER, GRID_WORKER, AlertingSettings, Flapping, Matcher, Route
from hub.store import AlertRecord


class LifecycleError(HubError, LookupError):
    """An operator action that cannot apply (unknown alert, wrong state)."""


class Status(enum.StrEnum):
    """Where an alert is in its lifecycle."""

    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


ACTIVE = frozenset({Status.PENDING, Status.FIRING, Status.ACKNOWLEDGED})


class TransitionLike(Protocol):
    """What the rules engine reports (see :class:`rules.Transition`)."""

    @property
    def rule_id(self) -> str: ...  # noqa: D102
    @property
    def device(self) -> str: ...  # noqa: D102
    @property
    def state(self) -> str: ...  # noqa: D102
    @property
    def ts_ms(self) -> int: ...  # noqa: D102
    @property
    def since_ms(self) -> int: ...  # noqa: D102
    @property
    def severity(self) -> str: ...  # noqa: D102
    @property
    def issue_class(self) -> str: ...  # noqa: D102
    @property
    def summary(self) -> str: ...  # noqa: D102
    @property
    def message(self) -> str: ...  # noqa: D102
    @property
    def labels(self) -> Mapping[str, str]: ...  # noqa: D102
    @property
    def value(self) -> float | None: ...  # noqa: D102


class Directory(Protocol):
    """Who belongs to a tier for a given alert."""

    def members(self, tier: str, labels: Mapping[str, str]) -> tuple[str, ...]:
        """Person ids of ``tier`` for an alert with these labels."""
        ...


def alert_id(rule_id: str, subject: str, since_ms: int) -> str:
    """A stable id for one firing period, so a replay or restart names it the same."""
    return hashlib.sha256(f"{rule_id}|{subject}|{since_ms}".encode()).hexdigest()[:16]


@dataclasses.dataclass(slots=True)
class Comment:
    """A note on an alert by an operator."""

    ts_ms: int
    by: str
    text: str


@dataclasses.dataclass(slots=True, kw_only=True)
class Alert:
    """One firing period of one rule for one subject, with its lifecycle and escalation state."""

    id: str
    rule_id: str
    subject: str
    severity: str
    issue_class: str
    summary: str
    message: str
    labels: dict[str, str]
    value: float | None
    status: Status
    started_ms: int
    updated_ms: int
    route: str
    life_safety: bool
    firing_ms: int | None = None
    acked_ms: int | None = None
    acked_by: str | None = None
    resolved_ms: int | None = None
    resolved_by: str | None = None  # None: the condition cleared
    assignee: str | None = None
    comments: list[Comment] = dataclasses.field(default_factory=list)
    step: int = -1  # the last escalation step notified
    repeats: int = 0
    retriggers: int = 0
    due_ms: int | None = None  # when the next step, repeat, ack timeout or firing is due
    held: str | None = None  # why a due notification waits: silenced, inhibited, flapping
    notified: list[str] = dataclasses.field(default_factory=list)  # person ids, of a firing
    first_notified_ms: int | None = None
    history: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        """One active alert per (rule, subject)."""
        return (self.rule_id, self.subject)

    def note(self, ts_ms: int, what: str, detail: str = "") -> None:
        """Add to the audit trail (who acknowledged what and when)."""
        self.history.append((ts_ms, what, detail))
        self.updated_ms = max(self.updated_ms, ts_ms)

    def record(self) -> AlertRecord:
        """The snapshot notifiers render."""
        return AlertRecord(
            id=self.id,
            rule_id=self.rule_id,
            device=self.subject,
            state=self.status.value,
            severity=self.severity,
            issue_class=self.issue_class,
            summary=self.summary,
            message=self.message,
            labels=dict(self.labels),
            value=self.value,
            started_ms=self.started_ms,
            firing_ms=self.firing_ms,
            resolved_ms=self.resolved_ms,
            updated_ms=self.updated_ms,
        )

    def to_json(self) -> bytes:
        """The JSON the hub's store keeps (orjson writes dataclasses and enums as they are)."""
        return orjson.dumps(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the API's)."""
        data: dict[str, Any] = orjson.loads(self.to_json())
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """Inverse of :meth:`to_dict`."""
        fields = dict(data)
        fields["status"] = Status(fields["status"])
        fields["comments"] = [Comment(**c) for c in fields.get("comments", [])]
        fields["history"] = [tuple(h) for h in fields.get("history", [])]
        return cls(**fields)


@dataclasses.dataclass(slots=True, kw_only=True)
class Silence:
    """Holds notifications of matching alerts until it ends (or its alert resolves)."""

    id: str
    created_by: str
    comment: str
    starts_ms: int
    ends_ms: int | None = None  # None with alert_id: until that alert resolves
    match: dict[str, list[str]] | None = None
    alert_id: str | None = None
    expired_ms: int | None = None

    def active(self, now_ms: int) -> bool:
        """Whether it silences anything at ``now_ms``."""
        if self.expired_ms is not None or now_ms < self.starts_ms:
            return False
        return self.ends_ms is None or now_ms < self.ends_ms

    def covers(self, alert: Alert) -> bool:
        """Whether ``alert`` is one it silences."""
        if self.alert_id is not None:
            return alert.id == self.alert_id
        return self.match is not None and Matcher(labels=self.match).matches(alert.labels)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for the hub's store."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Silence:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclasses.dataclass(slots=True, kw_only=True)
class Flap:
    """Flapping state of one (rule, subject)."""

    rule_id: str
    subject: str
    changes: list[int] = dataclasses.field(default_factory=list)
    flapping: bool = False
    since_ms: int = 0
    notified: list[str] = dataclasses.field(default_factory=list)
    last_alert: AlertRecord | None = None  # the newest alert of the key, for the end notice

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for the hub's store."""
        data: dict[str, Any] = orjson.loads(orjson.dumps(self))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Flap:
        """Inverse of :meth:`to_dict`."""
        fields = dict(data)
        if fields.get("last_alert") is not None:
            fields["last_alert"] = AlertRecord(**fields["last_alert"])
        return cls(**fields)

    def due_ms(self, settings: Flapping) -> int:
        """When it may end: flapping after ``quiet``, remembered changes after ``window``."""
        last_change = self.changes[-1] if self.changes else self.since_ms
        return last_change + (settings.quiet if self.flapping else settings.window)


@dataclasses.dataclass(frozen=True, slots=True)
class Dispatch:
    """A notification to deliver: one transition of one or more alerts (a group) to people.

    ``transition`` names it uniquely within each alert (``firing``, ``step:2``, ``repeat:1``,
    ``retrigger:1``, ``resolved``, ``flapping``, ``flapping-end``), so (alert, transition,
    recipient, channel) is the key that is never sent twice.  ``kind`` is what it says:
    ``firing`` or ``resolved`` (flapping notices say ``flapping`` and ``flapping-end``).
    """

    kind: str
    transition: str
    alerts: tuple[AlertRecord, ...]
    recipients: tuple[str, ...]
    urgent: bool
    suppressed: tuple[str, ...] = ()  # rate-limited recipients, recorded but not sent


@dataclasses.dataclass(slots=True)
class Outcome:
    """What an input changed: persist ``alerts``, ``silences`` and ``flaps``; deliver the rest."""

    alerts: dict[str, Alert] = dataclasses.field(default_factory=dict)
    silences: dict[str, Silence] = dataclasses.field(default_factory=dict)
    flaps: dict[tuple[str, str], Flap] = dataclasses.field(default_factory=dict)
    dispatches: list[Dispatch] = dataclasses.field(default_factory=list)

    def touch(self, alert: Alert) -> None:
        """Mark ``alert`` changed."""
        self.alerts[alert.id] = alert

    def merge(self, other: Outcome) -> None:
        """Add another outcome's changes."""
        self.alerts.update(other.alerts)
        self.silences.update(other.silences)
        self.flaps.update(other.flaps)
        self.dispatches.extend(other.dispatches)


@dataclasses.dataclass(frozen=True, slots=True)
class SystemTransition:
    """A transition the hub raises itself (a gateway that went silent), shaped as the engine's."""

    rule_id: str
    device: str
    state: str
    ts_ms: int
    since_ms: int
    severity: str
    issue_class: str
    summary: str
    message: str
    labels: Mapping[str, str]
    value: float | None = None
    fire_at_ms: int | None = None  # for a pending one: when it fires unless resolved first


class AlertBook:
    """All alert state of one hub, advanced by transitions, operator actions and time."""

    def __init__(
        self,
        settings: AlertingSettings,
        directory: Directory,
        *,
        rule_kinds: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self._rule_kinds = dict(rule_kinds or {})
        self._routes = {route.name: route for route in settings.routes}
        self.active: dict[tuple[str, str], Alert] = {}
        self.by_id: dict[str, Alert] = {}  # active alerts by id
        self.silences: dict[str, Silence] = {}
        self.flaps: dict[tuple[str, str], Flap] = {}
        self._group_last: dict[tuple[str, str], int] = {}
        self._group_pending: dict[tuple[str, str], int] = {}  # the group's next first notice
        self._due: list[tuple[int, str]] = []  # (due_ms, alert id), with stale entries
        self._queued: dict[str, int] = {}  # alert id -> the due time last pushed
        self._held: set[str] = set()
        self._flap_due: list[tuple[int, str, str]] = []  # (when it may end, rule, subject)
        self._sent: dict[str, collections.deque[int]] = {}  # rate limit: send times per person
        self.counters: collections.Counter[str] = collections.Counter()

    # -- state from the store ---------------------------------------------------------------

    def load(
        self, alerts: Iterable[Alert], silences: Iterable[Silence], flaps: Iterable[Flap]
    ) -> None:
        """Take back persisted state after a restart."""
        for alert in alerts:
            if alert.status in ACTIVE:
                self.active[alert.key] = alert
                self.by_id[alert.id] = alert
                if alert.first_notified_ms is not None:
                    group = self._group(alert)
                    self._group_last[group] = max(
                        self._group_last.get(group, 0), alert.first_notified_ms
                    )
        out = Outcome()
        for alert in self.by_id.values():
            out.touch(alert)
            if alert.status is Status.FIRING and alert.step < 0 and alert.due_ms is not None:
                self._group_pending[self._group(alert)] = alert.due_ms
        self._schedule(out)
        for silence in silences:
            self.silences[silence.id] = silence
        for flap in flaps:
            self.flaps[(flap.rule_id, flap.subject)] = flap
            due = flap.due_ms(self.settings.flapping)
            heapq.heappush(self._flap_due, (due, flap.rule_id, flap.subject))

    # -- inputs -----------------------------------------------------------------------------

    def on_transition(self, t: TransitionLike, now_ms: int) -> Outcome:
        """Apply one transition of the rules engine (or a system transition)."""
        out = Outcome()
        key = (t.rule_id, t.device)
        current = self.active.get(key)
        state = str(t.state)
        if state in {"pending", "firing"}:
            if current is None:
                current = self._open(t, now_ms)
                out.touch(current)
                if state == "firing":
                    self._fire(current, t.ts_ms, now_ms, out)
                else:
                    # A system alert's pending carries when it is due to fire.
                    current.due_ms = getattr(t, "fire_at_ms", None)
            elif state == "firing" and current.status is Status.PENDING:
                current.value = t.value
                current.message = t.message
                self._fire(current, t.ts_ms, now_ms, out)
                out.touch(current)
            elif current.status is not Status.PENDING and t.value is not None:
                current.value = t.value  # the latest value, for the console; nobody is told
        elif current is not None:
            self._close(current, t.ts_ms, now_ms, None, out)
        self._schedule(out)
        out.merge(self.tick(now_ms))
        return out

    def tick(self, now_ms: int) -> Outcome:
        """Let time pass: due steps, repeats, ack timeouts, silences ending, flapping ending."""
        out = Outcome()
        self._end_overlays(now_ms, out)
        for alert_ref in list(self._held):
            held = self.by_id.get(alert_ref)
            if held is None or held.held is None:
                self._held.discard(alert_ref)
            else:
                self._recheck_hold(held, now_ms, out)
        self._schedule(out)
        due_groups: dict[tuple[str, str], list[Alert]] = {}
        while self._due and self._due[0][0] <= now_ms:
            due_ms, alert_ref = heapq.heappop(self._due)
            if self._queued.get(alert_ref) == due_ms:
                del self._queued[alert_ref]
            alert = self.by_id.get(alert_ref)
            if alert is None or alert.due_ms != due_ms:
                continue  # stale: the alert closed or its deadline moved
            if alert.status is Status.FIRING and alert.step < 0 and not alert.life_safety:
                due_groups.setdefault(self._group(alert), []).append(alert)
                continue
            self._advance(alert, now_ms, out)
        for group, members in due_groups.items():
            self._group_pending.pop(group, None)
            self._first_notice(group, members, now_ms, out)
        self._schedule(out)
        return out

    def _end_overlays(self, now_ms: int, out: Outcome) -> None:
        for silence in list(self.silences.values()):
            ends_ms = silence.ends_ms
            if silence.expired_ms is None and ends_ms is not None and now_ms >= ends_ms:
                silence.expired_ms = ends_ms
                out.silences[silence.id] = silence
        # Only flaps whose time may have come; entries that a later change moved are stale.
        while self._flap_due and self._flap_due[0][0] <= now_ms:
            _, rule_id, subject = heapq.heappop(self._flap_due)
            flap = self.flaps.get((rule_id, subject))
            if flap is not None:
                self._flap_maybe_ends((rule_id, subject), flap, now_ms, out)

    def _schedule(self, out: Outcome) -> None:
        # Every change of a deadline is followed by `out.touch`, so the touched alerts are
        # the only ones whose heap entries can be missing; stale entries are skipped on pop.
        for alert in out.alerts.values():
            if alert.due_ms is not None and alert.status in ACTIVE:
                if self._queued.get(alert.id) != alert.due_ms:
                    self._queued[alert.id] = alert.due_ms
                    heapq.heappush(self._due, (alert.due_ms, alert.id))
            else:
                self._queued.pop(alert.id, None)
            if alert.held is not None and alert.status in ACTIVE:
                self._held.add(alert.id)

    def acknowledge(self, alert_ref: str, by: str, now_ms: int, comment: str = "") -> Outcome:
        """Stop the escalation until the acknowledgement times out."""
        alert = self.find(alert_ref)
        if alert.status is Status.ACKNOWLEDGED:
            return Outcome()
        if alert.status is not Status.FIRING:
            raise LifecycleError(
                f"alert {alert.id} is {alert.status}; only a firing alert can be acknowledged"
            )
        alert.status = Status.ACKNOWLEDGED
        alert.acked_ms = now_ms
        alert.acked_by = by
        alert.due_ms = now_ms + self.settings.ack_timeout
        alert.note(now_ms, "acknowledged", by)
        if comment:
            alert.comments.append(Comment(now_ms, by, comment))
        self.counters["acknowledged"] += 1
        out = Outcome()
        out.touch(alert)
        self._schedule(out)
        return out

    def resolve(self, alert_ref: str, by: str, now_ms: int, comment: str = "") -> Outcome:
        """Close an alert by hand (the condition may still hold; a new firing starts anew)."""
        alert = self.find(alert_ref)
        if comment:
            alert.comments.append(Comment(now_ms, by, comment))
        out = Outcome()
        self._close(alert, now_ms, now_ms, by, out)
        self._schedule(out)
        return out

    def assign(self, alert_ref: str, person: str, by: str, now_ms: int) -> Outcome:
        """Name who is dealing with it."""
        alert = self.find(alert_ref)
        alert.assignee = person
        alert.note(now_ms, "assigned", f"{person} by {by}")
        out = Outcome()
        out.touch(alert)
        return out

    def comment(self, alert_ref: str, by: str, text: str, now_ms: int) -> Outcome:
        """Add a comment."""
        alert = self.find(alert_ref)
        alert.comments.append(Comment(now_ms, by, text))
        alert.updated_ms = max(alert.updated_ms, now_ms)
        out = Outcome()
        out.touch(alert)
        return out

    def add_silence(
        self,
        *,
        by: str,
        now_ms: int,
        comment: str = "",
        match: Mapping[str, Iterable[str]] | None = None,
        alert_ref: str | None = None,
        ends_ms: int | None = None,
        starts_ms: int | None = None,
    ) -> tuple[Silence, Outcome]:
        """Silence one alert, or every alert whose labels match ``match``.

        One alert is silenced until ``ends_ms`` or, without an end, until it resolves; a
        silence by labels needs an end.
        """
        if (match is None) == (alert_ref is None):
            raise LifecycleError("silence either one alert or the alerts matching labels")
        target = self.find(alert_ref).id if alert_ref is not None else None
        if target is None and ends_ms is None:
            raise LifecycleError(
                "a silence by labels needs an end; only one alert can be silenced until it resolves"
            )
        silence = Silence(
            id=secrets.token_hex(6),
            created_by=by,
            comment=comment,
            starts_ms=now_ms if starts_ms is None else starts_ms,
            ends_ms=ends_ms,
            match={k: sorted(v) for k, v in match.items()} if match is not None else None,
            alert_id=target,
        )
        self.silences[silence.id] = silence
        out = Outcome()
        out.silences[silence.id] = silence
        out.merge(self.tick(now_ms))
        return silence, out

    def expire_silence(self, silence_id: str, now_ms: int) -> Outcome:
        """End a silence now; held notifications go out."""
        silence = self.silences.get(silence_id)
        if silence is None:
            raise LifecycleError(f"no silence {silence_id}")
        out = Outcome()
        if silence.expired_ms is None:
            silence.expired_ms = now_ms
            out.silences[silence.id] = silence
        out.merge(self.tick(now_ms))
        return out

    def find(self, alert_ref: str) -> Alert:
        """An active alert by id or unique id prefix."""
        alert = self.by_id.get(alert_ref)
        if alert is not None:
            return alert
        found = [a for a in self.by_id.values() if a.id.startswith(alert_ref)] if alert_ref else []
        if len(found) == 1:
            return found[0]
        if not found:
            raise LifecycleError(f"no active alert {alert_ref!r}")
        raise LifecycleError(f"{alert_ref!r} names {len(found)} alerts; give more of the id")

    def next_due_ms(self) -> int | None:
        """When :meth:`tick` next has something to do (held alerts are rechecked each tick)."""
        while self._due:
            due_ms, alert_ref = self._due[0]
            alert = self.by_id.get(alert_ref)
            if alert is not None and alert.due_ms == due_ms:
                break
            heapq.heappop(self._due)
        times = [self._due[0][0]] if self._due else []
        times += [s.ends_ms for s in self.silences.values() if s.expired_ms is None and s.ends_ms]
        if self._flap_due:
            times.append(self._flap_due[0][0])
        return min(times) if times else None

    def has_held(self) -> bool:
        """Whether some alert waits for an overlay to lift (rechecked on every tick)."""
        return bool(self._held)

    def recipients_of(self, alert: Alert) -> tuple[str, ...]:
        """Everyone the alert's route would notify at its first step."""
        route = self._routes[alert.route]
        return self._members(route, 0, alert)

    # -- lifecycle --------------------------------------------------------------------------

    def _open(self, t: TransitionLike, now_ms: int) -> Alert:
        labels = dict(t.labels)
        labels.setdefault("rule_id", t.rule_id)
        labels.setdefault("severity", str(t.severity))
        labels.setdefault("issue_class", str(t.issue_class))
        labels.setdefault("device", t.device)
        labels.setdefault("rule_kind", self._rule_kinds.get(t.rule_id, "system"))
        severity, issue_class = str(t.severity), str(t.issue_class)
        alert = Alert(
            id=alert_id(t.rule_id, t.device, t.since_ms),
            rule_id=t.rule_id,
            subject=t.device,
            severity=severity,
            issue_class=issue_class,
            summary=t.summary,
            message=t.message,
            labels=labels,
            value=t.value,
            status=Status.PENDING,
            started_ms=t.since_ms,
            updated_ms=now_ms,
            route=self.settings.route_for(severity, issue_class).name,
            life_safety=severity in self.settings.life_safety_severities,
        )
        alert.note(now_ms, "pending")
        self.active[alert.key] = alert
        self.by_id[alert.id] = alert
        return alert

    def _fire(self, alert: Alert, ts_ms: int, now_ms: int, out: Outcome) -> None:
        alert.status = Status.FIRING
        alert.firing_ms = ts_ms
        alert.note(now_ms, "firing")
        self.counters["fired"] += 1
        self._flap_change(alert, now_ms, out)
        if alert.life_safety:
            alert.due_ms = now_ms
        else:
            alert.due_ms = self._group_flush_ms(alert, now_ms)

    def _close(self, alert: Alert, ts_ms: int, now_ms: int, by: str | None, out: Outcome) -> None:
        was_firing = alert.status is not Status.PENDING
        alert.status = Status.RESOLVED
        alert.resolved_ms = ts_ms
        alert.resolved_by = by
        alert.due_ms = None
        alert.held = None
        alert.note(now_ms, "resolved" if was_firing else "cancelled", by or "")
        del self.active[alert.key]
        self.by_id.pop(alert.id, None)
        self._held.discard(alert.id)
        out.touch(alert)
        for silence in self.silences.values():
            if silence.alert_id == alert.id and silence.expired_ms is None:
                silence.expired_ms = now_ms
                out.silences[silence.id] = silence
        if not was_firing:
            return
        self.counters["resolved"] += 1
        self._flap_change(alert, now_ms, out)
        # Everyone told of the firing hears of the resolve, acknowledged or silenced or not.
        if alert.notified:
            out.dispatches.append(
                Dispatch(
                    "resolved",
                    "resolved",
                    (alert.record(),),
                    tuple(alert.notified),
                    alert.life_safety,
                )
            )

    def _advance(self, alert: Alert, now_ms: int, out: Outcome) -> None:
        out.touch(alert)
        if alert.status is Status.PENDING:
            self._fire(alert, alert.due_ms or now_ms, now_ms, out)
            if alert.due_ms is not None and alert.due_ms <= now_ms and alert.life_safety:
                self._advance(alert, now_ms, out)
            return
        route = self._routes[alert.route]
        if alert.status is Status.ACKNOWLEDGED:
            # The acknowledgement timed out without a resolve: fire again, same step.
            alert.status = Status.FIRING
            alert.retriggers += 1
            alert.note(now_ms, "re-triggered", "acknowledgement timed out")
            acker = [alert.acked_by] if alert.acked_by in alert.notified else []
            people = tuple(_unique([*self._members(route, max(alert.step, 0), alert), *acker]))
            self._send(alert, f"retrigger:{alert.retriggers}", tuple(people), now_ms, out)
            alert.due_ms = now_ms + route.steps[max(alert.step, 0)].wait
            return
        if self._hold(alert, now_ms, out):
            return
        while True:
            if alert.step + 1 < len(route.steps):
                alert.step += 1
                people = self._members(route, alert.step, alert)
                transition = "firing" if alert.step == 0 else f"step:{alert.step}"
                alert.due_ms = now_ms + route.steps[alert.step].wait
                if not people and alert.step + 1 < len(route.steps):
                    alert.note(now_ms, "step skipped", f"nobody in step {alert.step}")
                    continue  # a step without people must not cost its wait
                if alert.step > 0:
                    alert.note(now_ms, "escalated", f"step {alert.step}")
                    self.counters["escalations"] += 1
                self._send(alert, transition, people, now_ms, out)
                return
            if alert.repeats < route.repeat_limit:
                alert.repeats += 1
                alert.due_ms = now_ms + route.repeat_interval
                alert.note(now_ms, "repeated", str(alert.repeats))
                self._send(alert, f"repeat:{alert.repeats}", tuple(alert.notified), now_ms, out)
                return
            alert.due_ms = None  # the chain is spent; the alert stays open on the console
            return

    def _first_notice(
        self, group: tuple[str, str], members: list[Alert], now_ms: int, out: Outcome
    ) -> None:
        ready: list[Alert] = []
        for alert in members:
            out.touch(alert)
            if not self._hold(alert, now_ms, out):
                ready.append(alert)
        if not ready:
            return
        self._group_last[group] = now_ms
        route = self._routes[ready[0].route]
        by_people: dict[tuple[str, ...], list[Alert]] = {}
        for alert in ready:
            alert.step = 0
            alert.due_ms = now_ms + route.steps[0].wait
            people = self._members(self._routes[alert.route], 0, alert)
            by_people.setdefault(people, []).append(alert)
        for people, alerts in by_people.items():
            if not people and len(self._routes[alerts[0].route].steps) > 1:
                for alert in alerts:
                    alert.due_ms = now_ms  # nobody at step 0: go on to the next step now
                    self._advance(alert, now_ms, out)
                continue
            self._send_group(alerts, "firing", people, now_ms, out)

    def _send(
        self, alert: Alert, transition: str, people: tuple[str, ...], now_ms: int, out: Outcome
    ) -> None:
        self._send_group([alert], transition, people, now_ms, out)

    def _send_group(
        self,
        alerts: list[Alert],
        transition: str,
        people: tuple[str, ...],
        now_ms: int,
        out: Outcome,
    ) -> None:
        urgent = any(a.life_safety for a in alerts)
        allowed, suppressed = (people, ()) if urgent else self._rate_limit(people, now_ms)
        for alert in alerts:
            alert.notified = _unique([*alert.notified, *allowed])
            if alert.first_notified_ms is None:
                alert.first_notified_ms = now_ms
            out.touch(alert)
        if suppressed:
            self.counters["rate_limited"] += len(suppressed)
        self.counters["dispatches"] += 1
        out.dispatches.append(
            Dispatch(
                "firing",
                transition,
                tuple(a.record() for a in alerts),
                tuple(allowed),
                urgent,
                tuple(suppressed),
            )
        )

    def _rate_limit(
        self, people: tuple[str, ...], now_ms: int
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        limit = self.settings.rate_limit
        allowed: list[str] = []
        suppressed: list[str] = []
        for person in people:
            sent = self._sent.setdefault(person, collections.deque())
            while sent and sent[0] <= now_ms - limit.per:
                sent.popleft()
            if len(sent) >= limit.max:
                suppressed.append(person)
            else:
                sent.append(now_ms)
                allowed.append(person)
        return tuple(allowed), tuple(suppressed)

    def _members(self, route: Route, step: int, alert: Alert) -> tuple[str, ...]:
        people: list[str] = []
        for tier in route.steps[step].notify:
            people.extend(self.directory.members(tier, alert.labels))
        return tuple(_unique(people))

    def _group(self, alert: Alert) -> tuple[str, str]:
        return (alert.labels.get("grid", ""), alert.rule_id)

    def _group_flush_ms(self, alert: Alert, now_ms: int) -> int:
        group = self._group(alert)
        pending = self._group_pending.get(group)
        if pending is None:
            last = self._group_last.get(group)
            if last is not None and now_ms - last < self.settings.group_interval:
                pending = last + self.settings.group_interval
            else:
                pending = now_ms + self.settings.group_wait
            self._group_pending[group] = pending
        return pending  # later members join the group's pending notification

    # -- overlays ---------------------------------------------------------------------------

    def _hold_reason(self, alert: Alert, now_ms: int) -> str | None:
        flap = self.flaps.get(alert.key)
        if flap is not None and flap.flapping and not alert.life_safety:
            return "flapping"
        for silence in self.silences.values():
            if silence.active(now_ms) and silence.covers(alert):
                return f"silenced:{silence.id}"
        for window in self.settings.maintenance:
            if window.match.matches(alert.labels) and window.schedule.contains(now_ms):
                return f"maintenance:{window.name}"
        for rule in self.settings.inhibit:
            if not rule.target.matches(alert.labels):
                continue
            for source in self.active.values():
                if (
                    source is not alert
                    and source.status in {Status.FIRING, Status.ACKNOWLEDGED}
                    and rule.source.matches(source.labels)
                    and all(source.labels.get(n) == alert.labels.get(n) for n in rule.equal)
                ):
                    return f"inhibited:{source.id}"
        return None

    def _hold(self, alert: Alert, now_ms: int, out: Outcome) -> bool:
        reason = self._hold_reason(alert, now_ms)
        if reason is None:
            return False
        if alert.held != reason:
            alert.note(now_ms, "held", reason)
            self.counters["held"] += 1
        alert.held = reason
        alert.due_ms = None
        out.touch(alert)
        return True

    def _recheck_hold(self, alert: Alert, now_ms: int, out: Outcome) -> None:
        reason = self._hold_reason(alert, now_ms)
        if reason == alert.held:
            return
        out.touch(alert)
        if reason is None:
            alert.note(now_ms, "released", alert.held or "")
            alert.held = None
            alert.due_ms = now_ms  # what waited goes out now
        else:
            alert.held = reason

    def _flap_change(self, alert: Alert, now_ms: int, out: Outcome) -> None:
        if alert.life_safety:
            return  # a smoke alarm that comes and goes may be a fire: every one goes out
        flapping = self.settings.flapping
        flap = self.flaps.setdefault(alert.key, Flap(rule_id=alert.rule_id, subject=alert.subject))
        flap.changes = [t for t in flap.changes if t > now_ms - flapping.window] + [now_ms]
        flap.last_alert = alert.record()
        out.flaps[alert.key] = flap
        heapq.heappush(self._flap_due, (flap.due_ms(flapping), alert.rule_id, alert.subject))
        if flap.flapping or len(flap.changes) < flapping.changes:
            return
        flap.flapping = True
        flap.since_ms = now_ms
        heapq.heappush(self._flap_due, (flap.due_ms(flapping), alert.rule_id, alert.subject))
        route = self._routes[alert.route]
        flap.notified = _unique([*alert.notified, *self._members(route, 0, alert)])
        alert.note(now_ms, "flapping")
        self.counters["flapping"] += 1
        out.dispatches.append(
            Dispatch("flapping", "flapping", (alert.record(),), tuple(flap.notified), False)
        )

    def _flap_maybe_ends(self, key: tuple[str, str], flap: Flap, now_ms: int, out: Outcome) -> None:
        last_change = flap.changes[-1] if flap.changes else flap.since_ms
        if not flap.flapping:
            if last_change <= now_ms - self.settings.flapping.window:
                del self.flaps[key]  # nothing to remember
                flap.changes = []  # and the store forgets it too
                out.flaps[key] = flap
            return
        if now_ms - last_change < self.settings.flapping.quiet:
            return
        flap.flapping = False
        flap.changes = []
        out.flaps[key] = flap
        current = self.active.get(key)
        record = current.record() if current is not None else None
        if record is None:
            record = flap.last_alert
        if record is not None and flap.notified:
            out.dispatches.append(
                Dispatch("flapping-end", "flapping-end", (record,), tuple(flap.notified), False)
            )
        if current is not None:
            current.note(now_ms, "flapping ended")
            out.touch(current)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class RegistryDirectory:
    """Tiers from the site file: the grid's worker, or the members of an escalation tier."""

    def __init__(
        self, worker_of: Mapping[str, str | None], tiers: Mapping[str, Iterable[str]]
    ) -> None:
        self._worker_of = dict(worker_of)
        self._tiers = {name: tuple(members) for name, members in tiers.items()}

    def members(self, tier: str, labels: Mapping[str, str]) -> tuple[str, ...]:
        """Person ids of ``tier`` for an alert with these labels."""
        if tier == GRID_WORKER:
            worker = self._worker_of.get(labels.get("grid", ""))
            return (worker,) if worker else ()
        if tier == EVERY_TIER:
            return tuple(_unique(p for members in self._tiers.values() for p in members))
        return self._tiers.get(tier, ())

    def tier_names(self) -> set[str]:
        """The tiers the site defines."""
        return set(self._tiers)
