"""Scenarios: incidents scheduled at offsets from a shared epoch, loadable from YAML.

A scenario is written once for a whole demo or test site and given to every gateway: each
simulated driver plays the incidents of its own devices and ignores the rest.  Incidents may name
a device by id, or by place (``building/floor/unit``) and device kind; :meth:`Scenario.resolve`
turns places into device ids with a lookup the caller provides (the hub registry, in the demo),
because gateways know device ids only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from device_drivers.errors import DriverError
from device_drivers.simulated.kinds import TELEMETRY_KINDS, DeviceKind
from wire.payloads import MAX_TS_MS, MIN_TS_MS
from wire.topics import ID_PATTERN

__all__ = [
    "DeniedCardsIncident",
    "DoorForcedIncident",
    "DoorHeldOpenIncident",
    "EmergencyButtonIncident",
    "GasIncident",
    "HeatIncident",
    "Incident",
    "IntrusionIncident",
    "LineCrossingIncident",
    "OfflineIncident",
    "PlaceLookup",
    "PlaceRef",
    "Scenario",
    "ScenarioError",
    "SilenceIncident",
    "SmokeIncident",
    "StuckIncident",
    "TamperIncident",
    "WaterLeakIncident",
    "load_scenario",
    "parse_duration",
    "parse_scenario",
]

PlaceLookup = Callable[[str, DeviceKind], str | None]
"""Maps ``(place, device_kind)`` to a device id, or ``None`` when there is no such device."""

_NUMBER = r"\d+(?:\.\d+)?"
_DURATION_RE = re.compile(
    rf"(?:(?P<d>{_NUMBER})d)?(?:(?P<h>{_NUMBER})h)?(?:(?P<m>{_NUMBER})m)?(?:(?P<s>{_NUMBER})s)?"
)
_FIELD_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_UNIT_SECONDS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}
_DURATION_HELP = "use e.g. 20s, 5m, 2h, 1h30m or a number of seconds"


class ScenarioError(DriverError, ValueError):
    """A scenario that does not validate or cannot be resolved.

    Attributes:
        source: the file or other origin of the scenario, when known.
        index: position of the offending incident in ``incidents``, or ``None``.
        field: dotted name of the offending field inside the incident (or the scenario).
        reason: what is wrong, in words an installer can act on.
        line: 1-based line of the incident in the YAML file, when known.
    """

    def __init__(
        self,
        field: str,
        reason: str,
        *,
        index: int | None = None,
        source: str | None = None,
        line: int | None = None,
    ) -> None:
        where = [source] if source else []
        if index is not None:
            where.append(f"incident {index}" + (f" (line {line})" if line else ""))
        where.append(f"field {field}")
        super().__init__(f"{', '.join(where)}: {reason}")
        self.source = source
        self.index = index
        self.field = field
        self.reason = reason
        self.line = line


def parse_duration(value: object) -> float:
    """Parse a duration given as seconds or as text such as ``"20s"``, ``"5m"``, ``"1h30m"``.

    Args:
        value: a non-negative number of seconds, or a string of ``d``/``h``/``m``/``s`` parts in
            that order; a bare number in a string is seconds too.

    Returns:
        The duration in seconds.

    Raises:
        ValueError: if ``value`` is not a valid, finite, non-negative duration.
    """
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        match = _DURATION_RE.fullmatch(text)
        if re.fullmatch(_NUMBER, text):
            seconds = float(text)
        elif text and match is not None:
            seconds = sum(
                float(amount) * _UNIT_SECONDS[unit]
                for unit, amount in match.groupdict().items()
                if amount is not None
            )
    # ValueError, not TypeError, for every bad input: pydantic reports only the former.
    if seconds is None:
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must be a finite, non-negative time")
    return seconds


def _duration_before(value: object) -> object:
    # None passes through so optional durations stay optional.
    return None if value is None else parse_duration(value)


Offset = Annotated[float, BeforeValidator(_duration_before), Field(ge=0)]
Duration = Annotated[float, BeforeValidator(_duration_before), Field(gt=0)]
Name = Annotated[str, Field(min_length=1, max_length=64)]
DeviceId = Annotated[str, Field(pattern=ID_PATTERN)]
Place = Annotated[str, Field(min_length=1, max_length=128)]

ALL_KINDS = frozenset(DeviceKind)


class PlaceRef(BaseModel):
    """A device given by its place instead of its id; the kind follows from where it is used."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    place: Place = Field(description="place of the device, e.g. building/floor/unit: 3/2/201")


