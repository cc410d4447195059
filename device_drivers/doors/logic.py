"""A door's state machine: contact, exit requests and access decisions in; door events out.

Pure and clock-driven: every input carries its own timestamp and nothing here reads a clock or
does I/O, so the OSDP driver, a GPIO driver and the tests all drive it the same way.

Rules:

* A granted access or an exit request *authorises* the door for ``grant_window_s`` from that
  instant (several authorisations extend the window).
* The contact opening inside the window is an authorised opening.  Opening outside any window is
  ``door.forced``.  When an authorised opening closes, the window ends ``relock_s`` later (the
  strike relocks), so a door swinging back or a bouncing contact is not a forced entry, but a
  second entry on the same grant some seconds later is.
* A door open for ``held_open_s`` gives one ``door.held_open`` per opening, stamped with the
  instant the limit was reached, whenever :meth:`DoorLogic.tick` (or the next input) notices.
* Unless told the initial state, the first contact report only *learns* it: it is published
  as ``door.contact`` but never as ``door.forced``, since the opening was not seen.
* Repeated reports of an unchanged state produce nothing.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from device_drivers.base import DeviceEvent

__all__ = ["DoorLogic", "DoorSettings", "DoorState"]


@dataclasses.dataclass(frozen=True, slots=True)
class DoorSettings:
    """How one door is judged.

    Attributes:
        door: name of the door, put in every event's ``door``; omitted when ``None``.
        grant_window_s: after a grant or an exit request the door may open within this time.
        held_open_s: a door open this long is held open; ``None`` never reports it.
        relock_s: after an authorised opening closes, a re-opening within this time still
            counts as the same opening.
    """

    door: str | None = None
    grant_window_s: float = 10.0
    held_open_s: float | None = 30.0
    relock_s: float = 1.0

    def __post_init__(self) -> None:
        if self.grant_window_s <= 0:
            msg = "grant_window_s must be positive"
            raise ValueError(msg)
        if self.held_open_s is not None and self.held_open_s <= 0:
            msg = "held_open_s must be positive"
            raise ValueError(msg)
        if self.relock_s < 0:
            msg = "relock_s must not be negative"
            raise ValueError(msg)


class DoorState(enum.StrEnum):
    """What the door contact last said."""

    UNKNOWN = "unknown"
    CLOSED = "closed"
    OPEN = "open"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class DoorLogic:
    """The state machine of one door, whose events are attributed to ``device_id``.

    Args:
        device_id: the device (usually the door's reader) that the events belong to.
        settings: timings and the door's name.
        initial: what to assume before the contact has reported.  ``UNKNOWN`` learns the state
            from the first report; ``CLOSED`` suits contacts that report only changes, whose
            first report may be a forced opening.
    """

    def __init__(
        self,
        device_id: str,
        settings: DoorSettings,
        *,
        initial: DoorState = DoorState.UNKNOWN,
    ) -> None:
        self.device_id = device_id
        self.settings = settings
        self.state = initial
        self._grant_ms = _ms(settings.grant_window_s)
        self._relock_ms = _ms(settings.relock_s)
        self._held_ms = None if settings.held_open_s is None else _ms(settings.held_open_s)
        self._authorised_until: int | None = None
        self._opened_at: int | None = None
        self._opening_authorised = False
        self._held_due: int | None = None

    # -- inputs ---------------------------------------------------------------------------------

    def contact(self, ts_ms: int, *, is_open: bool) -> list[DeviceEvent]:
        """The door contact reports open (``is_open``) or closed at ``ts_ms``."""
        events = self.tick(ts_ms)
        new_state = DoorState.OPEN if is_open else DoorState.CLOSED
        if new_state is self.state:
            return events
        learning = self.state is DoorState.UNKNOWN
        self.state = new_state
        events.append(self._event(ts_ms, "door.contact", {"open": is_open}))
        if is_open:
            self._opened_at = ts_ms
            self._held_due = None if self._held_ms is None else ts_ms + self._held_ms
            self._opening_authorised = learning or self.is_authorised(ts_ms)
            if not self._opening_authorised:
                events.append(self._event(ts_ms, "door.forced", {}))
        else:
            if self._opening_authorised and self._authorised_until is not None:
                self._authorised_until = min(self._authorised_until, ts_ms + self._relock_ms)
            self._opened_at = None
            self._held_due = None
            self._opening_authorised = False
        return events

    def exit_request(self, ts_ms: int) -> list[DeviceEvent]:
        """The request-to-exit button or sensor fired at ``ts_ms``: authorises the door."""
        events = self.tick(ts_ms)
        self._authorise(ts_ms)
        events.append(self._event(ts_ms, "door.exit_request", {}))
        return events

    def access(self, ts_ms: int, *, granted: bool) -> list[DeviceEvent]:
        """An access decision at ``ts_ms``; a grant authorises the door.

        The ``door.access`` event itself is the reader's to emit; this returns only what the
        door's timers produce.
        """
        events = self.tick(ts_ms)
        if granted:
            self._authorise(ts_ms)
        return events

    def tick(self, now_ms: int) -> list[DeviceEvent]:
        """Events that became due by ``now_ms`` (a door held open)."""
        due = self._held_due
        if due is None or now_ms < due or self._opened_at is None:
            return []
        self._held_due = None  # once per opening
        open_s = (due - self._opened_at) / 1000
        return [self._event(due, "door.held_open", {"open_s": open_s})]

    # -- queries --------------------------------------------------------------------------------

    def next_due_ms(self) -> int | None:
        """When :meth:`tick` next has something to report, if ever."""
        return self._held_due

    def is_authorised(self, ts_ms: int) -> bool:
        """Whether the door may open at ``ts_ms`` without being forced."""
        return self._authorised_until is not None and ts_ms <= self._authorised_until

    # -- helpers --------------------------------------------------------------------------------

    def _authorise(self, ts_ms: int) -> None:
        until = ts_ms + self._grant_ms
        if self._authorised_until is None or until > self._authorised_until:
            self._authorised_until = until

    def _event(self, ts_ms: int, kind: str, data: dict[str, Any]) -> DeviceEvent:
        if self.settings.door is not None:
            data["door"] = self.settings.door
        return DeviceEvent(self.device_id, ts_ms, kind, data)
