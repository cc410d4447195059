"""Rule models: one frozen pydantic model per rule kind, in a union discriminated on ``kind``.

The models hold the pure parts of a rule's meaning (does this value breach, does this event match,
is this instant inside the schedule); the per-subject state machines live in :mod:`rules.kinds`
(readings, compiled to arrays) and :mod:`rules._reference` (events, ticks, and the sequential
reference).  A new kind adds a model here, a member to :data:`Rule`, an index entry in
:mod:`rules.ruleset` and an evaluator: for readings a module in :mod:`rules.kinds`, registered in
:data:`rules.kinds.KINDS`, checked against a sequential one.
"""

from __future__ import annotations

import difflib
import enum
import functools
import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

import wire
from rules.durations import DurationMs
from rules.errors import FieldError
from rules.schedule import Schedule
from rules.template import STANDARD_LABELS, Template


class Severity(enum.StrEnum):
    """How bad an alert is, most severe first (ThingsBoard's order)."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"


class IssueClass(enum.StrEnum):
    """Who an alert escalates to in the grid model."""

    ORDINARY = "ordinary"  # the responsible department
    COMPOSITE = "composite"  # the street-block lead
    HARD = "hard"  # the community office


RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
# The value names of wire's readings; wire keeps its own pattern private, so it is repeated here.
METRIC_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
# Label keys double as template names, so they must be identifiers.
LABEL_KEY_PATTERN = r"^[a-z_][a-z0-9_]{0,63}$"
# An event kind pattern: a dotted prefix followed by ".*", e.g. "alarm.*".
_KIND_PATTERN_SUFFIX = ".*"

# Template names every rule supplies, and labels the engine sets on every transition.
COMMON_TEMPLATE_NAMES: frozenset[str] = frozenset({"device", "rule_id", "severity"})
RESERVED_LABELS: frozenset[str] = frozenset({"device", "rule_id", "severity", "issue_class"})


def _int_to_str(value: object) -> object:
    # Buildings, floors and grids are often numbered: `buildings: [3]` means the label "3".
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Scalar = bool | int | float | str
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, BeforeValidator(_int_to_str), StringConstraints(max_length=256)]
ScopeName = Annotated[
    str, BeforeValidator(_int_to_str), StringConstraints(min_length=1, max_length=128)
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Scope(_Frozen):
    """Which subjects a rule applies to; every non-empty list must contain the subject's label."""

    sites: tuple[ScopeName, ...] = Field(default=(), description="site ids; empty = any")
    grids: tuple[ScopeName, ...] = Field(default=(), description="grid ids; empty = any")
    buildings: tuple[ScopeName, ...] = Field(default=(), description="buildings; empty = any")
    device_kinds: tuple[ScopeName, ...] = Field(
        default=(), description="device kinds from the registry; empty = any"
    )
    devices: tuple[ScopeName, ...] = Field(default=(), description="device ids; empty = any")

    _checks: tuple[tuple[str, frozenset[str]], ...] = PrivateAttr(default=())
    _devices: frozenset[str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> Self:
        pairs = (
            ("site", self.sites),
            ("grid", self.grids),
            ("building", self.buildings),
            ("device_kind", self.device_kinds),
        )
        self._checks = tuple((label, frozenset(names)) for label, names in pairs if names)
        self._devices = frozenset(self.devices) if self.devices else None
        return self

    @functools.cached_property
    def compiled(self) -> tuple[frozenset[str] | None, tuple[tuple[str, frozenset[str]], ...]]:
        """The checks as plain values.

        Pydantic private attributes are slow to read, and this runs for every reading and rule.
        """
        return self._devices, self._checks

    def matches(self, device: str, labels: Mapping[str, str]) -> bool:
        """Whether a subject with ``device`` id and ``labels`` is in scope."""
        devices, checks = self.compiled
        if devices is not None and device not in devices:
            return False
        if not checks:
            return True  # most rules have no scope; skip building a generator per reading
        return all(labels.get(label) in names for label, names in checks)


class RuleBase(_Frozen):
    """Fields every rule kind shares."""

    # Template names a kind adds to the common ones, and which of all names are numbers.
    template_names: ClassVar[frozenset[str]] = frozenset()
    numeric_names: ClassVar[frozenset[str]] = frozenset()

    id: str = Field(pattern=RULE_ID_PATTERN, description="unique id, e.g. smoke-detected")
    severity: Severity = Field(description="critical, major, minor or warning")
    issue_class: IssueClass = Field(
        default=IssueClass.ORDINARY,
        description="escalation class: ordinary (department), composite (street block), "
        "hard (community office)",
    )
    summary: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="short title for lists and phone notifications (a template); "
        "defaults to the rule id",
    )
    message: str = Field(
        min_length=1,
        max_length=1024,
        description="message template; must name the place, e.g. 'Smoke at {place}'",
    )
    scope: Scope = Field(default_factory=Scope, description="subjects the rule applies to")
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="extra static labels added to every alert"
    )

    _message: Template = PrivateAttr()
    _summary: Template | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile_templates(self) -> Self:
        for key in self.labels:
            if key in RESERVED_LABELS or key in STANDARD_LABELS:
                reason = "is set by the engine or the hub registry; choose another label name"
                raise FieldError(f"labels.{key}", reason)
        allowed = (
            COMMON_TEMPLATE_NAMES | self.template_names | set(STANDARD_LABELS) | set(self.labels)
        )
        self._message = Template.parse(self.message, field="message")
        self._message.check(allowed, self.numeric_names, field="message")
        if self.summary is not None:
            self._summary = Template.parse(self.summary, field="summary")
            self._summary.check(allowed, self.numeric_names, field="summary")
        return self

    def render(self, values: Mapping[str, object]) -> tuple[str, str]:
        """Render ``(summary, message)`` from template values."""
        summary = self.id if self._summary is None else self._summary.render(values)
        return summary, self._message.render(values)