class _IncidentBase(BaseModel):
    """What every incident has: when, and which device."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Device kinds an incident of this type can happen to.
    kinds: ClassVar[frozenset[DeviceKind]] = ALL_KINDS

    do: str
    at: Offset = Field(description="when it starts, as an offset from the scenario's epoch")
    device: DeviceId | None = Field(
        default=None, description="id of the device; give either this or place"
    )
    place: Place | None = Field(
        default=None,
        description="place of the device (e.g. 3/2/201), resolved to a device id by resolve()",
    )
    device_kind: DeviceKind | None = Field(
        default=None,
        description="kind of the device at place; implied when the incident fits only one kind",
    )

    @model_validator(mode="after")
    def _check_target(self) -> Self:
        if (self.device is None) == (self.place is None):
            raise PydanticCustomError(
                "incident_target",
                "give either device or place, not both and not neither",
                {"field": "device"},
            )
        if self.device is not None and self.device_kind is not None:
            raise PydanticCustomError(
                "incident_target",
                "device_kind goes with place only; a device id already says which device",
                {"field": "device_kind"},
            )
        if self.place is not None and self.target_kind is None:
            raise PydanticCustomError(
                "incident_target",
                "device_kind is required with place for do: {do}",
                {"field": "device_kind", "do": self.do},
            )
        if self.device_kind is not None and self.device_kind not in self.kinds:
            raise PydanticCustomError(
                "incident_target",
                "do: {do} cannot happen to a {kind} device",
                {"field": "device_kind", "do": self.do, "kind": str(self.device_kind)},
            )
        return self

    @property
    def target_kind(self) -> DeviceKind | None:
        """The device kind given or implied for a place, or ``None`` if it is open."""
        if self.device_kind is not None:
            return self.device_kind
        return next(iter(self.kinds)) if len(self.kinds) == 1 else None

    def resolution(self, lookup: PlaceLookup, index: int) -> dict[str, Any]:
        """Fields to change so that this incident names device ids only.

        Args:
            lookup: maps ``(place, device_kind)`` to a device id, or ``None``.
            index: position of this incident, for error messages.

        Raises:
            ScenarioError: if a place does not resolve.
        """
        if self.place is None:
            return {}
        kind = self.target_kind
        if kind is None:  # the validator prevents this; kept for type narrowing
            raise ScenarioError("device_kind", "required with place", index=index)
        return {
            "device": _lookup(lookup, self.place, kind, index, "place"),
            "place": None,
            "device_kind": None,
        }


def _lookup(lookup: PlaceLookup, place: str, kind: DeviceKind, index: int, field: str) -> str:
    device = lookup(place, kind)
    if device is None:
        raise ScenarioError(field, f"no {kind} device at place {place!r}", index=index)
    return device


class SmokeIncident(_IncidentBase):
    """A smoke detector goes into alarm; optionally temperatures nearby climb steeply."""

    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({DeviceKind.SMOKE})
    do: Literal["smoke"] = Field(description="incident type")
    duration: Duration = Field(default=300.0, description="how long the alarm stays active")
    heat: tuple[DeviceId | PlaceRef, ...] = Field(
        default=(),
        description="temp_humidity devices (ids or {place: ...}) whose temperature rises "
        "by about 30-40 °C over the duration",
    )

    def resolution(self, lookup: PlaceLookup, index: int) -> dict[str, Any]:
        """Fields to change so that the incident and its ``heat`` list name device ids only."""
        changes = super().resolution(lookup, index)
        if any(isinstance(ref, PlaceRef) for ref in self.heat):
            changes["heat"] = tuple(
                _lookup(lookup, ref.place, DeviceKind.TEMP_HUMIDITY, index, f"heat.{i}")
                if isinstance(ref, PlaceRef)
                else ref
                for i, ref in enumerate(self.heat)
            )
        return changes


class GasIncident(_IncidentBase):
    """A gas detector reads ``level`` %LEL and alarms."""

    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({DeviceKind.GAS})
    do: Literal["gas"] = Field(description="incident type")
    level: float = Field(default=20.0, gt=0, le=100, description="gas level in %LEL")
    duration: Duration = Field(default=300.0, description="how long the alarm stays active")


class WaterLeakIncident(_IncidentBase):
    """A leak sensor gets wet."""

    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({DeviceKind.WATER_LEAK})
    do: Literal["water_leak"] = Field(description="incident type")
    duration: Duration = Field(default=300.0, description="how long the sensor stays wet")


class EmergencyButtonIncident(_IncidentBase):
    """A resident presses an emergency button."""

    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({DeviceKind.EMERGENCY_BUTTON})
    do: Literal["emergency_button"] = Field(description="incident type")


class DoorForcedIncident(_IncidentBase):
    """A door opens without a grant; it closes again after ``open_s``."""

    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({DeviceKind.DOOR_READER})
    do: Literal["door_forced"] = Field(description="incident type")
    open_s: Duration = Field(default=30.0, description="how long the door stays open")


class DoorHeldOpenIncident(_IncidentBase):
    """A resident is let in and the door stays open for ``open_s``."""

    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({DeviceKind.DOOR_READER})
    do: Literal["door_held_open"] = Field(description="incident type")
    open_s: Duration = Field(
        default=120.0,
        description="how long the door stays open; longer than the reader's held_open_after_s",
    )


class DeniedCardsIncident(_IncidentBase):
    """Unknown cards are tried at a reader, ``count`` times within ``within``."""

    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({DeviceKind.DOOR_READER})
    do: Literal["denied_cards"] = Field(description="incident type")
    count: int = Field(default=5, ge=1, le=1000, description="number of denied reads")
    within: Duration = Field(default=60.0, description="window the reads fall in")


class IntrusionIncident(_IncidentBase):
    """Someone enters a camera's guarded zone."""

    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({DeviceKind.CAMERA})
    do: Literal["intrusion"] = Field(description="incident type")
    zone: Name | None = Field(default=None, description="guarded zone; the camera's by default")
    object: Name = Field(default="person", description="what entered the zone")
    duration: Duration = Field(default=30.0, description="how long it stays in the zone")


