from __future__ import annotations

from collections.abc import Callable

import pytest

from rules import STANDARD_LABELS, AlertState, Engine, Subject
from rules.template import MISSING, Template, format_number

T0 = 1_767_225_600_000

EngineFor = Callable[[str], Engine]

LEAK = """\
rules:
  - id: water-leak
    kind: event
    severity: major
    summary: "Leak in building {building}"
    message: "Water leak at {place} (grid {grid_name}, floor {floor}), device {device}, team {team}, rule {rule_id} ({severity})"
    labels: {team: plumbing}
    match: {kind: alarm.water_leak, data: {active: true}}
"""


def test_message_names_the_place_and_rule_labels(engine_for: EngineFor, subject: Subject) -> None:
    [t] = engine_for(LEAK).on_event(subject, T0, "alarm.water_leak", {"active": True})

    assert t.summary == "Leak in building 3"
    assert t.message == (
        "Water leak at Building 3, floor 2, unit 201 (grid East Gate, floor 2), device dev-1, "
        "team plumbing, rule water-leak (major)"
    )


def test_missing_labels_render_as_a_question_mark(engine_for: EngineFor) -> None:
    bare = Subject("leak-7", {"place": "Pump room B"})
    [t] = engine_for(LEAK).on_event(bare, T0, "alarm.water_leak", {"active": True})

    assert t.summary == "Leak in building ?"
    assert "(grid ?, floor ?)" in t.message
    assert t.message.startswith("Water leak at Pump room B ")


def test_transition_labels_merge_subject_rule_and_fixed_labels(
    engine_for: EngineFor, subject: Subject
) -> None:
    # A subject label may not impersonate the rule or its severity.
    tricky = Subject(subject.device, {**subject.labels, "severity": "warning", "rule_id": "x"})
    [t] = engine_for(LEAK).on_event(tricky, T0, "alarm.water_leak", {"active": True})

    assert t.labels == {
        **subject.labels,
        "team": "plumbing",
        "rule_id": "water-leak",
        "severity": "major",
        "issue_class": "ordinary",
        "device": "dev-1",
    }
    assert t.state is AlertState.FIRING


def test_summary_defaults_to_the_rule_id(engine_for: EngineFor, subject: Subject) -> None:
    text = LEAK.replace('    summary: "Leak in building {building}"\n', "")
    [t] = engine_for(text).on_event(subject, T0, "alarm.water_leak", {"active": True})
    assert t.summary == "water-leak"


def test_every_standard_label_is_a_template_name(engine_for: EngineFor, subject: Subject) -> None:
    message = " ".join(f"{{{name}}}" for name in STANDARD_LABELS)
    text = LEAK.replace(LEAK.splitlines()[5], f'    message: "{message}"')
    [t] = engine_for(text).on_event(subject, T0, "alarm.water_leak", {"active": True})
    assert t.message == " ".join(subject.labels[name] for name in STANDARD_LABELS)


def test_render_applies_format_specs_and_skips_them_for_missing_values() -> None:
    template = Template.parse("{value:.1f} °C at {place:>6}, {floor}")
    assert template.names == {"value", "place", "floor"}
    assert template.render({"value": 57.26, "place": "B3", "floor": None}) == "57.3 °C at     B3, ?"
    assert template.render({}) == f"{MISSING} °C at {MISSING}, {MISSING}"


def test_literal_braces_survive() -> None:
    assert Template.parse("{{not a field}} at {place}").render({"place": "B3"}) == (
        "{not a field} at B3"
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (57.0, "57"),
        (1500.0, "1500"),
        (57.25, "57.25"),
        (21.456, "21.46"),
        (0.5, "0.5"),
        (0.004, "0.004"),
        (-3.0, "-3"),
        (0.1 + 0.2, "0.3"),
    ],
)
def test_numbers_are_formatted_for_people(value: float, text: str) -> None:
    assert format_number(value) == text