class ThresholdRule(RuleBase):
    """A value above and/or below a level, optionally for a while, with optional hysteresis.

    Fires when ``value > above`` or ``value < below`` has held for ``for``.  Once firing it
    resolves only when the value is back inside ``[clear_below, clear_above]`` (each defaulting to
    its own threshold), so a reading hovering around the threshold does not flap.
    """

    template_names: ClassVar[frozenset[str]] = frozenset({"value", "metric", "threshold"})
    numeric_names: ClassVar[frozenset[str]] = frozenset({"value", "threshold"})

    kind: Literal["threshold"] = Field(default="threshold", description="rule kind")
    metric: str = Field(pattern=METRIC_PATTERN, description="value name, e.g. temperature")
    above: float | None = Field(default=None, description="fire when the value is above this")
    below: float | None = Field(default=None, description="fire when the value is below this")
    for_ms: DurationMs = Field(
        default=0,
        alias="for",
        description="how long the condition must hold before firing ('10s', '5m'); 0 = at once",
    )
    clear_above: float | None = Field(
        default=None,
        description="hysteresis for 'above': resolve only when the value is at or below this",
    )
    clear_below: float | None = Field(
        default=None,
        description="hysteresis for 'below': resolve only when the value is at or above this",
    )

    _clear_above: float = PrivateAttr(default=float("inf"))
    _clear_below: float = PrivateAttr(default=float("-inf"))

    @model_validator(mode="after")
    def _check_levels(self) -> Self:
        above, below = self.above, self.below
        if above is None and below is None:
            raise FieldError("above", "give 'above', 'below' or both")
        if above is not None and below is not None and below >= above:
            raise FieldError("below", f"must be lower than above ({above:g})")
        if above is not None:
            self._clear_above = _clear_level(above, self.clear_above, "clear_above", higher=False)
        elif self.clear_above is not None:
            raise FieldError("clear_above", "needs 'above'")
        if below is not None:
            self._clear_below = _clear_level(below, self.clear_below, "clear_below", higher=True)
        elif self.clear_below is not None:
            raise FieldError("clear_below", "needs 'below'")
        if self._clear_below > self._clear_above:
            reason = f"the clear band [{self._clear_below:g}, {self._clear_above:g}] is empty"
            raise FieldError("clear_below", reason)
        return self

    def breach(self, value: float) -> float | None:
        """The threshold ``value`` crosses, or None when it crosses none."""
        if self.above is not None and value > self.above:
            return self.above
        if self.below is not None and value < self.below:
            return self.below
        return None

    @functools.cached_property
    def clear_band(self) -> tuple[float, float]:
        """The clear band as plain floats (read per reading; see :meth:`Scope.compiled`)."""
        return self._clear_below, self._clear_above

    def cleared(self, value: float) -> bool:
        """Whether a firing alert resolves at ``value`` (back inside the clear band)."""
        low, high = self.clear_band
        return low <= value <= high


