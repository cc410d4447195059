"""Rule models: one frozen pydantic model per rule kind, in a union discriminated on ``kind``.

The models hold the pure parts of a rule's meaning (does this value breach, does this event match,
is this instant inside the schedule); the per-subject state machines live in :mod:`rules.engine`.
A new kind adds a model here, a member to :data:`Rule`, an index entry in :mod:`rules.ruleset`
and an evaluator in the engine.
"""

from __future__ import annotations

import difflib
import enum
import functools
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


Rule = Annotated[ThresholdRule | EventRule, Field(discriminator="kind")]
"""Any rule; pydantic picks the model from ``kind``."""