class LineCrossingIncident(_IncidentBase):
    """Something crosses a camera's virtual line."""

    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({DeviceKind.CAMERA})
    do: Literal["line_crossing"] = Field(description="incident type")
    line: Name | None = Field(default=None, description="the line; the camera's by default")
    direction: Literal["in", "out"] = Field(default="in", description="direction of crossing")
    object: Name = Field(default="person", description="what crossed the line")


class TamperIncident(_IncidentBase):
    """A camera is covered, moved or defocused."""

    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({DeviceKind.CAMERA})
    do: Literal["tamper"] = Field(description="incident type")
    duration: Duration = Field(default=300.0, description="how long the tamper lasts")


class SilenceIncident(_IncidentBase):
    """The device sends nothing for a while, e.g. no movement in a flat (welfare check)."""

    do: Literal["silence"] = Field(description="incident type")
    duration: Duration = Field(description="how long the device stays silent")


class OfflineIncident(_IncidentBase):
    """The device dies: it sends nothing, for ``duration`` or for good."""

    do: Literal["offline"] = Field(description="incident type")
    duration: Duration | None = Field(
        default=None, description="how long it stays offline; for good when absent"
    )


class HeatIncident(_IncidentBase):
    """A temperature climbs steeply without a smoke alarm (a fire the detector has not seen)."""

    kinds: ClassVar[frozenset[DeviceKind]] = frozenset({DeviceKind.TEMP_HUMIDITY})
    do: Literal["heat"] = Field(description="incident type")
    duration: Duration = Field(default=300.0, description="how long the temperature climbs")
    rise: float = Field(default=35.0, gt=0, le=200, description="rise in °C over the duration")


class StuckIncident(_IncidentBase):
    """A sensor repeats exactly the same values (a flat-line fault)."""

    kinds: ClassVar[frozenset[DeviceKind]] = TELEMETRY_KINDS
    do: Literal["stuck"] = Field(description="incident type")
    duration: Duration = Field(description="how long the values stay frozen")


Incident = Annotated[
    SmokeIncident
    | GasIncident
    | WaterLeakIncident
    | EmergencyButtonIncident
    | DoorForcedIncident
    | DoorHeldOpenIncident
    | DeniedCardsIncident
    | IntrusionIncident
    | LineCrossingIncident
    | TamperIncident
    | SilenceIncident
    | OfflineIncident
    | HeatIncident
    | StuckIncident,
    Field(discriminator="do"),
]
INCIDENT_TYPES: tuple[type[_IncidentBase], ...] = (
    SmokeIncident,
    GasIncident,
    WaterLeakIncident,
    EmergencyButtonIncident,
    DoorForcedIncident,
    DoorHeldOpenIncident,
    DeniedCardsIncident,
    IntrusionIncident,
    LineCrossingIncident,
    TamperIncident,
    SilenceIncident,
    OfflineIncident,
    HeatIncident,
    StuckIncident,
)
_TAGS = frozenset(
    str(tag) for cls in INCIDENT_TYPES for tag in get_args(cls.model_fields["do"].annotation)
)


