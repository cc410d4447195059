"""Shared helpers for channel tests: a smoke alert in Building 3, firing and resolved."""

from __future__ import annotations

import dataclasses

from hub.notifiers import Notification
from hub.store import AlertRecord

FIRING_MS = 1_700_000_000_000  # 2023-11-15 06:13:20 +08:00
RESOLVED_MS = FIRING_MS + 125_000

ALERT = AlertRecord(
    id="a1b2c3d4e5f60718",
    rule_id="smoke-detected",
    device="b3-2-201-smoke",
    state="firing",
    severity="critical",
    issue_class="hard",
    summary="烟感报警 Smoke detected",
    message="Smoke at Building 3, floor 2, unit 201 (grid North grid): check the unit now",
    labels={
        "site": "sunrise",
        "gateway": "gw-north",
        "device": "b3-2-201-smoke",
        "device_kind": "smoke",
        "grid": "north",
        "grid_name": "North grid",
        "building": "3",
        "floor": "2",
        "unit": "201",
        "area": "",
        "place": "Building 3, floor 2, unit 201",
    },
    value=1.0,
    started_ms=FIRING_MS,
    firing_ms=FIRING_MS,
    resolved_ms=None,
    updated_ms=FIRING_MS,
)
RECIPIENTS = ("Wang Fang (grid_worker)", "Chen Min (community_office)")


def firing(**changes: object) -> Notification:
    return Notification(dataclasses.replace(ALERT, **changes), "firing", RECIPIENTS)  # type: ignore[arg-type]


def resolved(**changes: object) -> Notification:
    alert = dataclasses.replace(ALERT, state="resolved", resolved_ms=RESOLVED_MS, **changes)  # type: ignore[arg-type]
    return Notification(alert, "resolved", RECIPIENTS)
