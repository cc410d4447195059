from __future__ import annotations

from collections.abc import Callable

import pytest

from rules import ActiveAlert, AlertState, Engine, IssueClass, Severity, Subject, Transition

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
S = 1000

FIRE = """\
rules:
  - id: high-temperature
    kind: threshold
    severity: critical
    issue_class: hard
    summary: Possible fire
    message: "Possible fire: {value:.1f} °C (over {threshold}) at {place}"
    metric: temperature
    above: 57
    for: 10s
    clear_above: 50
"""

AT_ONCE = """\
rules:
  - id: co2-now
    kind: threshold
    severity: warning
    message: "CO2 {value} at {place}"
    metric: co2
    above: 1500
"""

BAND = """\
rules:
  - id: pump-pressure
    kind: threshold
    severity: major
    message: "Pressure {value} outside the band at {place} (crossed {threshold})"
    metric: pressure
    above: 8
    below: 2
    clear_above: 7
    clear_below: 3
"""

EngineFor = Callable[[str], Engine]


def states(transitions: list[Transition]) -> list[tuple[str, AlertState]]:
    return [(t.rule_id, t.state) for t in transitions]


def test_for_goes_pending_then_firing_once_held(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(FIRE)

    pending = engine.on_reading(subject, T0, {"temperature": 58.0})
    assert states(pending) == [("high-temperature", AlertState.PENDING)]
    assert engine.on_reading(subject, T0 + 5 * S, {"temperature": 60.0}) == []
    assert engine.on_reading(subject, T0 + 9_999, {"temperature": 61.0}) == []
    firing = engine.on_reading(subject, T0 + 10 * S, {"temperature": 62.25})

    assert states(firing) == [("high-temperature", AlertState.FIRING)]
    t = firing[0]
    assert (t.ts_ms, t.since_ms, t.value, t.event_kind) == (T0 + 10 * S, T0, 62.25, None)
    assert (t.severity, t.issue_class, t.summary) == (
        Severity.CRITICAL,
        IssueClass.HARD,
        "Possible fire",
    )
    assert t.device == "dev-1"
    assert t.message == "Possible fire: 62.2 °C (over 57) at Building 3, floor 2, unit 201"
    # Still above: no second firing.
    assert engine.on_reading(subject, T0 + 20 * S, {"temperature": 63.0}) == []
    assert engine.active() == [
        ActiveAlert("high-temperature", "dev-1", AlertState.FIRING, T0, T0 + 20 * S, 5)
    ]


def test_condition_dropping_before_for_fires_nothing(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(FIRE)

    engine.on_reading(subject, T0, {"temperature": 58.0})
    cancelled = engine.on_reading(subject, T0 + 9 * S, {"temperature": 56.0})
    assert states(cancelled) == [("high-temperature", AlertState.CANCELLED)]
    assert cancelled[0].since_ms == T0
    assert engine.active() == []

    # A new breach starts a new hold time: 10 s after the first breach is not enough.
    assert states(engine.on_reading(subject, T0 + 10 * S, {"temperature": 58.0})) == [
        ("high-temperature", AlertState.PENDING)
    ]
    assert engine.on_reading(subject, T0 + 15 * S, {"temperature": 58.0}) == []
    assert states(engine.on_reading(subject, T0 + 20 * S, {"temperature": 58.0})) == [
        ("high-temperature", AlertState.FIRING)
    ]


def test_pending_uses_the_threshold_not_the_clear_level(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(FIRE)
    engine.on_reading(subject, T0, {"temperature": 58.0})
    # 55 is above the clear level but below the threshold: a pending alert is cancelled.
    assert states(engine.on_reading(subject, T0 + S, {"temperature": 55.0})) == [
        ("high-temperature", AlertState.CANCELLED)
    ]


def test_hysteresis_resolves_only_at_the_clear_level(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(FIRE)
    engine.on_reading(subject, T0, {"temperature": 58.0})
    engine.on_reading(subject, T0 + 10 * S, {"temperature": 58.0})

    # Between the clear level (50) and the threshold (57): stays firing.
    assert engine.on_reading(subject, T0 + 20 * S, {"temperature": 55.0}) == []
    assert engine.on_reading(subject, T0 + 30 * S, {"temperature": 50.5}) == []
    assert [a.state for a in engine.active()] == [AlertState.FIRING]

    resolved = engine.on_reading(subject, T0 + 40 * S, {"temperature": 50.0})
    assert states(resolved) == [("high-temperature", AlertState.RESOLVED)]
    assert (resolved[0].ts_ms, resolved[0].since_ms, resolved[0].value) == (T0 + 40 * S, T0, 50.0)
    assert engine.active() == []


def test_for_zero_fires_at_once_and_resolves_back_at_the_threshold(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(AT_ONCE)

    assert engine.on_reading(subject, T0, {"co2": 1500.0}) == []  # strictly above
    firing = engine.on_reading(subject, T0 + S, {"co2": 1501.0})
    assert states(firing) == [("co2-now", AlertState.FIRING)]
    assert firing[0].since_ms == T0 + S
    assert firing[0].message == "CO2 1501 at Building 3, floor 2, unit 201"
    # Without a clear level the threshold itself is the clear level.
    assert states(engine.on_reading(subject, T0 + 2 * S, {"co2": 1500.0})) == [
        ("co2-now", AlertState.RESOLVED)
    ]


def test_band_rule_reports_the_threshold_crossed(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(BAND)

    low = engine.on_reading(subject, T0, {"pressure": 1.5})
    assert states(low) == [("pump-pressure", AlertState.FIRING)]
    assert low[0].message.endswith("(crossed 2)")
    # Back above "below" but not yet at clear_below: still firing.
    assert engine.on_reading(subject, T0 + S, {"pressure": 2.5}) == []
    assert states(engine.on_reading(subject, T0 + 2 * S, {"pressure": 3.0})) == [
        ("pump-pressure", AlertState.RESOLVED)
    ]
    high = engine.on_reading(subject, T0 + 3 * S, {"pressure": 8.5})
    assert high[0].message.endswith("(crossed 8)")
    assert engine.on_reading(subject, T0 + 4 * S, {"pressure": 7.5}) == []
    assert states(engine.on_reading(subject, T0 + 5 * S, {"pressure": 7.0})) == [
        ("pump-pressure", AlertState.RESOLVED)
    ]


def test_devices_are_independent(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(AT_ONCE)
    other = Subject("dev-2", {"place": "Pump room"})

    engine.on_reading(subject, T0, {"co2": 2000.0})
    assert states(engine.on_reading(other, T0, {"co2": 2000.0})) == [("co2-now", AlertState.FIRING)]
    assert states(engine.on_reading(subject, T0 + S, {"co2": 400.0})) == [
        ("co2-now", AlertState.RESOLVED)
    ]
    assert [(a.device, a.state) for a in engine.active()] == [("dev-2", AlertState.FIRING)]


def test_late_sample_does_not_move_time_backwards(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(FIRE)
    engine.on_reading(subject, T0 + 5 * S, {"temperature": 58.0})

    # A replayed sample from before the breach must not cancel the pending alert.
    assert engine.on_reading(subject, T0, {"temperature": 20.0}) == []
    assert engine.statistics().late == 1
    assert [a.state for a in engine.active()] == [AlertState.PENDING]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_are_ignored(engine_for: EngineFor, subject: Subject, bad: float) -> None:
    engine = engine_for(AT_ONCE)
    assert engine.on_reading(subject, T0, {"co2": bad}) == []
    assert engine.active() == []


def test_a_reading_meets_only_rules_on_its_metrics(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(FIRE + AT_ONCE.replace("rules:\n", ""))

    engine.on_reading(subject, T0, {"humidity": 99.0, "battery": 3.0})
    assert engine.statistics().evaluations == 0
    engine.on_reading(subject, T0 + S, {"humidity": 99.0, "co2": 400.0})
    assert engine.statistics().evaluations == 1
    assert engine.rules.rules_for_metric("humidity") == ()
    assert [r.id for r in engine.rules.rules_for_metric("co2")] == ["co2-now"]


SCOPED = """\
rules:
  - id: scoped
    kind: threshold
    severity: minor
    message: "Hot at {place}"
    metric: temperature
    above: 30
    scope:
      sites: [s1]
      buildings: [3]
      device_kinds: [env_sensor, boiler]
  - id: one-device
    kind: threshold
    severity: minor
    message: "Hot at {place}"
    metric: temperature
    above: 30
    scope:
      devices: [dev-9]
"""


def test_scope_filters_subjects(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(SCOPED)

    assert states(engine.on_reading(subject, T0, {"temperature": 35.0})) == [
        ("scoped", AlertState.FIRING)
    ]
    elsewhere = Subject("dev-2", {**subject.labels, "building": "4"})
    assert engine.on_reading(elsewhere, T0, {"temperature": 35.0}) == []
    unlabelled = Subject("dev-3", {"place": "somewhere"})
    assert engine.on_reading(unlabelled, T0, {"temperature": 35.0}) == []
    wrong_kind = Subject("dev-4", {**subject.labels, "device_kind": "door_reader"})
    assert engine.on_reading(wrong_kind, T0, {"temperature": 35.0}) == []
    by_id = Subject("dev-9", {})
    assert states(engine.on_reading(by_id, T0, {"temperature": 35.0})) == [
        ("one-device", AlertState.FIRING)
    ]
    # Out-of-scope subjects cost no evaluation.
    assert engine.statistics().evaluations == 2
