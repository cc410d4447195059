"""``door.access`` events and the optional local access decision.

A driver knows the raw credential; the pseudonym is the edge agent's.  The local decision is
therefore an injected callable, :data:`Authorise`, that gets the raw credential and answers
``True`` (grant), ``False`` (deny) or ``None`` (no decision here: the hub or a separate panel
decides).  Without one, ``door.access`` carries no ``granted``.

:func:`pseudonym_allow_list` builds the intended one: an allow-list of *pseudonyms* (the
``h1:...`` values the hub sees, so access is administered without ever handling a card number),
checked with the agent's keyed pseudonymiser.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

from device_drivers.base import DeviceEvent

__all__ = ["Authorise", "access_event", "decide", "pseudonym_allow_list"]

_LOG = logging.getLogger(__name__)

# (device id, raw credential) -> True to grant, False to deny, None for no decision.
Authorise: TypeAlias = Callable[[str, str], "bool | None"]

DENIED_REASON = "not_allowed"


def decide(authorise: Authorise | None, device_id: str, credential: str) -> bool | None:
    """Ask ``authorise``; a failing authoriser makes no decision rather than a wrong one."""
    if authorise is None:
        return None
    try:
        decision = authorise(device_id, credential)
    except Exception:  # noqa: BLE001 - a broken authoriser must not stop the reader
        _LOG.exception("access decision for %s failed; reporting no decision", device_id)
        return None
    return decision if isinstance(decision, bool) else None


def pseudonym_allow_list(pseudonymise: Callable[[str], str], allowed: Iterable[str]) -> Authorise:
    """An :data:`Authorise` granting exactly the credentials whose pseudonym is ``allowed``.

    Args:
        pseudonymise: the edge agent's keyed pseudonymiser (raw credential -> ``h1:...``).
        allowed: pseudonyms of the credentials to let in.
    """
    granted = frozenset(allowed)

    def authorise(device_id: str, credential: str) -> bool:
        del device_id
        return pseudonymise(credential) in granted

    return authorise


def access_event(
    device_id: str,
    ts_ms: int,
    *,
    credential: str,
    fmt: str,
    bits: int | None,
    door: str | None,
    granted: bool | None,
) -> DeviceEvent:
    """A ``door.access`` event: the raw credential beside ``data``, never in it."""
    data: dict[str, Any] = {"format": fmt}
    if bits is not None:
        data["bits"] = bits
    if door is not None:
        data["door"] = door
    if granted is not None:
        data["granted"] = granted
        if not granted:
            data["reason"] = DENIED_REASON
    return DeviceEvent(device_id, ts_ms, "door.access", data, credential=credential)
