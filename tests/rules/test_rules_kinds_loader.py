"""Loading the newer rule kinds: every mistake is reported at its file, line, rule and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules import RuleError, load_rules, parse_rules

HEAD = """\
rules:
  - id: r1
    severity: minor
    message: "at {place}"
"""

CASES: dict[str, tuple[str, int, str, str]] = {
    "rate window missing": (
        "    kind: rate_of_change\n    metric: temperature\n    max_per_minute: 5\n",
        2,
        "window",
        "required field is missing",
    ),
    "rate limit not positive": (
        (
            "    kind: rate_of_change\n    metric: temperature\n    max_per_minute: 0\n"
            "    window: 1m\n"
        ),
        7,
        "max_per_minute",
        "greater than 0",
    ),
    "rate unknown direction": (
        (
            "    kind: rate_of_change\n    metric: temperature\n    max_per_minute: 5\n"
            "    window: 1m\n    direction: up\n"
        ),
        9,
        "direction",
        "'rise', 'fall' or 'both'",
    ),
    "absence for zero": ("    kind: absence\n    for: 0\n", 6, "for", "longer than 0"),
    "absence kind override without unit": (
        "    kind: absence\n    for: 10m\n    for_device_kinds:\n      smoke_detector: 2\n",
        8,
        "for_device_kinds.smoke_detector",
        "expected a duration with a unit",
    ),
    "inactivity place label twice": (
        "    kind: inactivity\n    for: 12h\n    place_by: [unit, unit]\n",
        7,
        "place_by",
        "names a label twice",
    ),
    "inactivity unknown activity kind": (
        "    kind: inactivity\n    for: 12h\n    activity:\n      - kind: presence.motoin\n",
        8,
        "activity[0].kind",
        "did you mean 'presence.motion'",
    ),
    "flat line negative tolerance": (
        "    kind: flat_line\n    metric: humidity\n    for: 6h\n    tolerance: -1\n",
        8,
        "tolerance",
        "greater than or equal to 0",
    ),
    "count of one": (
        "    kind: count\n    match: {kind: door.access}\n    count: 1\n    window: 1m\n",
        7,
        "count",
        "greater than or equal to 2",
    ),
    "count field not in the event": (
        (
            "    kind: count\n    match:\n      kind: door.access\n      data: {grantd: false}\n"
            "    count: 5\n    window: 1m\n"
        ),
        8,
        "match.data.grantd",
        "has no data field 'grantd'",
    ),
    "anomaly alpha out of range": (
        "    kind: anomaly\n    metric: water_flow\n    alpha: 1.5\n",
        7,
        "alpha",
        "less than 1",
    ),
    "anomaly unknown field": (
        "    kind: anomaly\n    metric: water_flow\n    warm_up: 10\n",
        7,
        "warm_up",
        "did you mean 'warmup'",
    ),
}


@pytest.mark.parametrize(("body", "line", "field", "reason"), CASES.values(), ids=CASES.keys())
def test_new_kinds_report_located_errors(body: str, line: int, field: str, reason: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rules(HEAD + body, "kinds.yaml")
    err = caught.value
    assert (err.file, err.line, err.rule, err.field) == ("kinds.yaml", line, "r1", field), err
    assert reason in err.reason


def test_place_templates_are_checked_per_kind() -> None:
    # `rate` belongs to rate_of_change; an absence message cannot name it.
    text = HEAD.replace("at {place}", "at {place}, {rate}") + "    kind: absence\n    for: 1h\n"
    with pytest.raises(RuleError) as caught:
        parse_rules(text, "kinds.yaml")
    assert (caught.value.line, caught.value.field) == (4, "message")


def test_shipped_config_has_an_example_of_every_kind() -> None:
    config = Path(__file__).resolve().parents[2] / "config" / "rules"
    ruleset = load_rules(sorted(config.glob("*.yaml")))
    kinds = {rule.kind for rule in ruleset}
    assert {
        "threshold",
        "event",
        "rate_of_change",
        "absence",
        "inactivity",
        "flat_line",
        "count",
        "correlation",
        "anomaly",
    } <= kinds
