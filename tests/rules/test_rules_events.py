from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest

from rules import AlertState, Engine, Subject, Transition

SHANGHAI = ZoneInfo("Asia/Shanghai")
MIN = 60_000

EngineFor = Callable[[str], Engine]


def local_ms(text: str, tz: ZoneInfo = SHANGHAI) -> int:
    """Epoch ms of a local wall-clock time, e.g. '2026-01-02 23:30' (a Friday)."""
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp() * 1000)


T0 = local_ms("2026-01-05 12:00")  # a Monday noon in Shanghai


def states(transitions: list[Transition]) -> list[tuple[str, AlertState]]:
    return [(t.rule_id, t.state) for t in transitions]


SMOKE = """\
rules:
  - id: smoke-detected
    kind: event
    severity: critical
    issue_class: hard
    message: "Smoke at {place} (grid {grid_name}), device {device} [{event_kind}]"
    match:
      kind: alarm.smoke
      data: {active: true}
    resolve_on: {active: false}
"""


def test_event_match_fires_counts_repeats_and_resolves(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(SMOKE)

    firing = engine.on_event(subject, T0, "alarm.smoke", {"active": True})
    assert states(firing) == [("smoke-detected", AlertState.FIRING)]
    t = firing[0]
    assert (t.ts_ms, t.since_ms, t.event_kind, t.value) == (T0, T0, "alarm.smoke", None)
    assert t.message == (
        "Smoke at Building 3, floor 2, unit 201 (grid East Gate), device dev-1 [alarm.smoke]"
    )

    assert engine.on_event(subject, T0 + MIN, "alarm.smoke", {"active": True}) == []
    [alert] = engine.active()
    assert (alert.state, alert.since_ms, alert.last_ts_ms, alert.count) == (
        AlertState.FIRING,
        T0,
        T0 + MIN,
        2,
    )

    resolved = engine.on_event(subject, T0 + 2 * MIN, "alarm.smoke", {"active": False})
    assert states(resolved) == [("smoke-detected", AlertState.RESOLVED)]
    assert (resolved[0].ts_ms, resolved[0].since_ms) == (T0 + 2 * MIN, T0)
    assert engine.active() == []

    # A new alarm is a new firing period.
    again = engine.on_event(subject, T0 + 3 * MIN, "alarm.smoke", {"active": True})
    assert states(again) == [("smoke-detected", AlertState.FIRING)]
    assert again[0].since_ms == T0 + 3 * MIN


def test_data_conditions_must_all_match(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(SMOKE)

    assert (
        engine.on_event(subject, T0, "alarm.smoke", {"active": False}) == []
    )  # nothing to resolve
    assert engine.on_event(subject, T0, "alarm.smoke", {}) == []
    assert engine.on_event(subject, T0, "alarm.smoke", {"active": 1}) == []  # 1 is not True
    assert engine.on_event(subject, T0, "alarm.gas", {"active": True}) == []
    assert engine.active() == []


DENIED = """\
rules:
  - id: card-denied
    kind: event
    severity: minor
    message: "Card refused at {place}"
    match:
      kind: door.access
      data: {granted: false, reason: expired}
"""


def test_several_data_conditions(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(DENIED)
    base = {"credential": "h1:" + "0" * 32, "format": "wiegand26"}

    assert engine.on_event(subject, T0, "door.access", {**base, "granted": True}) == []
    assert engine.on_event(subject, T0, "door.access", {**base, "granted": False}) == []
    fired = engine.on_event(
        subject, T0, "door.access", {**base, "granted": False, "reason": "expired"}
    )
    assert states(fired) == [("card-denied", AlertState.FIRING)]


ANY_ALARM = """\
rules:
  - id: any-alarm
    kind: event
    severity: warning
    message: "{event_kind} at {place}"
    match: {kind: "alarm.*", data: {active: true}}
    resolve_on: {active: false}
"""


def test_prefix_pattern_matches_every_kind_under_it(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(ANY_ALARM)
    gas = Subject("gas-1", subject.labels)

    assert engine.on_event(subject, T0, "camera.tamper", {"active": True}) == []
    [smoke] = engine.on_event(subject, T0, "alarm.smoke", {"active": True})
    [leak] = engine.on_event(gas, T0, "alarm.gas", {"active": True})
    assert (smoke.event_kind, leak.event_kind) == ("alarm.smoke", "alarm.gas")
    assert smoke.message == "alarm.smoke at Building 3, floor 2, unit 201"
    assert engine.statistics().evaluations == 2


NIGHT = """\
rules:
  - id: door-forced-night
    kind: event
    severity: major
    issue_class: composite
    message: "Door forced at {place} at night"
    match: {kind: door.forced}
    schedule:
      timezone: Asia/Shanghai
      between: [22:00, 06:00]
    auto_resolve: 15m
"""


@pytest.mark.parametrize(
    ("local", "fires"),
    [
        ("2026-01-05 21:59", False),
        ("2026-01-05 22:00", True),  # start is inclusive
        ("2026-01-05 23:30", True),
        ("2026-01-06 00:00", True),  # across midnight
        ("2026-01-06 05:59", True),
        ("2026-01-06 06:00", False),  # end is exclusive
        ("2026-01-06 12:00", False),
    ],
)
def test_night_window_in_its_timezone(
    engine_for: EngineFor, subject: Subject, local: str, fires: bool
) -> None:
    engine = engine_for(NIGHT)
    got = engine.on_event(subject, local_ms(local), "door.forced", {})
    assert states(got) == ([("door-forced-night", AlertState.FIRING)] if fires else [])


def test_schedule_reads_the_rule_timezone_not_utc(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(NIGHT)
    # 15:30 UTC is 23:30 in Shanghai: night there, though afternoon in UTC.
    assert engine.on_event(
        subject, local_ms("2026-01-05 15:30", ZoneInfo("UTC")), "door.forced", {}
    )
    engine = engine_for(NIGHT.replace("Asia/Shanghai", "UTC"))
    assert (
        engine.on_event(subject, local_ms("2026-01-05 15:30", ZoneInfo("UTC")), "door.forced", {})
        == []
    )


FRIDAY_NIGHT = NIGHT.replace(
    "between: [22:00, 06:00]", "between: [22:00, 06:00]\n      days: [fri]"
)


@pytest.mark.parametrize(
    ("local", "fires"),
    [
        ("2026-01-02 23:00", True),  # Friday night
        ("2026-01-03 02:00", True),  # Saturday early morning still belongs to Friday night
        ("2026-01-02 02:00", False),  # Friday early morning belongs to Thursday night
        ("2026-01-03 23:00", False),  # Saturday night
    ],
)
def test_days_name_the_day_the_window_starts(
    engine_for: EngineFor, subject: Subject, local: str, fires: bool
) -> None:
    engine = engine_for(FRIDAY_NIGHT)
    assert bool(engine.on_event(subject, local_ms(local), "door.forced", {})) is fires


WEEKDAY_OFFICE = """\
rules:
  - id: office-door
    kind: event
    severity: minor
    message: "Office door used at {place} out of hours"
    match: {kind: door.contact, data: {open: true}}
    schedule: {timezone: Asia/Shanghai, days: [sat, sun]}
"""


def test_days_without_a_time_window(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(WEEKDAY_OFFICE)
    assert (
        engine.on_event(subject, local_ms("2026-01-05 10:00"), "door.contact", {"open": True}) == []
    )
    assert engine.on_event(subject, local_ms("2026-01-04 10:00"), "door.contact", {"open": True})


def test_resolve_on_applies_outside_the_schedule(engine_for: EngineFor, subject: Subject) -> None:
    text = """\
rules:
  - id: intrusion-night
    kind: event
    severity: major
    message: "Intrusion at {place}"
    match: {kind: camera.intrusion, data: {active: true}}
    resolve_on: {active: false}
    schedule: {timezone: Asia/Shanghai, between: ["22:00", "06:00"]}
"""
    engine = engine_for(text)
    zone = {"zone": "roof"}
    assert engine.on_event(
        subject, local_ms("2026-01-06 05:50"), "camera.intrusion", {**zone, "active": True}
    )
    resolved = engine.on_event(
        subject, local_ms("2026-01-06 06:10"), "camera.intrusion", {**zone, "active": False}
    )
    assert states(resolved) == [("intrusion-night", AlertState.RESOLVED)]


def test_auto_resolve_via_tick(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(NIGHT)
    start = local_ms("2026-01-05 23:00")
    engine.on_event(subject, start, "door.forced", {})

    assert engine.tick(start + 15 * MIN - 1) == []
    resolved = engine.tick(start + 20 * MIN)
    assert states(resolved) == [("door-forced-night", AlertState.RESOLVED)]
    # Stamped with the deadline, not with the time tick() happened to run.
    assert (resolved[0].ts_ms, resolved[0].since_ms) == (start + 15 * MIN, start)
    assert resolved[0].message == "Door forced at Building 3, floor 2, unit 201 at night"
    assert engine.active() == []
    assert engine.tick(start + 60 * MIN) == []


def test_a_repeat_extends_auto_resolve(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(NIGHT)
    start = local_ms("2026-01-05 23:00")
    engine.on_event(subject, start, "door.forced", {})
    assert engine.on_event(subject, start + 10 * MIN, "door.forced", {}) == []

    assert engine.tick(start + 15 * MIN) == []  # the first deadline went stale
    assert engine.active()[0].count == 2
    resolved = engine.tick(start + 25 * MIN)
    assert [t.ts_ms for t in resolved] == [start + 25 * MIN]


def test_expired_alert_is_closed_lazily_when_the_next_event_arrives(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(NIGHT)
    start = local_ms("2026-01-05 23:00")
    engine.on_event(subject, start, "door.forced", {})

    # No tick() in between: the old firing period ends at its deadline, a new one starts.
    got = engine.on_event(subject, start + 40 * MIN, "door.forced", {})
    assert [(t.state, t.ts_ms, t.since_ms) for t in got] == [
        (AlertState.RESOLVED, start + 15 * MIN, start),
        (AlertState.FIRING, start + 40 * MIN, start + 40 * MIN),
    ]
    assert engine.tick(start + 15 * MIN) == []  # nothing resolves twice


def test_event_rules_only_meet_their_kinds(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(SMOKE + NIGHT.replace("rules:\n", ""))

    engine.on_event(subject, T0, "camera.motion", {"active": True})
    assert engine.statistics().evaluations == 0
    engine.on_event(subject, T0, "door.forced", {})
    assert engine.statistics().evaluations == 1
    assert engine.statistics().events == 2
