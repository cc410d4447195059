"""Doors assembled from several devices, judged by one door state machine.

A door's contact, exit buttons and readers may each be on a different driver (a GPIO contact,
a Wiegand reader).

Drivers that see a whole door themselves (an OSDP reader with its own contact input) need no
entry here.  The devices publish their own ``door.contact``, ``door.exit_request`` and
``door.access`` events as usual; a door adds what only the combination reveals:
``door.forced`` and ``door.held_open``.
"""

from __future__ import annotations

from collections.abc import Iterable

from device_drivers import DeviceEvent
from device_drivers.doors import DoorLogic, DoorSettings
from edge_agent.config import DoorConfig

# What a door adds to what its devices report themselves.
_DOOR_KINDS = frozenset({"door.forced", "door.held_open"})


class Doors:
    """Routes device events to the doors they belong to."""

    def __init__(self, configs: Iterable[DoorConfig]) -> None:
        self._logic: dict[str, DoorLogic] = {}
        self._contact_of: dict[str, str] = {}
        self._exits_of: dict[str, str] = {}
        self._readers_of: dict[str, str] = {}
        for door in configs:
            settings = DoorSettings(
                door=door.name, grant_window_s=door.grant_window_s, held_open_s=door.held_open_s
            )
            self._logic[door.name] = DoorLogic(door.contact, settings)
            self._contact_of[door.contact] = door.name
            self._exits_of.update(dict.fromkeys(door.exit_buttons, door.name))
            self._readers_of.update(dict.fromkeys(door.readers, door.name))

    def __bool__(self) -> bool:
        return bool(self._logic)

    def observe(self, event: DeviceEvent) -> list[DeviceEvent]:
        """Feed one device event; return the door events it causes."""
        out: list[DeviceEvent] = []
        if event.kind == "door.contact" and event.device in self._contact_of:
            logic = self._logic[self._contact_of[event.device]]
            out = logic.contact(event.ts_ms, is_open=bool(event.data.get("open")))
        elif event.kind == "door.exit_request" and event.device in self._exits_of:
            out = self._logic[self._exits_of[event.device]].exit_request(event.ts_ms)
        elif event.kind == "door.access" and event.device in self._readers_of:
            granted = event.data.get("granted")
            if granted is not None:
                out = self._logic[self._readers_of[event.device]].access(
                    event.ts_ms, granted=bool(granted)
                )
        return [e for e in out if e.kind in _DOOR_KINDS]

    def tick(self, now_ms: int) -> list[DeviceEvent]:
        """Events that time alone causes (a door held open too long)."""
        out: list[DeviceEvent] = []
        for logic in self._logic.values():
            out.extend(e for e in logic.tick(now_ms) if e.kind in _DOOR_KINDS)
        return out