class Scenario(BaseModel):
    """Incidents to play, at offsets from a common epoch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epoch_ms: int | None = Field(
        default=None,
        ge=MIN_TS_MS,
        le=MAX_TS_MS,
        description="start of the scenario in epoch ms; the clock's time at open() when absent",
    )
    incidents: tuple[Incident, ...] = Field(default=(), description="the incidents to play")

    def resolve(self, lookup: PlaceLookup) -> Scenario:
        """Return a copy in which every incident given by place names a device id instead.

        Args:
            lookup: maps ``(place, device_kind)`` to a device id, or ``None`` if none is there.

        Raises:
            ScenarioError: naming the incident whose place cannot be resolved.
        """
        incidents = []
        for index, incident in enumerate(self.incidents):
            changes = incident.resolution(lookup, index)
            if changes:
                raw = {**incident.model_dump(exclude_none=True), **changes}
                raw = {key: value for key, value in raw.items() if value is not None}
                try:
                    incident = type(incident).model_validate(raw)  # noqa: PLW2901
                except ValidationError as exc:
                    raise _translate(exc, prefix=("incidents", index)) from None
            incidents.append(incident)
        return self.model_copy(update={"incidents": tuple(incidents)})

    def unresolved(self) -> tuple[int, ...]:
        """Indexes of incidents that still name a place rather than a device id."""
        return tuple(
            index
            for index, incident in enumerate(self.incidents)
            if incident.device is None
            or (
                isinstance(incident, SmokeIncident)
                and any(isinstance(ref, PlaceRef) for ref in incident.heat)
            )
        )


def _translate(
    exc: ValidationError,
    *,
    prefix: tuple[str | int, ...] = (),
    source: str | None = None,
    lines: Mapping[int, int] | None = None,
) -> ScenarioError:
    err = exc.errors(include_url=False)[0]
    loc = (*prefix, *err["loc"])
    reason = err["msg"].removeprefix("Value error, ")
    ctx = err.get("ctx") or {}
    index: int | None = None
    if len(loc) >= 2 and loc[0] == "incidents" and isinstance(loc[1], int):  # noqa: PLR2004
        index = loc[1]
        rest = list(loc[2:])
        # A discriminated union puts the incident type between the index and the field.
        if rest and rest[0] in _TAGS:
            rest = rest[1:]
        # Members of plain unions appear as labels such as "constrained-str"; drop them.
        rest = [part for part in rest if isinstance(part, int) or _FIELD_RE.match(part)]
        if err["type"] in {"union_tag_invalid", "union_tag_not_found"}:
            field = "do"
        else:
            field = str(ctx.get("field") or ".".join(str(part) for part in rest) or "$")
    else:
        field = ".".join(str(part) for part in loc) or "$"
    line = lines.get(index) if lines is not None and index is not None else None
    return ScenarioError(field, reason, index=index, source=source, line=line)


def parse_scenario(
    raw: object, *, source: str | None = None, lines: Mapping[int, int] | None = None
) -> Scenario:
    """Validate a scenario given as plain data (as read from YAML or JSON).

    Args:
        raw: a mapping with ``incidents`` and optionally ``epoch_ms``.
        source: where it came from, for error messages.
        lines: 1-based line of each incident, for error messages.

    Raises:
        ScenarioError: naming the incident and the field that do not validate.
    """
    if not isinstance(raw, Mapping):
        raise ScenarioError("$", "a scenario is a mapping with an incidents: list", source=source)
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise _translate(exc, source=source, lines=lines) from None


def _incident_lines(text: str) -> dict[int, int]:
    """1-based line of each item of the top-level ``incidents`` list."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    for key, value in root.value:
        if key.value == "incidents" and isinstance(value, yaml.SequenceNode):
            return {i: item.start_mark.line + 1 for i, item in enumerate(value.value)}
    return {}


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario from a YAML file.

    Raises:
        ScenarioError: if the file cannot be read or parsed, or does not validate; the error
            names the file, the incident (with its line) and the field.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError("$", f"cannot read: {exc.strerror or exc}", source=source) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError("$", f"not valid YAML: {exc}", source=source) from None
    return parse_scenario(raw, source=source, lines=_incident_lines(text))
