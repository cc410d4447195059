"""Absence (deadman per device) and inactivity (welfare check per unit), driven by tick()."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

from rules import AlertState, Engine, Subject, Transition

EngineFor = Callable[[str], Engine]
SHANGHAI = ZoneInfo("Asia/Shanghai")
MIN = 60_000
HOUR = 60 * MIN
T0 = int(dt.datetime(2026, 1, 5, 12, 0, tzinfo=SHANGHAI).timestamp() * 1000)


def states(transitions: list[Transition]) -> list[tuple[str, str, AlertState]]:
    return [(t.rule_id, t.device, t.state) for t in transitions]


def device(device_id: str, device_kind: str, unit: str = "201") -> Subject:
    labels = {
        "device_kind": device_kind,
        "building": "3",
        "floor": "2",
        "unit": unit,
        "place": f"Building 3, floor 2, unit {unit}",
    }
    return Subject(device_id, labels)


ABSENCE = """\
rules:
  - id: device-silent
    kind: absence
    severity: minor
    message: "{device_kind} {device} at {place} silent for {silent_min:.0f} min"
    scope: {device_kinds: [env_sensor, smoke_detector]}
    for: 10m
    for_device_kinds: {smoke_detector: 2h}
"""


def test_absence_fires_on_tick_after_silence_and_resolves_on_activity(
    engine_for: EngineFor,
) -> None:
    engine = engine_for(ABSENCE)
    env = device("env-1", "env_sensor")
    assert engine.on_reading(env, T0, {"temperature": 21.0}) == []
    assert engine.tick(T0 + 10 * MIN - 1) == []
    firing = engine.tick(T0 + 10 * MIN)
    assert states(firing) == [("device-silent", "env-1", AlertState.FIRING)]
    assert (firing[0].ts_ms, firing[0].since_ms) == (T0 + 10 * MIN, T0)
    assert (
        firing[0].message == "env_sensor env-1 at Building 3, floor 2, unit 201 silent for 10 min"
    )
    assert engine.tick(T0 + 12 * MIN) == []  # fired once, not every tick
    [alert] = engine.active()
    assert (alert.rule_id, alert.device, alert.state) == ("device-silent", "env-1", "firing")

    # Any event is a sign of life, too.
    resolved = engine.on_event(env, T0 + 15 * MIN, "device.recovered", {"after_s": 900})
    assert states(resolved) == [("device-silent", "env-1", AlertState.RESOLVED)]
    assert resolved[0].since_ms == T0
    assert engine.active() == []
    assert engine.tick(T0 + 25 * MIN - 1) == []
    again = engine.tick(T0 + 25 * MIN)
    assert states(again) == [("device-silent", "env-1", AlertState.FIRING)]
    assert again[0].since_ms == T0 + 15 * MIN  # a new firing period


def test_absence_regular_reports_keep_it_quiet_and_kinds_have_their_own_for(
    engine_for: EngineFor,
) -> None:
    engine = engine_for(ABSENCE)
    env = device("env-1", "env_sensor")
    smoke = device("smoke-1", "smoke_detector")
    camera = device("cam-1", "camera")  # out of scope
    engine.on_event(smoke, T0, "alarm.smoke", {"active": False})
    engine.on_event(camera, T0, "camera.tamper", {"active": False})
    for minute in range(0, 120, 5):
        engine.on_reading(env, T0 + minute * MIN, {"temperature": 21.0})
        assert engine.tick(T0 + minute * MIN) == []
    # env-1 reported every 5 min; the smoke detector's 2 h is up now; the camera is not watched.
    assert states(engine.tick(T0 + 2 * HOUR)) == [("device-silent", "smoke-1", AlertState.FIRING)]
    assert states(engine.tick(T0 + 5 * HOUR)) == [("device-silent", "env-1", AlertState.FIRING)]


def test_absence_without_a_tick_reports_the_gap_on_the_next_activity(
    engine_for: EngineFor,
) -> None:
    # A replay may jump over the deadline: the gap is still reported, firing then resolving.
    engine = engine_for(ABSENCE)
    env = device("env-1", "env_sensor")
    engine.on_reading(env, T0, {"temperature": 21.0})
    out = engine.on_reading(env, T0 + 30 * MIN, {"temperature": 21.0})
    assert states(out) == [
        ("device-silent", "env-1", AlertState.FIRING),
        ("device-silent", "env-1", AlertState.RESOLVED),
    ]
    assert [t.ts_ms for t in out] == [T0 + 10 * MIN, T0 + 30 * MIN]
    assert engine.tick(T0 + 31 * MIN) == []


def test_a_device_never_seen_is_not_reported(engine_for: EngineFor) -> None:
    engine = engine_for(ABSENCE)
    assert engine.tick(T0 + 24 * HOUR) == []


INACTIVITY = """\
rules:
  - id: welfare-check
    kind: inactivity
    severity: major
    issue_class: composite
    message: "No movement at {place} for {silent_min:.0f} min: call or visit the resident"
    for: 12h
