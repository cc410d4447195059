"""Count rules: N matching events at one device within a sliding window."""

from __future__ import annotations

from collections.abc import Callable

from rules import AlertState, Engine, Subject, Transition

EngineFor = Callable[[str], Engine]
T0 = 1_767_585_600_000
SEC = 1000

DENIED = """\
rules:
  - id: card-denied-burst
    kind: count
    severity: major
    message: "{count} denied cards at {place}, reader {device}: someone trying cards?"
    match:
      kind: door.access
      data: {granted: false}
    count: 5
    window: 1m
"""


def states(transitions: list[Transition]) -> list[tuple[str, AlertState]]:
    return [(t.rule_id, t.state) for t in transitions]


def access(engine: Engine, subject: Subject, seconds: int, *, granted: bool) -> list[Transition]:
    return engine.on_event(subject, T0 + seconds * SEC, "door.access", {"granted": granted})


def test_count_fires_on_the_nth_event_in_the_window_and_resolves_when_it_drops(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(DENIED)
    for seconds in (0, 10, 20, 30):
        assert access(engine, subject, seconds, granted=False) == []
    assert access(engine, subject, 35, granted=True) == []  # a granted card is not counted
    firing = access(engine, subject, 50, granted=False)
    assert states(firing) == [("card-denied-burst", AlertState.FIRING)]
    assert (firing[0].ts_ms, firing[0].since_ms) == (T0 + 50 * SEC, T0)
    assert firing[0].message.startswith("5 denied cards at Building 3, floor 2, unit 201")
    assert firing[0].event_kind == "door.access"
    assert access(engine, subject, 55, granted=False) == []  # counted, not fired again
    [alert] = engine.active()
    assert alert.count == 6
    # The last five are at 10..55 s; the one at 10 s leaves the window at 70 s.
    assert engine.tick(T0 + 69 * SEC) == []
    resolved = engine.tick(T0 + 70 * SEC)
    assert states(resolved) == [("card-denied-burst", AlertState.RESOLVED)]
    assert (resolved[0].ts_ms, resolved[0].since_ms) == (T0 + 70 * SEC, T0)
    assert engine.active() == []


def test_count_spread_beyond_the_window_does_not_fire(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(DENIED)
    for seconds in range(0, 300, 15):  # one every 15 s: four per minute
        assert access(engine, subject, seconds, granted=False) == []


def test_count_is_per_device(engine_for: EngineFor, subject: Subject) -> None:
    engine = engine_for(DENIED)
    other = Subject("dev-2", subject.labels)
    # Five denied cards in all, but at two doors: neither door reaches five.
    for seconds in range(3):
        assert access(engine, subject, seconds, granted=False) == []
    for seconds in range(3, 5):
        assert access(engine, other, seconds, granted=False) == []
    assert engine.active() == []


def test_count_with_auto_resolve_and_an_event_after_expiry(
    engine_for: EngineFor, subject: Subject
) -> None:
    engine = engine_for(DENIED + "    auto_resolve: 5m\n")
    for seconds in range(5):
        out = access(engine, subject, seconds, granted=False)
    assert states(out) == [("card-denied-burst", AlertState.FIRING)]
    assert engine.tick(T0 + 100 * SEC) == []  # below the count, but auto_resolve rules
    # No tick ran past the deadline (4 s + 5 min); the next burst first closes the old period.
    late = 4 + 300
    out = access(engine, subject, late + 10, granted=False)
    assert states(out) == [("card-denied-burst", AlertState.RESOLVED)]
    assert out[0].ts_ms == T0 + late * SEC
    assert engine.tick(T0 + 400 * SEC) == []
