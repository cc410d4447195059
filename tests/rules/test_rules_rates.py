"""Reading-driven kinds beyond thresholds: rate of change, flat line and anomaly (EWMA z-score)."""

from __future__ import annotations

from collections.abc import Callable

from rules import AlertState, Engine, Subject, Transition

EngineFor = Callable[[str], Engine]
T0 = 1_767_585_600_000  # 2026-01-05 04:00 UTC, noon in Shanghai
SEC = 1000
MIN = 60 * SEC


def states(transitions: list[Transition]) -> list[tuple[str, AlertState]]:
    return [(t.rule_id, t.state) for t in transitions]


RATE = """\
rules:
  - id: temp-rising-fast
    kind: rate_of_change
    severity: critical
    message: "Temperature rising {rate:.1f} °C/min (limit {threshold:g}) at {place}: {value:.1f} °C"
    metric: temperature
    max_per_minute: 5
    direction: rise
    window: 1m
"""


def test_rate_of_change_fires_over_a_full_window_and_resolves(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(RATE)

    def at(seconds: int, value: float) -> list[Transition]:
        return engine.on_reading(subject, T0 + seconds * SEC, {"temperature": value})

    # A jump before a full window of history is not a rate yet (noise between close samples).
    assert at(0, 20) == []
    assert at(10, 40) == []
    assert at(20, 20) == []
    assert at(60, 20) == []
    assert at(80, 21) == []  # 1 °C/min against the reading at 20 s
    # 10 °C in the 80 s since the newest reading at least a window old (the one at 20 s).
    firing = at(100, 30)
    assert states(firing) == [("temp-rising-fast", AlertState.FIRING)]
    assert firing[0].message == (
        "Temperature rising 7.5 °C/min (limit 5) at Building 3, floor 2, unit 201: 30.0 °C"
    )
    assert (firing[0].since_ms, firing[0].value) == (T0 + 100 * SEC, 30)
    assert at(120, 31) == []  # still rising fast: no second firing
    [alert] = engine.active()
    assert (alert.state, alert.count) == (AlertState.FIRING, 2)
    resolved = at(240, 31)
    assert states(resolved) == [("temp-rising-fast", AlertState.RESOLVED)]
    assert resolved[0].since_ms == T0 + 100 * SEC
    assert engine.active() == []


def test_rate_of_change_watches_only_its_direction(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(RATE)
    assert engine.on_reading(subject, T0, {"temperature": 60}) == []
    assert engine.on_reading(subject, T0 + MIN, {"temperature": 20}) == []  # a fast fall
    both = engine_for(RATE.replace("direction: rise", "direction: both"))
    assert both.on_reading(subject, T0, {"temperature": 60}) == []
    fell = both.on_reading(subject, T0 + MIN, {"temperature": 20})
    assert states(fell) == [("temp-rising-fast", AlertState.FIRING)]


def test_rate_of_change_ignores_a_reading_at_the_same_instant(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(RATE)
    engine.on_reading(subject, T0, {"temperature": 20})
    assert engine.on_reading(subject, T0, {"temperature": 90}) == []
    assert engine.statistics().late == 1


FLAT = """\
rules:
  - id: humidity-stuck
    kind: flat_line
    severity: warning
    message: "Humidity sensor {device} at {place} stuck at {value:g} for {stuck_min:.0f} min"
    metric: humidity
    for: 1h
    tolerance: 0.1
"""


def test_flat_line_fires_after_for_unchanged_and_resolves_when_it_moves(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(FLAT)
    for minute in range(0, 60, 10):
        assert engine.on_reading(subject, T0 + minute * MIN, {"humidity": 55.0}) == []
    firing = engine.on_reading(subject, T0 + 60 * MIN, {"humidity": 55.05})  # within tolerance
    assert states(firing) == [("humidity-stuck", AlertState.FIRING)]
    assert firing[0].message == (
        "Humidity sensor dev-1 at Building 3, floor 2, unit 201 stuck at 55.05 for 60 min"
    )
    assert firing[0].since_ms == T0
    assert engine.on_reading(subject, T0 + 70 * MIN, {"humidity": 55.0}) == []
    resolved = engine.on_reading(subject, T0 + 80 * MIN, {"humidity": 56.0})
    assert states(resolved) == [("humidity-stuck", AlertState.RESOLVED)]
    assert resolved[0].since_ms == T0
    # The new value starts a new stuck period: a second hour is needed to fire again.
    assert engine.on_reading(subject, T0 + 139 * MIN, {"humidity": 56.0}) == []
    again = engine.on_reading(subject, T0 + 140 * MIN, {"humidity": 56.0})
    assert states(again) == [("humidity-stuck", AlertState.FIRING)]
    assert again[0].since_ms == T0 + 80 * MIN


def test_flat_line_does_not_fire_on_a_live_sensor(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(FLAT)
    for minute in range(0, 180, 10):
        value = 55.0 + (minute // 10 % 2) * 0.5
        assert engine.on_reading(subject, T0 + minute * MIN, {"humidity": value}) == []


ANOMALY = """\
rules:
  - id: water-flow-odd
    kind: anomaly
    severity: minor
    message: "Water flow {value:g} at {place} is unusual (normal {mean:.1f}, z {zscore:.1f})"
    metric: water_flow
    alpha: 0.1
    warmup: 10
    z: 4
"""


def test_anomaly_learns_a_baseline_then_fires_on_an_outlier(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(ANOMALY)

    def at(i: int, value: float) -> list[Transition]:
        return engine.on_reading(subject, T0 + i * MIN, {"water_flow": value})

    # During warm-up even a wild value only trains the baseline.
    assert at(0, 10) == []
    assert at(1, 100) == []
    for i in range(2, 80):
        assert at(i, 10 + i % 2) == [], i
    firing = at(80, 30)
    assert states(firing) == [("water-flow-odd", AlertState.FIRING)]
    assert firing[0].message.startswith("Water flow 30 at Building 3, floor 2, unit 201 is unusual")
    assert at(81, 31) == []  # still odd: counted, not fired again
    resolved = at(82, 10.5)
    assert states(resolved) == [("water-flow-odd", AlertState.RESOLVED)]
    assert resolved[0].since_ms == T0 + 80 * MIN


def test_anomaly_needs_spread_or_min_std(engine_for: EngineFor, subject: Subject) -> None:
    # A perfectly steady sensor has no spread: without min_std any step would be infinite z.
    steady = engine_for(ANOMALY)
    floor = engine_for(ANOMALY.replace("z: 4", "z: 4\n    min_std: 1"))
    for i in range(20):
        assert steady.on_reading(subject, T0 + i * MIN, {"water_flow": 10}) == []
        assert floor.on_reading(subject, T0 + i * MIN, {"water_flow": 10}) == []
    assert steady.on_reading(subject, T0 + 20 * MIN, {"water_flow": 11}) == []
    assert floor.on_reading(subject, T0 + 20 * MIN, {"water_flow": 13}) == []  # 3 std
    fired = floor.on_reading(subject, T0 + 21 * MIN, {"water_flow": 20})
    assert states(fired) == [("water-flow-odd", AlertState.FIRING)]


def test_anomaly_a_lasting_shift_becomes_the_new_normal(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(ANOMALY)
    for i in range(40):
        engine.on_reading(subject, T0 + i * MIN, {"water_flow": 10 + i % 2})
    fired = engine.on_reading(subject, T0 + 40 * MIN, {"water_flow": 20})
    assert states(fired) == [("water-flow-odd", AlertState.FIRING)]
    # The outlier is clipped when learned, so the next ones are still odd, not absorbed at once.
    assert engine.on_reading(subject, T0 + 41 * MIN, {"water_flow": 20}) == []
    resolved_at = None
    for i in range(42, 200):
        if engine.on_reading(subject, T0 + i * MIN, {"water_flow": 20 + i % 2}):
            resolved_at = i
            break
    assert engine.active() == []
    # It took a few readings: the baseline moved step by step, not in one jump.
    assert resolved_at is not None
    assert resolved_at > 42


def test_rate_of_change_schedule_limits_firing(engine_for: EngineFor, subject: Subject) -> None:
    # T0 is noon in Shanghai; a night-only rule stays quiet by day.
    night = RATE + "    schedule: {timezone: Asia/Shanghai, between: ['22:00', '06:00']}\n"
    engine = engine_for(night)
    engine.on_reading(subject, T0, {"temperature": 20})
    assert engine.on_reading(subject, T0 + MIN, {"temperature": 40}) == []
