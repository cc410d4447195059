"""Engine snapshots: the evaluation state survives a restart, on virtual time."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from rules import (
    SNAPSHOT_VERSION,
    AlertState,
    Engine,
    RulesError,
    SnapshotError,
    Subject,
    Transition,
    parse_rules,
    rule_fingerprint,
)
from rules._reference import SequentialEngine
from rules._snapshot import _DECODERS, _TABLES, decode_arrays
from rules.engine import EngineState

T0 = 1_767_585_600_000  # 2026-01-05 04:00 UTC
SEC = 1000
MIN = 60 * SEC
PLACE = "Building 3, floor 2, unit 201"
UNIT = "place:3/2/201"


def states(transitions: list[Transition]) -> list[tuple[str, str, AlertState]]:
    return [(t.rule_id, t.device, t.state) for t in transitions]


def restarted(engine: Engine, text: str | None = None) -> Engine:
    """What a hub restart does: rules loaded again (perhaps edited), the state restored."""
    rules = parse_rules(text, "test.yaml") if text is not None else engine.rules
    fresh = Engine(rules)
    fresh.restore(engine.snapshot())
    return fresh


def unit_device(device: str, device_kind: str = "env_sensor") -> Subject:
    return Subject(
        device,
        {
            "site": "s1",
            "device_kind": device_kind,
            "grid": "g7",
            "grid_name": "East Gate",
            "building": "3",
            "floor": "2",
            "unit": "201",
            "place": PLACE,
        },
    )


HIGH_TEMPERATURE = """\
  - id: high-temperature
    kind: threshold
    severity: critical
    message: "{value:.1f} °C at {place}"
    metric: temperature
    above: 57
    for: 30s
    clear_above: 50
"""
DOOR_FORCED = """\
  - id: door-forced
    kind: event
    severity: major
    message: "Door forced at {place}, reader {device}"
    match: {kind: door.forced}
    auto_resolve: 15m
"""


def test_a_pending_threshold_fires_at_its_original_deadline_after_a_restart(
    subject: Subject,
) -> None:
    text = "rules:\n" + HIGH_TEMPERATURE
    engine = Engine(parse_rules(text, "test.yaml"))
    assert states(engine.on_reading(subject, T0, {"temperature": 60.0})) == [
        ("high-temperature", "dev-1", AlertState.PENDING)
    ]

    engine = restarted(engine, text)
    assert engine.on_reading(subject, T0 + 20 * SEC, {"temperature": 61.0}) == []
    firing = engine.on_reading(subject, T0 + 30 * SEC, {"temperature": 62.0})
    assert states(firing) == [("high-temperature", "dev-1", AlertState.FIRING)]
    assert (firing[0].ts_ms, firing[0].since_ms) == (T0 + 30 * SEC, T0)
    assert firing[0].message == f"62.0 °C at {PLACE}"
    [alert] = engine.active()
    assert (alert.state, alert.since_ms, alert.count) == (AlertState.FIRING, T0, 3)
    # Without the snapshot the same readings would only start a new `for`.
    fresh = Engine(engine.rules)
    assert states(fresh.on_reading(subject, T0 + 30 * SEC, {"temperature": 62.0})) == [
        ("high-temperature", "dev-1", AlertState.PENDING)
    ]


COUNT = """\
rules:
  - id: cards-denied
    kind: count
    severity: major
    message: "{count} denied cards at {place}"
    match: {kind: door.access, data: {granted: false}}
    count: 3
    window: 1m
"""


def test_a_count_window_keeps_its_events_across_a_restart(subject: Subject) -> None:
    engine = Engine(parse_rules(COUNT, "test.yaml"))

    def denied(seconds: int) -> list[Transition]:
        return engine.on_event(subject, T0 + seconds * SEC, "door.access", {"granted": False})

    assert denied(0) == []
    assert denied(10) == []
    engine = restarted(engine, COUNT)
    firing = denied(20)
    assert states(firing) == [("cards-denied", "dev-1", AlertState.FIRING)]
    assert firing[0].since_ms == T0
    engine = restarted(engine, COUNT)
    # The window holds the last three (10, 20, 30 s): the alert lasts until 10 s + 1 m.
    assert denied(30) == []
    engine = restarted(engine, COUNT)
    assert engine.tick(T0 + 70 * SEC - 1) == []
    resolved = engine.tick(T0 + 70 * SEC)
    assert states(resolved) == [("cards-denied", "dev-1", AlertState.RESOLVED)]
    assert resolved[0].message == f"4 denied cards at {PLACE}"


ABSENCE = """\
rules:
  - id: device-silent
    kind: absence
    severity: minor
    message: "{device_kind} {device} at {place} silent for {silent_min:.0f} min"
    for: 10m