def _clear_level(threshold: float, clear: float | None, field: str, *, higher: bool) -> float:
    # A clear level on the wrong side of its threshold would resolve an alert that still breaches.
    if clear is None:
        return threshold
    if higher and clear <= threshold:
        reason = f"must be higher than below ({threshold:g}): the value rises to it to resolve"
        raise FieldError(field, reason)
    if not higher and clear >= threshold:
        reason = f"must be lower than above ({threshold:g}): the value falls to it to resolve"
        raise FieldError(field, reason)
    return clear


def _same(actual: object, expected: Scalar) -> bool:
    # bool is an int in Python; keep True from matching 1 and False from matching 0.
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    return actual == expected


def matches_fields(data: Mapping[str, Any], expected: Mapping[str, Scalar]) -> bool:
    """Whether ``data`` has every field of ``expected`` with the same value."""
    return all(_same(data.get(name), value) for name, value in expected.items())


def _check_event_fields(kinds: Iterable[str], fields: Mapping[str, Scalar], where: str) -> None:
    # Check each expected field against the data model of every kind the rule can meet, so that
    # a typo (`activ: true`) or a wrong type (`active: "no"`) fails at load, not by never firing.
    for kind in kinds:
        model = wire.EVENT_SPECS[kind].data_model
        for name, value in fields.items():
            info = model.model_fields.get(name)
            if info is None:
                known = ", ".join(sorted(model.model_fields)) or "none"
                reason = f"event kind {kind!r} has no data field {name!r} (fields: {known})"
                raise FieldError(f"{where}.{name}", reason)
            # The field's type with its constraints (e.g. ge=0), checked strictly like wire does.
            field_type: Any = info.annotation
            if info.metadata:
                field_type = Annotated[field_type, *info.metadata]
            adapter: TypeAdapter[Any] = TypeAdapter(field_type)
            try:
                adapter.validate_python(value, strict=True)
            except ValidationError as exc:
                msg = exc.errors(include_url=False)[0]["msg"]
                reason = f"{value!r} does not fit {kind!r} data: {msg}"
                raise FieldError(f"{where}.{name}", reason) from None


