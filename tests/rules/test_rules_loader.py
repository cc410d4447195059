from __future__ import annotations

from pathlib import Path

import pytest

import rules
from rules import (
    EventRule,
    IssueClass,
    RuleError,
    RulesError,
    Severity,
    ThresholdRule,
    load_rules,
    parse_rules,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "rules"

GOOD = """\
rules:
  - id: high-temperature
    kind: threshold
    severity: critical
    issue_class: hard
    summary: Possible fire
    message: "Possible fire: {value:.1f} °C at {place}"
    metric: temperature
    above: 57
    for: 10s
    clear_above: 50
    scope:
      buildings: [3, "4"]
      device_kinds: [env_sensor]
    labels: {team: fire}

  - id: door-forced-night
    kind: event
    severity: major
    issue_class: composite
    message: "Door forced at {place}"
    match:
      kind: door.forced
    schedule:
      timezone: Asia/Shanghai
      between: [22:00, 06:00]
      days: [fri, sat]
    auto_resolve: 1h30m

  - id: any-alarm
    kind: event
    severity: warning
    message: "{event_kind} at {place}"
    match: {kind: "alarm.*", data: {active: true}}
    resolve_on: {active: false}
"""


def test_parse_good_file_builds_typed_rules() -> None:
    ruleset = parse_rules(GOOD, "good.yaml")

    assert [r.id for r in ruleset] == ["high-temperature", "door-forced-night", "any-alarm"]
    temp = ruleset.get("high-temperature")
    assert isinstance(temp, ThresholdRule)
    assert temp.severity is Severity.CRITICAL
    assert temp.issue_class is IssueClass.HARD
    assert temp.for_ms == 10_000
    assert (temp.above, temp.below, temp.clear_above) == (57, None, 50)
    assert temp.scope.buildings == ("3", "4")  # numbered buildings become label strings
    assert temp.labels == {"team": "fire"}

    door = ruleset.get("door-forced-night")
    assert isinstance(door, EventRule)
    assert door.issue_class is IssueClass.COMPOSITE
    assert door.auto_resolve_ms == 90 * 60_000
    assert door.schedule is not None
    # Unquoted 22:00 must not turn into the YAML 1.1 base-60 integer 1320.
    assert door.schedule.between == ("22:00", "06:00")
    assert door.schedule.days == ("fri", "sat")

    alarm = ruleset.get("any-alarm")
    assert isinstance(alarm, EventRule)
    assert alarm.issue_class is IssueClass.ORDINARY
    assert alarm.match.kinds == ("alarm.smoke", "alarm.water_leak", "alarm.gas")
    assert alarm.resolve_on == {"active": False}

    assert ruleset.source_of("door-forced-night") == "good.yaml:17"
    assert "nope" not in ruleset
    assert ruleset.get("nope") is None


def test_ruleset_indexes_by_metric_and_event_kind() -> None:
    ruleset = parse_rules(GOOD)

    assert ruleset.metrics == frozenset({"temperature"})
    assert [r.id for r in ruleset.rules_for_metric("temperature")] == ["high-temperature"]
    assert ruleset.rules_for_metric("humidity") == ()
    assert [r.id for r in ruleset.rules_for_event("door.forced")] == ["door-forced-night"]
    assert [r.id for r in ruleset.rules_for_event("alarm.gas")] == ["any-alarm"]
    assert ruleset.rules_for_event("camera.motion") == ()


def test_empty_rules_list_is_allowed() -> None:
    assert len(parse_rules("rules:\n")) == 0
    assert len(parse_rules("rules: []\n")) == 0


def test_example_config_files_load() -> None:
    paths = sorted(CONFIG_DIR.glob("*.yaml"))
    assert {p.name for p in paths} >= {"safety.yaml", "facilities.yaml"}

    ruleset = load_rules(paths)

    ids = {r.id for r in ruleset}
    assert {
        "smoke-detected",
        "gas-detected",
        "water-leak",
        "emergency-button",
        "door-forced-night",
        "door-forced-day",
        "high-temperature",
        "co2-high",
    } <= ids
    for rule in ruleset:
        assert "{place" in rule.message, f"{rule.id}: the message must name the place"
    for life_safety in ("smoke-detected", "gas-detected", "emergency-button", "high-temperature"):
        found = ruleset.get(life_safety)
        assert found is not None
        assert (found.severity, found.issue_class) == (Severity.CRITICAL, IssueClass.HARD)
    night = ruleset.get("door-forced-night")
    assert isinstance(night, EventRule)
    assert night.schedule is not None
    assert night.schedule.timezone == "Asia/Shanghai"
    assert night.auto_resolve_ms is not None


def test_load_rules_merges_files_and_rejects_duplicate_ids(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    second = tmp_path / "b.yaml"
    first.write_text(GOOD, encoding="utf-8")
    second.write_text(
        "rules:\n"
        "  - id: co2-high\n"
        "    kind: threshold\n"
        "    severity: warning\n"
        '    message: "CO2 at {place}"\n'
        "    metric: co2\n"
        "    above: 1500\n",
        encoding="utf-8",
    )
    assert len(load_rules([first, second])) == 4

    dup = tmp_path / "c.yaml"
    dup.write_text(
        "rules:\n"
        "  - id: water\n"
        "    kind: event\n"
        "    severity: major\n"
        "    message: x\n"
        "    match: {kind: alarm.water_leak}\n"
        "  - id: any-alarm\n"
        "    kind: event\n"
        "    severity: major\n"
        "    message: x\n"
        "    match: {kind: alarm.gas}\n",
        encoding="utf-8",
    )
    with pytest.raises(RuleError) as info:
        load_rules([first, dup])
    err = info.value
    assert (err.file, err.line, err.rule, err.field) == (str(dup), 7, "any-alarm", "id")
    assert f"first defined at {first}:30" in err.reason


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(RuleError) as info:
        load_rules([missing])
    assert info.value.file == str(missing)
    assert info.value.line is None
    assert str(info.value).startswith(f"{missing}: cannot read")


def test_error_message_format_matches_the_documented_shape() -> None:
    text = (
        "rules:\n"
        "  - id: smoke-detected\n"
        "    kind: event\n"
        "    severity: urgent\n"
        '    message: "Smoke at {place}"\n'
        "    match: {kind: alarm.smoke}\n"
    )
    with pytest.raises(RuleError) as info:
        parse_rules(text, "config/rules/safety.yaml")
    assert str(info.value) == (
        "config/rules/safety.yaml:4: rule 'smoke-detected', field 'severity': "
        "Input should be 'critical', 'major', 'minor' or 'warning'"
    )
    assert isinstance(info.value, RulesError)
    assert isinstance(info.value, ValueError)


def _threshold(*extra: str, message: str = "Hot at {place}") -> str:
    lines = [
        "rules:",
        "  - id: hot",
        "    kind: threshold",
        "    severity: major",
        f'    message: "{message}"',
        "    metric: temperature",
        *extra,
    ]
    return "\n".join(lines) + "\n"


def _event(*extra: str, kind: str = "alarm.smoke") -> str:
    lines = [
        "rules:",
        "  - id: ev",
        "    kind: event",
        "    severity: major",
        '    message: "Event at {place}"',
        "    match:",
        f'      kind: "{kind}"',
        *extra,
    ]
    return "\n".join(lines) + "\n"


# (yaml, line, rule, field, words in the reason)
LOAD_ERRORS = {
    "bad severity": (
        _event().replace("severity: major", "severity: high"),
        4,
        "ev",
        "severity",
        "Input should be 'critical'",
    ),
    "bad issue class": (
        _event("    issue_class: urgent"),
        8,
        "ev",
        "issue_class",
        "'ordinary', 'composite' or 'hard'",
    ),
    "unknown field": (
        _threshold("    above: 50", "    severty: major"),
        8,
        "hot",
        "severty",
        "did you mean 'severity'",
    ),
    "unknown nested field": (
        _event("    scope: {bildings: [3]}"),
        8,
        "ev",
        "scope.bildings",
        "did you mean 'buildings'",
    ),
    "missing metric": (
        _threshold("    above: 50").replace("    metric: temperature\n", ""),
        2,
        "hot",
        "metric",
        "required field is missing",
    ),
    "no level": (_threshold(), 2, "hot", "above", "'above', 'below' or both"),
    "duration without unit": (
        _threshold("    above: 50", "    for: 10"),
        8,
        "hot",
        "for",
        "with a unit",
    ),
    "bad duration": (
        _threshold("    above: 50", "    for: 10 minutes"),
        8,
        "hot",
        "for",
        "not a duration",
    ),
    "bad auto_resolve": (
        _event("    auto_resolve: soon"),
        8,
        "ev",
        "auto_resolve",
        "not a duration",
    ),
    "zero auto_resolve": (
        _event("    auto_resolve: 0"),
        8,
        "ev",
        "auto_resolve",
        "longer than 0",
    ),
    "unknown template field": (
        _threshold("    above: 50", message="Hot in {room}"),
        5,
        "hot",
        "message",
        "unknown placeholder {room}",
    ),
    "template attribute access": (
        _threshold("    above: 50", message="Hot at {place.name}"),
        5,
        "hot",
        "message",
        "no '.' or '[' access",
    ),
    "template indexing": (
        _threshold("    above: 50", message="Hot at {place[0]}"),
        5,
        "hot",
        "message",
        "no '.' or '[' access",
    ),
    "template positional": (
        _threshold("    above: 50", message="Hot at {}"),
        5,
        "hot",
        "message",
        "not a position",
    ),
    "template conversion": (
        _threshold("    above: 50", message="Hot at {place!r}"),
        5,
        "hot",
        "message",
        "conversions",
    ),
    "template bad spec": (
        _threshold("    above: 50", message="Hot: {value:.1q}"),
        5,
        "hot",
        "message",
        "{value:.1q}",
    ),
    "template unbalanced": (
        _threshold("    above: 50", message="Hot at {place"),
        5,
        "hot",
        "message",
        "not a valid template",
    ),
    "value in an event template": (
        _event().replace("Event at {place}", "Event {value} at {place}"),
        5,
        "ev",
        "message",
        "unknown placeholder {value}",
    ),
    "bad summary template": (
        _event("    summary: Alarm in {room}"),
        8,
        "ev",
        "summary",
        "unknown placeholder {room}",
    ),
    "clear_above on the wrong side": (
        _threshold("    above: 50", "    clear_above: 55"),
        8,
        "hot",
        "clear_above",
        "must be lower than above (50)",
    ),
    "clear_below on the wrong side": (
        _threshold("    below: 5", "    clear_below: 3"),
        8,
        "hot",
        "clear_below",
        "must be higher than below (5)",
    ),
    "clear level without its threshold": (
        _threshold("    below: 5", "    clear_above: 3"),
        8,
        "hot",
        "clear_above",
        "needs 'above'",
    ),
    "below above above": (
        _threshold("    above: 5", "    below: 10"),
        8,
        "hot",
        "below",
        "must be lower than above",
    ),
    "empty clear band": (
        _threshold("    above: 30", "    below: 10", "    clear_above: 15", "    clear_below: 20"),
        10,
        "hot",
        "clear_below",
        "clear band [20, 15] is empty",
    ),
    "unknown event kind": (
        _event(kind="alarm.smok"),
        7,
        "ev",
        "match.kind",
        "did you mean 'alarm.smoke'",
    ),
    "pattern matching nothing": (
        _event(kind="siren.*"),
        7,
        "ev",
        "match.kind",
        "matches no known event kind",
    ),
    "unknown data field": (
        _event("      data: {activ: true}"),
        8,
        "ev",
        "match.data.activ",
        "has no data field 'activ'",
    ),
    "wrong data type": (
        _event("      data: {active: 'yes'}"),
        8,
        "ev",
        "match.data.active",
        "valid boolean",
    ),
    "unknown resolve_on field": (
        _event("    resolve_on: {cleared: true}"),
        8,
        "ev",
        "resolve_on.cleared",
        "has no data field",
    ),
    "resolve_on equal to the match": (
        _event("      data: {active: true}", "    resolve_on: {active: true}"),
        9,
        "ev",
        "resolve_on",
        "would also resolve it",
    ),
    "bad timezone": (
        _event("    schedule: {timezone: Asia/Shangai, between: [22:00, 06:00]}"),
        8,
        "ev",
        "schedule.timezone",
        "unknown IANA time zone",
    ),
    "bad time of day": (
        _event("    schedule: {between: ['25:00', '06:00']}"),
        8,
        "ev",
        "schedule.between[0]",
        "a time of day 'HH:MM'",
    ),
    "empty window": (
        _event("    schedule: {between: ['06:00', '06:00']}"),
        8,
        "ev",
        "schedule.between",
        "are equal",
    ),
    "bad weekday": (
        _event("    schedule: {days: [friday]}"),
        8,
        "ev",
        "schedule.days[0]",
        "'mon'",
    ),
    "reserved label": (
        _event("    labels: {severity: low}"),
        8,
        "ev",
        "labels.severity",
        "choose another label name",
    ),
    "registry label": (
        _event("    labels: {place: here}"),
        8,
        "ev",
        "labels.place",
        "choose another label name",
    ),
    "bad id": (
        _event().replace("id: ev", "id: Smoke Alarm"),
        2,
        "Smoke Alarm",
        "id",
        "lower-case letters",
    ),
    "unknown rule kind": (
        _event().replace("kind: event", "kind: match"),
        3,
        "ev",
        "kind",
        (
            "unknown rule kind 'match'; expected one of: threshold, event, rate_of_change, "
            "absence, inactivity, flat_line, count, correlation, anomaly"
        ),
    ),
    "missing rule kind": (
        _event().replace("    kind: event\n", ""),
        2,
        "ev",
        "kind",
        "missing; expected one of",
    ),
    "duplicate key": (
        _event("    severity: minor"),
        8,
        "ev",
        "severity",
        "duplicate key",
    ),
    "duplicate id": (
        _event() + _event().replace("rules:\n", ""),
        8,
        "ev",
        "id",
        "duplicate rule id, first defined at f.yaml:2",
    ),
}


@pytest.mark.parametrize("case", LOAD_ERRORS.values(), ids=LOAD_ERRORS.keys())
def test_load_errors_name_file_line_rule_and_field(
    case: tuple[str, int, str, str, str],
) -> None:
    text, line, rule, field, words = case
    with pytest.raises(RuleError) as info:
        parse_rules(text, "f.yaml")
    err = info.value
    assert (err.file, err.line, err.rule, err.field) == ("f.yaml", line, rule, field), str(err)
    assert words in err.reason
    assert str(err).startswith(f"f.yaml:{line}: rule '{rule}', field '{field}': ")


def test_rule_without_usable_id_is_named_by_index() -> None:
    text = _event() + "  - kind: event\n    severity: major\n"
    with pytest.raises(RuleError) as info:
        parse_rules(text, "f.yaml")
    assert info.value.rule == 1
    assert str(info.value).startswith("f.yaml:8: rules[1], field 'id': required field is missing")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", None, "empty file"),
        ("rules: 3\n", 1, "'rules' must be a list"),
        ("rule: []\n", 1, "unknown top-level key 'rule'"),
        ("- id: x\n", 1, "expected a mapping with 'rules:'"),
        ("rules:\n  - id: x\n    kind: [event\n", 4, "not valid YAML"),
        ("rules: [3]\n", 1, "a rule must be a mapping"),
    ],
)
def test_file_level_errors(text: str, line: int | None, words: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules(text, "f.yaml")
    assert info.value.file == "f.yaml"
    assert info.value.line == line
    assert words in info.value.reason


def test_models_are_frozen() -> None:
    rule = parse_rules(GOOD).get("high-temperature")
    assert rule is not None
    with pytest.raises(ValueError, match="frozen"):
        rule.severity = Severity.MINOR  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "ms"),
    [(0, 0), ("0", 0), ("500ms", 500), ("10s", 10_000), ("5m", 300_000), ("1h30m", 5_400_000)],
)
def test_parse_duration(text: object, ms: int) -> None:
    assert rules.parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", [10, 1.5, True, "10", "5 m", "1.5h", "m5", ""])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        rules.parse_duration_ms(text)
