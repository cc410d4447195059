"""Door logic shared by the door drivers (OSDP readers, GPIO contacts): no I/O, no clock.

:class:`DoorLogic` turns a door contact, request-to-exit and access decisions into
``door.contact``, ``door.forced``, ``door.held_open`` and ``door.exit_request`` events;
:class:`KeypadBuffer` turns keypad keys into PINs, reported as ``pin:<digits>`` credentials;
:func:`access_event` builds ``door.access`` with the raw credential beside its data, and
:data:`Authorise` is the optional local access decision.

A driver owns one :class:`DoorLogic` per door, feeds it timestamped inputs, and calls
:meth:`DoorLogic.tick` whenever the clock reaches :meth:`DoorLogic.next_due_ms`::

    door = DoorLogic("east-gate-reader", DoorSettings(door="east-gate", held_open_s=30))
    door.access(ts, granted=True)
    events = door.contact(ts + 2_000, is_open=True)  # door.contact {open: true}
    events = door.tick(ts + 40_000)                  # door.held_open {open_s: 30.0}
"""

from __future__ import annotations

from device_drivers.doors.access import Authorise, access_event, decide, pseudonym_allow_list
from device_drivers.doors.keypad import KeypadBuffer, pin_credential
from device_drivers.doors.logic import DoorLogic, DoorSettings, DoorState

__all__ = [
    "Authorise",
    "DoorLogic",
    "DoorSettings",
    "DoorState",
    "KeypadBuffer",
    "access_event",
    "decide",
    "pin_credential",
    "pseudonym_allow_list",
]