"""


def test_an_absence_deadline_survives_a_restart_with_no_data_after_it() -> None:
    engine = Engine(parse_rules(ABSENCE, "test.yaml"))
    assert engine.on_reading(unit_device("env-1"), T0, {"temperature": 21.0}) == []
    engine = restarted(engine, ABSENCE)
    assert engine.tick(T0 + 10 * MIN - 1) == []
    firing = engine.tick(T0 + 10 * MIN)
    assert states(firing) == [("device-silent", "env-1", AlertState.FIRING)]
    assert (firing[0].ts_ms, firing[0].since_ms) == (T0 + 10 * MIN, T0)
    # The subject's labels came back with it: the message still names the place.
    assert firing[0].message == f"env_sensor env-1 at {PLACE} silent for 10 min"
    assert firing[0].labels["grid_name"] == "East Gate"

    engine = restarted(engine, ABSENCE)
    assert engine.tick(T0 + 20 * MIN) == []  # fired once, not again after the restart
    resolved = engine.on_reading(unit_device("env-1"), T0 + 21 * MIN, {"temperature": 21.0})
    assert states(resolved) == [("device-silent", "env-1", AlertState.RESOLVED)]


CORRELATION = """\
rules:
  - id: smoke-and-heat
    kind: correlation
    severity: critical
    message: "Smoke and heat at {place}"
    window: 5m
    conditions:
      - event: {kind: alarm.smoke, data: {active: true}}
      - metric: temperature
        above: 45
"""


def test_a_correlation_remembers_what_occurred_before_a_restart() -> None:
    engine = Engine(parse_rules(CORRELATION, "test.yaml"))
    smoke, thermo = unit_device("smoke-1", "smoke"), unit_device("th-1")
    assert engine.on_event(smoke, T0, "alarm.smoke", {"active": True}) == []
    engine = restarted(engine, CORRELATION)
    firing = engine.on_reading(thermo, T0 + 2 * MIN, {"temperature": 55.0})
    assert states(firing) == [("smoke-and-heat", UNIT, AlertState.FIRING)]
    assert (firing[0].ts_ms, firing[0].since_ms) == (T0 + 2 * MIN, T0)
    engine = restarted(engine, CORRELATION)
    assert engine.tick(T0 + 5 * MIN - 1) == []
    resolved = engine.tick(T0 + 5 * MIN)
    assert states(resolved) == [("smoke-and-heat", UNIT, AlertState.RESOLVED)]
    assert resolved[0].message == f"Smoke and heat at {PLACE}"


ANOMALY = """\
rules:
  - id: pump-unusual
    kind: anomaly
    severity: minor
    message: "{value:.1f} at {place}, normally {mean:.2f} (z {zscore:.1f})"
    metric: temperature
    warmup: 10
    z: 4
    min_std: 0.1
