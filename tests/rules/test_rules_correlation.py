"""Correlation rules: several conditions at one place within a window."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rules import AlertState, Engine, RuleError, Subject, Transition, parse_rules

EngineFor = Callable[[str], Engine]
T0 = 1_767_585_600_000
SEC = 1000
MIN = 60 * SEC
PLACE = "place:3/2/201"

SMOKE_AND_HEAT = """\
rules:
  - id: smoke-and-heat
    kind: correlation
    severity: critical
    issue_class: hard
    message: "Smoke and heat together at {place}: treat as a fire"
    window: 5m
    conditions:
      - event: {kind: alarm.smoke, data: {active: true}}
      - metric: temperature
        above: 50
"""


def states(transitions: list[Transition]) -> list[tuple[str, str, AlertState]]:
    return [(t.rule_id, t.device, t.state) for t in transitions]


def unit_device(device_id: str, unit: str = "201") -> Subject:
    labels = {"building": "3", "floor": "2", "unit": unit, "place": f"Building 3, unit {unit}"}
    return Subject(device_id, labels)


def test_correlation_fires_when_both_occur_in_one_unit_within_the_window(
    engine_for: EngineFor,
) -> None:
    engine = engine_for(SMOKE_AND_HEAT)
    smoke, thermo = unit_device("smoke-1"), unit_device("th-1")
    assert engine.on_event(smoke, T0, "alarm.smoke", {"active": True}) == []
    assert engine.on_reading(thermo, T0 + MIN, {"temperature": 30.0}) == []  # not a breach
    firing = engine.on_reading(thermo, T0 + 2 * MIN, {"temperature": 55.0})
    assert states(firing) == [("smoke-and-heat", PLACE, AlertState.FIRING)]
    assert (firing[0].ts_ms, firing[0].since_ms) == (T0 + 2 * MIN, T0)
    assert firing[0].message == "Smoke and heat together at Building 3, unit 201: treat as a fire"
    assert engine.on_reading(thermo, T0 + 3 * MIN, {"temperature": 60.0}) == []
    # Smoke was last seen at T0: the pair no longer holds once that leaves the window.
    assert engine.tick(T0 + 5 * MIN - 1) == []
    resolved = engine.tick(T0 + 5 * MIN)
    assert states(resolved) == [("smoke-and-heat", PLACE, AlertState.RESOLVED)]
    assert resolved[0].since_ms == T0
    assert engine.active() == []


def test_correlation_needs_the_same_place_and_the_window(engine_for: EngineFor) -> None:
    engine = engine_for(SMOKE_AND_HEAT)
    smoke, neighbour = unit_device("smoke-1"), unit_device("th-2", unit="202")
    engine.on_event(smoke, T0, "alarm.smoke", {"active": True})
    assert engine.on_reading(neighbour, T0 + MIN, {"temperature": 80.0}) == []  # next door
    thermo = unit_device("th-1")
    assert engine.on_reading(thermo, T0 + 6 * MIN, {"temperature": 80.0}) == []  # too late
    # A fresh smoke event within 5 min of that reading completes the pair.
    again = engine.on_event(smoke, T0 + 8 * MIN, "alarm.smoke", {"active": True})
    assert states(again) == [("smoke-and-heat", PLACE, AlertState.FIRING)]
    assert again[0].event_kind is None  # correlations report the place, not one event


def test_correlation_place_key_is_configurable(engine_for: EngineFor) -> None:
    engine = engine_for(SMOKE_AND_HEAT + "    place_by: [building]\n")
    engine.on_event(unit_device("smoke-1"), T0, "alarm.smoke", {"active": True})
    firing = engine.on_reading(unit_device("th-2", unit="202"), T0, {"temperature": 80.0})
    assert states(firing) == [("smoke-and-heat", "place:3", AlertState.FIRING)]


@pytest.mark.parametrize(
    ("condition", "field", "reason"),
    [
        ("{metric: temperature}", "conditions[1].above", "give 'above', 'below' or both"),
        ("{event: {kind: alarm.smoke}, above: 3}", "conditions[1].above", "goes with 'metric'"),
        ("{}", "conditions[1].event", "give either 'event' or 'metric'"),
    ],
)
def test_correlation_conditions_are_checked(condition: str, field: str, reason: str) -> None:
    text = SMOKE_AND_HEAT.replace(
        "      - metric: temperature\n        above: 50\n", f"      - {condition}\n"
    )
    with pytest.raises(RuleError) as caught:
        parse_rules(text, "c.yaml")
    assert (caught.value.rule, caught.value.field, caught.value.line) == (
        "smoke-and-heat",
        field,
        10,
    )
    assert reason in caught.value.reason