"""

PLACE = "place:3/2/201"


def test_inactivity_is_kept_per_unit_by_any_activity_device(engine_for: EngineFor) -> None:
    engine = engine_for(INACTIVITY)
    motion = device("pir-1", "motion_sensor")
    door = device("door-1", "door_contact")
    neighbour = device("pir-2", "motion_sensor", unit="202")
    assert engine.on_event(motion, T0, "presence.motion", {"active": True}) == []
    assert engine.on_event(neighbour, T0, "presence.motion", {"active": True}) == []
    # Door activity in the same unit, from another device, restarts the unit's timer.
    assert engine.on_event(door, T0 + 6 * HOUR, "door.contact", {"open": True}) == []
    # Readings and non-activity events are not a person moving about.
    engine.on_reading(motion, T0 + 8 * HOUR, {"temperature": 20.0})
    engine.on_event(motion, T0 + 8 * HOUR, "device.fault", {"reason": "low battery"})

    assert states(engine.tick(T0 + 12 * HOUR)) == [
        ("welfare-check", "place:3/2/202", AlertState.FIRING)
    ]
    assert engine.tick(T0 + 18 * HOUR - 1) == []
    firing = engine.tick(T0 + 18 * HOUR)
    assert states(firing) == [("welfare-check", PLACE, AlertState.FIRING)]
    t = firing[0]
    assert (t.since_ms, t.labels["unit"], t.labels["device"]) == (T0 + 6 * HOUR, "201", PLACE)
    assert t.message == (
        "No movement at Building 3, floor 2, unit 201 for 720 min: call or visit the resident"
    )
    resolved = engine.on_event(motion, T0 + 19 * HOUR, "presence.motion", {"active": True})
    assert states(resolved) == [("welfare-check", PLACE, AlertState.RESOLVED)]


def test_inactivity_watches_a_unit_from_its_first_activity(engine_for: EngineFor) -> None:
    engine = engine_for(INACTIVITY)
    sensor = device("th-1", "temp_humidity")
    motion = device("pir-1", "motion_sensor")
    engine.on_reading(sensor, T0, {"temperature": 20.0})
    assert engine.tick(T0 + 24 * HOUR) == []  # readings alone never start a welfare check
    assert engine.on_event(motion, T0 + 30 * HOUR, "presence.motion", {"active": True}) == []
    assert engine.tick(T0 + 42 * HOUR - 1) == []
    assert states(engine.tick(T0 + 42 * HOUR)) == [("welfare-check", PLACE, AlertState.FIRING)]


def test_inactivity_skips_devices_with_no_unit(engine_for: EngineFor) -> None:
    engine = engine_for(INACTIVITY)
    lobby = Subject("pir-lobby", {"building": "3", "device_kind": "motion_sensor"})
    engine.on_event(lobby, T0, "presence.motion", {"active": True})
    assert engine.tick(T0 + 48 * HOUR) == []


def test_inactivity_with_a_schedule_waits_for_the_window(engine_for: EngineFor) -> None:
    text = INACTIVITY.replace("for: 12h", "for: 12h\n    schedule:\n") + (
        "      timezone: Asia/Shanghai\n      between: ['08:00', '22:00']\n"
    )
    engine = engine_for(text)
    motion = device("pir-1", "motion_sensor")
    engine.on_event(motion, T0 + 2 * HOUR, "presence.motion", {"active": True})  # 14:00
    # 12 h later is 02:00: a resident asleep is quiet, so the check waits for 08:00.
    for hour in range(14, 20):
        assert engine.tick(T0 + hour * HOUR) == []
    firing = engine.tick(T0 + 20 * HOUR)  # 08:00 next day
    assert states(firing) == [("welfare-check", PLACE, AlertState.FIRING)]
    assert firing[0].ts_ms == T0 + 20 * HOUR