"""


def test_an_anomaly_baseline_and_its_warm_up_survive_a_restart(subject: Subject) -> None:
    values = [20.0, 20.2, 19.9, 20.1, 20.3, 19.8, 20.0, 20.2, 20.1, 19.9, 20.0, 26.0, 20.1]
    reference = Engine(parse_rules(ANOMALY, "test.yaml"))
    expected = [
        reference.on_reading(subject, T0 + i * MIN, {"temperature": v})
        for i, v in enumerate(values)
    ]
    assert [states(t) for t in expected if t] == [
        [("pump-unusual", "dev-1", AlertState.FIRING)],  # the outlier
        [("pump-unusual", "dev-1", AlertState.RESOLVED)],
    ]

    engine = Engine(parse_rules(ANOMALY, "test.yaml"))
    got = []
    for i, value in enumerate(values):
        if i in {6, 11}:  # mid warm-up, and just before the outlier
            engine = restarted(engine, ANOMALY)
        got.append(engine.on_reading(subject, T0 + i * MIN, {"temperature": value}))
    assert got == expected  # to the last bit of the mean and the z-score in the message

    # A fresh engine at the same point would still be warming up.
    fresh = Engine(engine.rules)
    assert [
        fresh.on_reading(subject, T0 + i * MIN, {"temperature": v})
        for i, v in enumerate(values[6:])
    ] == [[]] * 7


def test_an_event_alert_auto_resolves_at_its_deadline_after_a_restart() -> None:
    text = "rules:\n" + DOOR_FORCED
    engine = Engine(parse_rules(text, "test.yaml"))
    reader = unit_device("gate-reader", "door_reader")
    assert states(engine.on_event(reader, T0, "door.forced", {})) == [
        ("door-forced", "gate-reader", AlertState.FIRING)
    ]
    engine = restarted(engine, text)
    # A repeat after the restart moves the deadline, as it would have without one.
    assert engine.on_event(reader, T0 + 5 * MIN, "door.forced", {}) == []
    engine = restarted(engine, text)
    assert engine.tick(T0 + 20 * MIN - 1) == []
    resolved = engine.tick(T0 + 20 * MIN)
    assert states(resolved) == [("door-forced", "gate-reader", AlertState.RESOLVED)]
    assert (resolved[0].ts_ms, resolved[0].since_ms) == (T0 + 20 * MIN, T0)
    assert resolved[0].message == f"Door forced at {PLACE}, reader gate-reader"
    assert resolved[0].event_kind == "door.forced"


def test_the_state_of_a_changed_or_removed_rule_is_dropped(subject: Subject) -> None:
    text = "rules:\n" + HIGH_TEMPERATURE + DOOR_FORCED
    engine = Engine(parse_rules(text, "test.yaml"))
    engine.on_reading(subject, T0, {"temperature": 60.0})
    engine.on_event(subject, T0, "door.forced", {})
    blob = engine.snapshot()

    # `for` edited from 30 s to 1 m: that rule starts fresh; the door's alert goes on.
    edited = "rules:\n" + HIGH_TEMPERATURE.replace("for: 30s", "for: 1m") + DOOR_FORCED
    engine = Engine(parse_rules(edited, "test.yaml"))
    report = engine.restore(blob)
    assert (report.states, report.dropped, report.dropped_rules) == (1, 1, ("high-temperature",))
    pending = engine.on_reading(subject, T0 + 30 * SEC, {"temperature": 60.0})
    assert states(pending) == [("high-temperature", "dev-1", AlertState.PENDING)]
    assert pending[0].since_ms == T0 + 30 * SEC
    assert states(engine.tick(T0 + 15 * MIN)) == [("door-forced", "dev-1", AlertState.RESOLVED)]

    # The door rule removed: its alert is not restored; nothing else changes.
    engine = Engine(parse_rules("rules:\n" + HIGH_TEMPERATURE, "test.yaml"))
    report = engine.restore(blob)
    assert (report.states, report.dropped, report.dropped_rules) == (1, 1, ("door-forced",))
    assert [(a.rule_id, a.state) for a in engine.active()] == [
        ("high-temperature", AlertState.PENDING)
    ]
    assert engine.tick(T0 + 15 * MIN) == []


def test_a_fingerprint_ignores_how_the_rule_was_written_but_not_what_it_says() -> None:
    [a] = parse_rules("rules:\n" + HIGH_TEMPERATURE, "a.yaml")
    [b] = parse_rules("rules:\n" + HIGH_TEMPERATURE.replace("for: 30s", "for: 30000ms"), "b.yaml")
    [c] = parse_rules("rules:\n" + HIGH_TEMPERATURE.replace("above: 57", "above: 58"), "c.yaml")
    assert rule_fingerprint(a) == rule_fingerprint(b)
    assert rule_fingerprint(a) != rule_fingerprint(c)


# Every kind, in one rule set, fed a scripted hour: restarting at any point changes nothing.
EVERY_KIND = """\
rules:
  - id: high-temperature
    kind: threshold
    severity: critical
    message: "{value:.1f} at {place}"
    metric: temperature
    above: 40
    for: 2m
    clear_above: 35
  - id: smoke
    kind: event
    severity: critical
    message: "Smoke at {place}"
    match: {kind: alarm.smoke, data: {active: true}}
    resolve_on: {active: false}
  - id: door-held
    kind: event
    severity: warning
    message: "Door held at {place}"
    match: {kind: door.held_open}
    auto_resolve: 5m
  - id: heat-rising
    kind: rate_of_change
    severity: major
    message: "{rate:.1f}/min at {place}"
    metric: temperature
    max_per_minute: 3
    direction: rise
    window: 2m
  - id: silent
    kind: absence
    severity: minor
    message: "{device} silent at {place}"
    for: 7m
  - id: welfare
    kind: inactivity
    severity: major
    message: "Nobody about at {place} for {silent_min:.0f} min"
    for: 20m
  - id: stuck
    kind: flat_line
    severity: warning
    message: "{metric} stuck at {value} at {place}"
    metric: humidity
    for: 10m
  - id: cards
    kind: count
    severity: major
    message: "{count} denied at {place}"
    match: {kind: door.access, data: {granted: false}}
    count: 3
    window: 1m
  - id: smoke-and-heat
    kind: correlation
    severity: critical
    message: "Fire at {place}"
    window: 5m
    conditions:
      - event: {kind: alarm.smoke, data: {active: true}}
      - metric: temperature
        above: 38
  - id: unusual
    kind: anomaly
    severity: minor
    message: "{value} unusual at {place}"
    metric: humidity
    warmup: 5
    z: 3
    min_std: 0.5
