"""The catalogue of event kinds and the schema of each event's ``data``.

Kinds are dotted and stable; a new kind is added here, never renamed.  An event's ``data`` is
validated against its kind's model both on the gateway (before it is queued) and on the hub.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wire.errors import DecodeError

# A pseudonymised credential: "h1:" + 32 hex digits of a keyed hash.  A site that opts out of
# pseudonymisation sends "raw:" + the driver's credential string ("<bits>:<hex>" for a card,
# "pin:<digits>" for a keypad entry); nothing else is a valid credential.
PSEUDONYM_PATTERN = r"^h1:[0-9a-f]{32}$"
CREDENTIAL_PATTERN = r"^(h1:[0-9a-f]{32}|raw:([0-9]{1,3}:[0-9a-f]{1,64}|pin:[0-9]{1,16}))$"
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

_SHORT = 64


class EventData(BaseModel):
    """Base of every event's ``data`` model."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, allow_inf_nan=False, defer_build=True
    )


class DoorAccess(EventData):
    """A credential presented at a reader, with the decision if one was made."""

    credential: str = Field(pattern=CREDENTIAL_PATTERN, description="pseudonymised credential")
    format: str = Field(max_length=_SHORT, description="card format, e.g. wiegand26, osdp")
    bits: int | None = Field(default=None, ge=1, le=256)
    granted: bool | None = Field(default=None, description="None when the gateway did not decide")
    door: str | None = Field(default=None, max_length=_SHORT)
    reason: str | None = Field(default=None, max_length=_SHORT)


class DoorForced(EventData):
    """A door opened without a grant or an exit request."""

    door: str | None = Field(default=None, max_length=_SHORT)


class DoorHeldOpen(EventData):
    """A door open longer than allowed."""

    open_s: float = Field(ge=0)
    door: str | None = Field(default=None, max_length=_SHORT)


class DoorContact(EventData):
    """A door contact changed state."""

    open: bool
    door: str | None = Field(default=None, max_length=_SHORT)


class DoorExitRequest(EventData):
    """A request-to-exit button or sensor."""

    door: str | None = Field(default=None, max_length=_SHORT)


class ActiveFlag(EventData):
    """An alarm or detector that becomes active or clears."""

    active: bool = True


class GasAlarm(ActiveFlag):
    """A gas detector; ``level`` in %LEL when the detector reports it."""

    level: float | None = Field(default=None, ge=0)


class CameraMotion(EventData):
    """Motion in a camera's view (metadata only, never video)."""

    active: bool = True
    zone: str | None = Field(default=None, max_length=_SHORT)


class CameraLineCrossed(EventData):
    """An object crossed a virtual line."""

    line: str = Field(max_length=_SHORT)
    direction: str | None = Field(default=None, max_length=_SHORT)
    object: str | None = Field(default=None, max_length=_SHORT)


class CameraIntrusion(EventData):
    """An object entered or stayed in a guarded zone."""

    zone: str = Field(max_length=_SHORT)
    object: str | None = Field(default=None, max_length=_SHORT)
    active: bool = True


class EmergencyButton(EventData):
    """A resident pressed an emergency button."""

    pressed: bool = True


class PresenceMotion(EventData):
    """A motion sensor inside a dwelling: activity, used for welfare checks."""

    active: bool = True


class DeviceFault(EventData):
    """A device stopped answering or reported a fault."""

    reason: str = Field(max_length=256)


class DeviceRecovered(EventData):
    """A device answers again after a fault."""

    after_s: float | None = Field(default=None, ge=0)


@dataclasses.dataclass(frozen=True, slots=True)
class EventSpec:
    """One kind of event."""

    kind: str
    data_model: type[EventData]
    life_safety: bool
    description: str


EVENT_SPECS: dict[str, EventSpec] = {
    spec.kind: spec
    for spec in (
        EventSpec("door.access", DoorAccess, False, "credential presented at a reader"),
        EventSpec("door.forced", DoorForced, True, "door opened without grant or exit request"),
        EventSpec("door.held_open", DoorHeldOpen, False, "door open longer than allowed"),
        EventSpec("door.contact", DoorContact, False, "door contact opened or closed"),
        EventSpec("door.exit_request", DoorExitRequest, False, "request-to-exit pressed"),
        EventSpec("camera.motion", CameraMotion, False, "motion in a camera's view"),
        EventSpec("camera.line_crossed", CameraLineCrossed, False, "object crossed a line"),
        EventSpec("camera.intrusion", CameraIntrusion, False, "object in a guarded zone"),
        EventSpec("camera.tamper", ActiveFlag, False, "camera covered, moved or defocused"),
        EventSpec("alarm.smoke", ActiveFlag, True, "smoke detector in alarm"),
        EventSpec("alarm.water_leak", ActiveFlag, True, "water leak detected"),
        EventSpec("alarm.gas", GasAlarm, True, "combustible gas detected"),
        EventSpec(
            "emergency.button", EmergencyButton, True, "resident pressed an emergency button"
        ),
        EventSpec("presence.motion", PresenceMotion, False, "movement inside a dwelling"),
        EventSpec("device.fault", DeviceFault, False, "device stopped answering or faulted"),
        EventSpec("device.recovered", DeviceRecovered, False, "device answers again"),
    )
}
LIFE_SAFETY_KINDS = frozenset(k for k, spec in EVENT_SPECS.items() if spec.life_safety)


def is_life_safety(kind: str) -> bool:
    """Whether events of ``kind`` are life-safety events (never dropped, never delayed)."""
    return kind in LIFE_SAFETY_KINDS


def validate_event_data(kind: str, data: Any) -> dict[str, Any]:
    """Validate ``data`` for ``kind`` and return it normalised.

    Raises:
        DecodeError: naming ``kind`` or ``data.<field>`` and the reason.
    """
    spec = EVENT_SPECS.get(kind)
    if spec is None:
        reason = "not a valid kind" if not _KIND_RE.match(kind) else "unknown event kind"
        raise DecodeError("kind", f"{reason}: {kind!r}")
    try:
        model = spec.data_model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in ("data", *err["loc"]))
        raise DecodeError(path, err["msg"]) from None
    return model.model_dump(exclude_none=True)