class EventMatch(_Frozen):
    """Which events a rule meets: a kind (or a ``prefix.*`` pattern) and expected data fields."""

    kind: str = Field(
        max_length=64, description="event kind from wire.EVENT_SPECS, or a pattern like alarm.*"
    )
    data: dict[str, Scalar] = Field(
        default_factory=dict, description="data field -> expected value; all must be equal"
    )

    _kinds: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _resolve_kind(self) -> Self:
        if self.kind.endswith(_KIND_PATTERN_SUFFIX):
            prefix = self.kind[: -len("*")]
            kinds = tuple(k for k in wire.EVENT_SPECS if k.startswith(prefix))
            if not kinds or "*" in prefix:
                raise FieldError("kind", f"pattern {self.kind!r} matches no known event kind")
        elif self.kind in wire.EVENT_SPECS:
            kinds = (self.kind,)
        else:
            close = difflib.get_close_matches(self.kind, wire.EVENT_SPECS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise FieldError("kind", f"unknown event kind {self.kind!r}{hint}")
        self._kinds = kinds
        _check_event_fields(kinds, self.data, "data")
        return self

    @property
    def is_pattern(self) -> bool:
        """Whether ``kind`` is a ``prefix.*`` pattern."""
        return self.kind.endswith(_KIND_PATTERN_SUFFIX)

    @property
    def prefix(self) -> str:
        """For a pattern, the prefix an event kind must start with (``alarm.``); else the kind."""
        return self.kind[: -len("*")] if self.is_pattern else self.kind

    @property
    def kinds(self) -> tuple[str, ...]:
        """The known event kinds this match can meet."""
        return self._kinds


class EventRule(RuleBase):
    """An event of a kind (with data conditions, optionally on a schedule) fires an alert.

    A repeat while firing does not fire again; it is counted.  The alert resolves on an event of
    the same kind whose data matches ``resolve_on``, or after ``auto_resolve`` without a repeat.
    """

    template_names: ClassVar[frozenset[str]] = frozenset({"event_kind"})

    kind: Literal["event"] = Field(default="event", description="rule kind")
    match: EventMatch = Field(description="which events fire the rule")
    schedule: Schedule | None = Field(
        default=None, description="fire only for events inside this window; resolves any time"
    )
    resolve_on: dict[str, Scalar] | None = Field(
        default=None,
        min_length=1,
        description="data field -> value of an event of the same kind that resolves the alert",
    )
    auto_resolve_ms: DurationMs | None = Field(
        default=None,
        alias="auto_resolve",
        description="resolve by itself this long after the last matching event ('10m')",
    )

    @model_validator(mode="after")
    def _check_resolution(self) -> Self:
        if self.resolve_on is not None:
            _check_event_fields(self.match.kinds, self.resolve_on, "resolve_on")
            if matches_fields(self.match.data, self.resolve_on):
                reason = "every event that fires the rule would also resolve it"
                raise FieldError("resolve_on", reason)
        if self.auto_resolve_ms == 0:
            raise FieldError("auto_resolve", "must be longer than 0; leave it out to disable")
        return self

    def resolves(self, data: Mapping[str, Any]) -> bool:
        """Whether an event with ``data`` (of a matching kind) resolves the alert."""
        return self.resolve_on is not None and matches_fields(data, self.resolve_on)

    def fires(self, ts_ms: int, data: Mapping[str, Any]) -> bool:
        """Whether an event at ``ts_ms`` with ``data`` (of a matching kind) fires the rule."""
        if not matches_fields(data, self.match.data):
            return False
        return self.schedule is None or self.schedule.contains(ts_ms)


Direction = Literal["rise", "fall", "both"]
# The labels that name a dwelling; subjects sharing all three are one unit.
UNIT_LABELS: tuple[str, ...] = ("building", "floor", "unit")
# What counts as someone moving about a home, for the welfare check.
DEFAULT_ACTIVITY: tuple[str, ...] = ("presence.motion", "door.*", "emergency.button")


def _positive(value: int, field: str) -> None:
    if value <= 0:
        raise FieldError(field, "must be longer than 0")


class RateOfChangeRule(RuleBase):
    """A value that rises and/or falls faster than ``max_per_minute``, measured over ``window``.

    The rate is taken between the newest reading and the newest one at least ``window`` older, so
    that two readings a second apart cannot turn sensor noise into a huge rate.  Fires on the
    first reading whose rate exceeds the limit and resolves on the first whose rate does not.
    """

    template_names: ClassVar[frozenset[str]] = frozenset({"value", "metric", "rate", "threshold"})
    numeric_names: ClassVar[frozenset[str]] = frozenset({"value", "rate", "threshold"})

    kind: Literal["rate_of_change"] = Field(default="rate_of_change", description="rule kind")
    metric: str = Field(pattern=METRIC_PATTERN, description="value name, e.g. temperature")
    max_per_minute: float = Field(gt=0, description="fire when the value moves faster than this")
    direction: Direction = Field(default="both", description="rise, fall or both")
    window_ms: DurationMs = Field(
        alias="window", description="span the rate is measured over ('1m'); longer = less noise"
    )
    schedule: Schedule | None = Field(
        default=None, description="fire only inside this window; resolves any time"
    )

    @model_validator(mode="after")
    def _check_window(self) -> Self:
        _positive(self.window_ms, "window")
        return self

    def breach(self, rate: float) -> bool:
        """Whether ``rate`` (units per minute, signed) is too fast in a watched direction."""
        if self.direction != "fall" and rate > self.max_per_minute:
            return True
        return self.direction != "rise" and rate < -self.max_per_minute


class AbsenceRule(RuleBase):
    """Deadman: a device in scope has sent nothing (no reading, no event) for ``for``.

    A device is watched from its first reading or event; the alert resolves on its next one.
    Devices report at very different rates (a mains camera every minute, a battery smoke
    detector a few times a day), so ``for_device_kinds`` overrides ``for`` per device kind.
    """

    template_names: ClassVar[frozenset[str]] = frozenset({"silent_min"})
    numeric_names: ClassVar[frozenset[str]] = frozenset({"silent_min"})

    kind: Literal["absence"] = Field(default="absence", description="rule kind")
    for_ms: DurationMs = Field(alias="for", description="silence that fires the rule ('10m')")
    for_device_kinds: dict[ScopeName, DurationMs] = Field(
        default_factory=dict,
        description="device_kind -> silence for that kind, overriding 'for' "
        "('smoke_detector: 26h')",
    )
    schedule: Schedule | None = Field(
        default=None,
        description="fire only inside this window (e.g. a lobby display that sleeps at night)",
    )

    @model_validator(mode="after")
    def _check_durations(self) -> Self:
        _positive(self.for_ms, "for")
        for device_kind, for_ms in self.for_device_kinds.items():
            _positive(for_ms, f"for_device_kinds.{device_kind}")
        return self

    def silence_ms(self, labels: Mapping[str, str]) -> int:
        """The silence allowed for a subject with ``labels``."""
        device_kind = labels.get("device_kind")
        if device_kind is None:
            return self.for_ms
        return self.for_device_kinds.get(device_kind, self.for_ms)


def _check_place_by(place_by: tuple[str, ...]) -> None:
    if len(set(place_by)) != len(place_by):
        raise FieldError("place_by", "names a label twice")


class InactivityRule(RuleBase):
    """Welfare check: no activity at a place (a unit by default) for ``for``.

    Activity is an event matching any of ``activity`` from any device whose labels put it at the
    place; the alert is keyed by the place, not by a device, so a resident moving between rooms
    keeps one timer.  Resolves on the next activity.  With a ``schedule`` the rule fires only
    inside it (e.g. not at night, when a resident asleep is quiet), at the first instant in it.
    """

    template_names: ClassVar[frozenset[str]] = frozenset({"silent_min"})
    numeric_names: ClassVar[frozenset[str]] = frozenset({"silent_min"})

    kind: Literal["inactivity"] = Field(default="inactivity", description="rule kind")
    for_ms: DurationMs = Field(alias="for", description="quiet time that fires the rule ('12h')")
    activity: tuple[EventMatch, ...] = Field(
        default_factory=lambda: tuple(EventMatch(kind=kind) for kind in DEFAULT_ACTIVITY),
        min_length=1,
        description="events that show someone is about; default presence.motion, door.*, "
        "emergency.button",
    )
    place_by: tuple[LabelKey, ...] = Field(
        default=UNIT_LABELS,
        min_length=1,
        description="labels that together name the place; default building, floor, unit",
    )
    schedule: Schedule | None = Field(default=None, description="fire only inside this window")

    @model_validator(mode="after")
    def _check_fields(self) -> Self:
        _positive(self.for_ms, "for")
        _check_place_by(self.place_by)
        return self

    def is_activity(self, kind: str, data: Mapping[str, Any]) -> bool:
        """Whether an event of ``kind`` with ``data`` is activity."""
        return any(
            kind in match.kinds and matches_fields(data, match.data) for match in self.activity
        )


class FlatLineRule(RuleBase):
    """Stuck sensor: a value that has not moved by more than ``tolerance`` for ``for``.

    Counts repeated identical readings (a stuck sensor keeps reporting, so this needs no clock);
    fires on the reading that completes ``for`` and resolves on the first that moves.
    """

    template_names: ClassVar[frozenset[str]] = frozenset({"value", "metric", "stuck_min"})
    numeric_names: ClassVar[frozenset[str]] = frozenset({"value", "stuck_min"})

    kind: Literal["flat_line"] = Field(default="flat_line", description="rule kind")
    metric: str = Field(pattern=METRIC_PATTERN, description="value name, e.g. temperature")
    for_ms: DurationMs = Field(alias="for", description="how long unchanged before firing ('6h')")
    tolerance: float = Field(default=0.0, ge=0, description="changes up to this are 'unchanged'")

    @model_validator(mode="after")
    def _check_for(self) -> Self:
        _positive(self.for_ms, "for")
        return self


class CountRule(RuleBase):
    """N matching events at one device within ``window`` (five denied cards at a door in 1m).

    Fires on the event that makes ``count`` within the window.  Resolves when fewer than
    ``count`` remain in the window, or, with ``auto_resolve``, that long after the last matching
    event (a quieter end for bursts that come in waves).
    """

    template_names: ClassVar[frozenset[str]] = frozenset({"event_kind", "count"})
    numeric_names: ClassVar[frozenset[str]] = frozenset({"count"})

    kind: Literal["count"] = Field(default="count", description="rule kind")
    match: EventMatch = Field(description="which events are counted")
    count: int = Field(ge=2, le=10_000, description="how many events fire the rule")
    window_ms: DurationMs = Field(alias="window", description="sliding window ('1m')")
    schedule: Schedule | None = Field(
        default=None, description="count only events inside this window"
    )
    auto_resolve_ms: DurationMs | None = Field(
        default=None,
        alias="auto_resolve",
        description="resolve this long after the last matching event instead",
    )

    @model_validator(mode="after")
    def _check_durations(self) -> Self:
        _positive(self.window_ms, "window")
        if self.auto_resolve_ms is not None:
            _positive(self.auto_resolve_ms, "auto_resolve")
        return self

    def counts(self, ts_ms: int, data: Mapping[str, Any]) -> bool:
        """Whether an event at ``ts_ms`` with ``data`` (of a matching kind) is counted."""
        if not matches_fields(data, self.match.data):
            return False
        return self.schedule is None or self.schedule.contains(ts_ms)


class AnomalyRule(RuleBase):
    """A value far from its own recent normal: EWMA mean and variance per device, z-score.

    The first ``warmup`` readings only train the baseline.  After that a reading whose z-score
    exceeds ``z`` fires, and the first reading back within ``z`` resolves.  Every reading updates
    the baseline (an outlier clipped to ``z`` standard deviations), so a lasting change of level
    becomes the new normal and resolves by itself.
    """

    template_names: ClassVar[frozenset[str]] = frozenset({"value", "metric", "mean", "zscore"})
    numeric_names: ClassVar[frozenset[str]] = frozenset({"value", "mean", "zscore"})

    kind: Literal["anomaly"] = Field(default="anomaly", description="rule kind")
    metric: str = Field(pattern=METRIC_PATTERN, description="value name, e.g. water_flow")
    alpha: float = Field(
        default=0.05, gt=0, lt=1, description="EWMA weight of each new reading (0..1)"
    )
    warmup: int = Field(default=30, ge=2, description="readings that only train the baseline")
    z: float = Field(default=4.0, gt=0, description="fire when |value - mean| / std exceeds this")
    min_std: float = Field(
        default=0.0,
        ge=0,
        description="floor for the std, so a very steady sensor does not fire on a tiny step",
    )
    direction: Direction = Field(default="both", description="rise, fall or both")
    schedule: Schedule | None = Field(
        default=None, description="fire only inside this window; resolves any time"
    )

    def zscore(self, value: float, mean: float, var: float) -> float | None:
        """The signed z-score of ``value``, or None when the baseline has no spread."""
        std = max(math.sqrt(var), self.min_std)
        return None if std == 0 else (value - mean) / std

    def clip(self, value: float, mean: float, var: float) -> float:
        """``value`` limited to ``mean ± z·std``, for updating the baseline.

        An outlier fed in whole would inflate the variance so much that the next odd reading
        looks normal; clipped, a lasting shift still moves the mean, step by step.
        """
        limit = self.z * max(math.sqrt(var), self.min_std)
        return min(max(value, mean - limit), mean + limit)

    def breach(self, zscore: float) -> bool:
        """Whether ``zscore`` is anomalous in a watched direction."""
        if self.direction != "fall" and zscore > self.z:
            return True
        return self.direction != "rise" and zscore < -self.z


class Condition(_Frozen):
    """One condition of a correlation: an event match, or a metric above and/or below a level."""

    event: EventMatch | None = Field(default=None, description="an event that counts")
    metric: str | None = Field(
        default=None, pattern=METRIC_PATTERN, description="or a value name, e.g. temperature"
    )
    above: float | None = Field(default=None, description="with metric: a reading above this")
    below: float | None = Field(default=None, description="with metric: a reading below this")

    @model_validator(mode="after")
    def _check_one(self) -> Self:
        if (self.event is None) == (self.metric is None):
            raise FieldError("event", "give either 'event' or 'metric'")
        if self.metric is None:
            if self.above is not None or self.below is not None:
                field = "above" if self.above is not None else "below"
                raise FieldError(field, "goes with 'metric', not with 'event'")
        elif self.above is None and self.below is None:
            raise FieldError("above", "give 'above', 'below' or both with 'metric'")
        return self

    def breach(self, value: float) -> bool:
        """Whether a reading of this condition's metric meets it."""
        if self.above is not None and value > self.above:
            return True
        return self.below is not None and value < self.below


class CorrelationRule(RuleBase):
    """Several conditions met at one place within ``window``: smoke *and* heat in one unit.

    Each condition is an occurrence: an event that matches, or a reading that breaches.  The
    rule fires when every condition has occurred within the last ``window`` at the same place
    (any devices there), and resolves when the oldest of them falls out of the window.  It is
    meant for a higher severity than its parts: two weak signals together are strong.
    """

    kind: Literal["correlation"] = Field(default="correlation", description="rule kind")
    conditions: tuple[Condition, ...] = Field(
        min_length=2, max_length=8, description="all must occur at the place within the window"
    )
    window_ms: DurationMs = Field(alias="window", description="how close together ('5m')")
    place_by: tuple[LabelKey, ...] = Field(
        default=UNIT_LABELS,
        min_length=1,
        description="labels that together name the place; default building, floor, unit",
    )
    schedule: Schedule | None = Field(default=None, description="fire only inside this window")

    @model_validator(mode="after")
    def _check_fields(self) -> Self:
        _positive(self.window_ms, "window")
        _check_place_by(self.place_by)
        return self

    @functools.cached_property
    def metrics(self) -> frozenset[str]:
        """The value names the conditions watch."""
        return frozenset(c.metric for c in self.conditions if c.metric is not None)

    @functools.cached_property
    def event_matches(self) -> tuple[EventMatch, ...]:
        """The event matches of the conditions, in order."""
        return tuple(c.event for c in self.conditions if c.event is not None)


MetricRule = ThresholdRule | RateOfChangeRule | FlatLineRule | AnomalyRule
"""Rules driven by readings of one metric."""
EventDrivenRule = EventRule | CountRule | CorrelationRule
"""Rules driven by events of the kinds they match."""
ReadingRule = MetricRule | CorrelationRule
"""Rules driven by readings."""
# In the order error messages list the kinds: the two basic ones first.
AnyRule = (
    ThresholdRule
    | EventRule
    | RateOfChangeRule
    | AbsenceRule
    | InactivityRule
    | FlatLineRule
    | CountRule
    | CorrelationRule
    | AnomalyRule
)
"""Any rule model (the plain union, for annotations)."""

Rule = Annotated[AnyRule, Field(discriminator="kind")]
"""Any rule; pydantic picks the model from ``kind``."""