"""

Step = tuple[str, int, Any]


def hour_of_steps() -> list[Step]:
    """(what, minute*1000 + ms offset, payload) in time order."""
    steps: list[Step] = []
    temperatures = [22, 22, 23, 25, 29, 34, 39, 42, 44, 45, 43, 39, 36, 34, 30, 26, 24, 23, 23, 22]
    for minute in range(60):
        ts = T0 + minute * MIN
        if minute < 20:
            steps.append(("th", ts, {"temperature": float(temperatures[minute]), "humidity": 50.0}))
        elif minute < 30 or minute >= 45:
            steps.append(("th", ts, {"temperature": 22.0, "humidity": 50.0 + minute % 3}))
        if minute == 15:
            steps.append(("th", ts + 30 * SEC, {"temperature": 22.0, "humidity": 70.0}))
        if minute in {3, 40}:
            steps.append(("motion", ts + 5 * SEC, ("presence.motion", {"active": True})))
        if minute == 6:
            steps.append(("smoke", ts + 10 * SEC, ("alarm.smoke", {"active": True})))
        if minute == 12:
            steps.append(("smoke", ts + 10 * SEC, ("alarm.smoke", {"active": False})))
        if minute in {8, 10}:
            steps.append(("reader", ts + 20 * SEC, ("door.held_open", {"open_s": 90.0})))
        if minute == 30:
            for second in (1, 15, 30, 41):
                data = {"credential": "h1:" + "ab" * 16, "format": "wiegand26", "granted": False}
                steps.append(("reader", ts + second * SEC, ("door.access", data)))
    steps.sort(key=lambda step: step[1])
    return steps


def play(steps: list[Step], restart_every: int | None) -> tuple[list[list[Transition]], list[Any]]:
    subjects = {name: unit_device(name) for name in ("th", "motion", "smoke", "reader")}
    engine = Engine(parse_rules(EVERY_KIND, "test.yaml"))
    out: list[list[Transition]] = []
    last_tick = T0
    for index, (name, ts, payload) in enumerate(steps):
        if restart_every is not None and index % restart_every == 0:
            engine = restarted(engine, EVERY_KIND)
        if ts - last_tick >= 30 * SEC:
            out.append(engine.tick(ts - 1))
            last_tick = ts
        if isinstance(payload, tuple):
            out.append(engine.on_event(subjects[name], ts, payload[0], payload[1]))
        else:
            out.append(engine.on_reading(subjects[name], ts, payload))
    if restart_every is not None:
        engine = restarted(engine, EVERY_KIND)
    out.append(engine.tick(T0 + 2 * 60 * MIN))
    return out, engine.active()


@pytest.mark.parametrize("restart_every", [1, 3, 7])
def test_restarting_at_any_point_changes_no_transition_of_any_kind(restart_every: int) -> None:
    steps = hour_of_steps()
    expected, active = play(steps, None)
    fired = {t.rule_id for batch in expected for t in batch if t.state is AlertState.FIRING}
    assert fired == {
        "high-temperature",
        "smoke",
        "door-held",
        "heat-rising",
        "silent",
        "welfare",
        "stuck",
        "cards",
        "smoke-and-heat",
        "unusual",
    }
    assert play(steps, restart_every) == (expected, active)


def test_a_snapshot_is_a_json_header_and_arrays_with_no_counters(
    subject: Subject,
) -> None:
    text = "rules:\n" + HIGH_TEMPERATURE + DOOR_FORCED + ABSENCE.removeprefix("rules:\n")
    engine = Engine(parse_rules(text, "test.yaml"))
    engine.on_reading(subject, T0, {"temperature": 60.0})
    engine.on_event(subject, T0, "door.forced", {})
    document, buffers = decode_arrays(engine.snapshot())
    assert (document["format"], document["version"]) == ("anju.rules.engine-state", 2)
    assert document["subjects"] == [["dev-1", dict(subject.labels)]]
    assert set(document["rules"]) == {"high-temperature", "door-forced", "device-silent"}
    # The pending threshold and the device's silence are in arrays, the event alert in the JSON.
    assert [len(rows) for rows in document["states"].values()] == [0, 1, 0, 0, 0, 0, 0, 0]
    silences = document["silences"]
    assert silences["rules"] == ["device-silent"]
    assert buffers[silences["columns"]["last_ts_ms"]].tolist() == [T0]
    [group] = document["groups"]
    assert (group["table"], group["rules"]) == ("thresholds", ["high-temperature"])
    assert document["devices"] == [["dev-1", dict(subject.labels)]]
    assert buffers[group["columns"]["since"]].tolist() == [T0]

    restored = Engine(engine.rules)
    report = restored.restore(engine.snapshot())
    assert (report.states, report.dropped, report.dropped_rules) == (3, 0, ())
    assert restored.statistics().readings == 0
    assert restored.active() == engine.active()


def test_infinite_values_in_a_state_survive(subject: Subject) -> None:
    engine = Engine(parse_rules(ANOMALY, "test.yaml"))
    engine.on_reading(subject, T0, {"temperature": 1.0})
    engine.on_reading(subject, T0 + MIN, {"temperature": 1e200})  # the variance overflows
    restored = restarted(engine)
    [state] = restored._state().anomalies.values()
    assert state.var == float("inf")
    assert restored.snapshot() == engine.snapshot()
    # And through the JSON of version 1, as the sequential engine writes it.
    reference = SequentialEngine(engine.rules)
    reference.on_reading(subject, T0, {"temperature": 1.0})
    reference.on_reading(subject, T0 + MIN, {"temperature": 1e200})
    [row] = json.loads(reference.snapshot())["states"]["anomalies"]
    assert "inf" in row
    from_json = Engine(engine.rules)
    from_json.restore(reference.snapshot())
    [state] = from_json._state().anomalies.values()
    assert state.var == float("inf")


def test_every_field_of_every_state_has_a_reader() -> None:
    assert set(_TABLES) == {f.name for f in dataclasses.fields(EngineState)}
    for cls, _ in _TABLES.values():
        assert {f.name for f in dataclasses.fields(cls)} <= set(_DECODERS)


def snapshot_document(subject: Subject) -> tuple[Engine, dict[str, Any]]:
    """An engine with a pending alert, and the same state as a version 1 JSON document."""
    reference = SequentialEngine(parse_rules("rules:\n" + HIGH_TEMPERATURE, "test.yaml"))
    reference.on_reading(subject, T0, {"temperature": 60.0})
    engine = Engine(reference.rules)
    engine.restore(reference.snapshot())
    assert [a.state for a in engine.active()] == [AlertState.PENDING]
    return engine, json.loads(reference.snapshot())


def edit(document: dict[str, Any], change: Callable[[dict[str, Any]], object]) -> bytes:
    change(document)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda d: d.update(version=SNAPSHOT_VERSION + 1),
            "snapshot format version 3; this engine reads versions 1 (JSON) and 2 (arrays)",
        ),
        (lambda d: d.pop("format"), "not a rules engine snapshot"),
        (
            lambda d: d["fields"]["thresholds"].append("extra"),
            "written by another version of the engine",
        ),
        (
            lambda d: d["states"]["thresholds"][0].__setitem__(3, "10"),
            "states.thresholds[0].since_ms: expected an integer, got '10'",
        ),
        (
            lambda d: d["states"]["thresholds"][0].__setitem__(2, "resolved"),
            "states.thresholds[0].state: expected 'pending' or 'firing'",
        ),
        (
            lambda d: d["states"]["thresholds"][0].pop(),
            "states.thresholds[0]: expected [rule id, key, state, since_ms",
        ),
        (lambda d: d["states"].pop("events"), "states.events is not a list"),
        (
            lambda d: d["subjects"].append(["dev-2", {"floor": 2}]),
            "subjects[0]: expected [device, {label: text}]",
        ),
        (
            lambda d: d["states"]["events"].append(
                ["high-temperature", "dev-1", 0, "door.forced", T0, T0, None, 1]
            ),
            "rule 'high-temperature' is a threshold rule",
        ),
    ],
)
def test_a_damaged_snapshot_is_refused_with_a_clear_reason_and_the_engine_is_untouched(
    subject: Subject, change: Callable[[dict[str, Any]], object], reason: str
) -> None:
    engine, document = snapshot_document(subject)
    blob = edit(document, change)
    before = engine.active()
    with pytest.raises(SnapshotError, match="snapshot") as raised:
        engine.restore(blob)
    assert reason in str(raised.value)
    assert isinstance(raised.value, RulesError)
    assert engine.active() == before


@pytest.mark.parametrize(
    "blob", [b"", b"\x80\x04pickle", b'{"format": "anju.rules.engine-state"', b"[]"]
)
def test_what_is_not_a_snapshot_at_all_is_refused(subject: Subject, blob: bytes) -> None:
    engine, _ = snapshot_document(subject)
    with pytest.raises(SnapshotError, match="not a rules engine snapshot"):
        engine.restore(blob)


def test_a_subject_index_out_of_range_is_refused(subject: Subject) -> None:
    engine = Engine(parse_rules("rules:\n" + DOOR_FORCED, "test.yaml"))
    reference = SequentialEngine(engine.rules)
    reference.on_event(subject, T0, "door.forced", {})
    document: Mapping[str, Any] = json.loads(reference.snapshot())
    document["states"]["events"][0][2] = 5
    with pytest.raises(
        SnapshotError, match=r"states\.events\[0\]\.subject: expected a subject's index, got 5"
    ):
        engine.restore(json.dumps(document).encode())


def test_restoring_into_a_used_engine_replaces_what_it_watched() -> None:
    device = unit_device("env-1")
    used = Engine(parse_rules(ABSENCE, "test.yaml"))
    used.on_reading(device, T0, {"temperature": 21.0})
    other = Engine(used.rules)
    other.on_reading(device, T0, {"temperature": 21.0})
    other.on_reading(device, T0 + 5 * MIN, {"temperature": 21.0})

    used.restore(other.snapshot())
    # The device's next reading must reach the restored state, not the one it replaced.
    assert used.on_reading(device, T0 + 14 * MIN, {"temperature": 21.0}) == []
    assert used.tick(T0 + 24 * MIN - 1) == []
    assert states(used.tick(T0 + 24 * MIN)) == [("device-silent", "env-1", AlertState.FIRING)]
