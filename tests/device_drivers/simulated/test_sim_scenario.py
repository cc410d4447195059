from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from device_drivers.simulated import (
    DeviceKind,
    PlaceRef,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_duration,
    parse_scenario,
)
from device_drivers.simulated.scenario import (
    DeniedCardsIncident,
    DoorHeldOpenIncident,
    GasIncident,
    OfflineIncident,
    SilenceIncident,
    SmokeIncident,
)

FULL_YAML = """\
epoch_ms: 1772409600000
incidents:
  - {at: 20s, device: b3-2-201-smoke, do: smoke, heat: [b3-2-201-th]}
  - {at: 5m, device: b3-2-201-gas, do: gas, level: 35}
  - {at: 10m, device: pump-leak, do: water_leak}
  - {at: 15m, device: b3-2-201-sos, do: emergency_button}
  - {at: 20m, device: east-gate-reader, do: door_forced}
  - {at: 25m, device: east-gate-reader, do: door_held_open, open_s: 3m}
  - {at: 30m, device: east-gate-reader, do: denied_cards, count: 6, within: 45s}
  - {at: 35m, device: east-gate-cam, do: intrusion, zone: car-park}
  - {at: 40m, device: east-gate-cam, do: line_crossing, direction: out}
  - {at: 45m, device: east-gate-cam, do: tamper}
  - {at: 1h, device: b3-2-201-pir, do: silence, duration: 12h}
  - {at: 2h, device: b3-pm, do: offline}
  - {at: 1h30m, device: b3-2-201-th, do: heat, rise: 20}
  - {at: 3h, device: b3-2-201-co2, do: stuck, duration: 1h}
"""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20s", 20),
        ("5m", 300),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1d2h", 93600),
        ("1.5m", 90),
        (" 2h 15m ", 8100),
        ("90", 90),
        (90, 90),
        (2.5, 2.5),
        (0, 0),
    ],
)
def test_durations_parse(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5x", "m", "1m1h", "-5", "5 minutes", -1, True, None, [5]])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


def test_nan_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_duration(float("nan"))


def test_load_scenario_reads_every_incident_type(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(FULL_YAML, encoding="utf-8")
    scenario = load_scenario(path)
    assert scenario.epoch_ms == 1_772_409_600_000
    assert [incident.do for incident in scenario.incidents] == [
        "smoke",
        "gas",
        "water_leak",
        "emergency_button",
        "door_forced",
        "door_held_open",
        "denied_cards",
        "intrusion",
        "line_crossing",
        "tamper",
        "silence",
        "offline",
        "heat",
        "stuck",
    ]
    smoke = scenario.incidents[0]
    assert isinstance(smoke, SmokeIncident)
    assert (smoke.at, smoke.duration, smoke.heat) == (20, 300, ("b3-2-201-th",))
    gas = scenario.incidents[1]
    assert isinstance(gas, GasIncident)
    assert gas.level == 35
    held = scenario.incidents[5]
    assert isinstance(held, DoorHeldOpenIncident)
    assert held.open_s == 180
    denied = scenario.incidents[6]
    assert isinstance(denied, DeniedCardsIncident)
    assert (denied.count, denied.within) == (6, 45)
    silence = scenario.incidents[10]
    assert isinstance(silence, SilenceIncident)
    assert (silence.at, silence.duration) == (3600, 43200)
    offline = scenario.incidents[11]
    assert isinstance(offline, OfflineIncident)
    assert offline.duration is None
    assert scenario.incidents[12].at == 5400


@pytest.mark.parametrize(
    ("incidents", "index", "field", "line", "reason"),
    [
        (
            """\
              - {at: 20s, device: a, do: smoke}
              - {at: 5x, device: b, do: smoke}
            """,
            1,
            "at",
            3,
            "invalid duration '5x'",
        ),
        (
            """\
              - {at: 20s, device: a, do: smoke}
              - at: 1m
                device: b
                do: smoke
                duration: 0
            """,
            1,
            "duration",
            3,
            "greater than 0",
        ),
        ("  - {at: 1m, device: a, do: explode}\n", 0, "do", 2, "does not match"),
        ("  - {at: 1m, device: a}\n", 0, "do", 2, "Unable to extract tag"),
        ("  - {device: a, do: smoke}\n", 0, "at", 2, "Field required"),
        ("  - {at: 1m, device: a, do: smoke, colour: red}\n", 0, "colour", 2, "Extra inputs"),
        ("  - {at: 1m, device: a, do: gas, level: 120}\n", 0, "level", 2, "less than or equal"),
        ("  - {at: 1m, device: a, do: silence}\n", 0, "duration", 2, "Field required"),
        ("  - {at: 1m, do: smoke}\n", 0, "device", 2, "either device or place"),
        ("  - {at: 1m, device: a, place: 1/2/3, do: smoke}\n", 0, "device", 2, "not both"),
        (
            "  - {at: 1m, place: 1/2/3, do: silence, duration: 1h}\n",
            0,
            "device_kind",
            2,
            "required",
        ),
        (
            "  - {at: 1m, place: 1/2/3, device_kind: camera, do: stuck, duration: 1h}\n",
            0,
            "device_kind",
            2,
            "cannot happen to a camera device",
        ),
        (
            "  - {at: 1m, device: a, device_kind: smoke, do: smoke}\n",
            0,
            "device_kind",
            2,
            "goes with place only",
        ),
        ("  - {at: 1m, device: a, do: smoke, heat: [b, 5]}\n", 0, "heat.1", 2, "valid string"),
        ("  - {at: 1m, device: 'a b', do: smoke}\n", 0, "device", 2, "pattern"),
    ],
)
def test_load_errors_name_incident_field_and_line(
    tmp_path: Path, incidents: str, index: int, field: str, line: int, reason: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("incidents:\n" + textwrap.dedent(incidents), encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    assert (err.index, err.field, err.line) == (index, field, line)
    assert reason in err.reason
    assert str(err).startswith(f"{path}, incident {index} (line {line}), field {field}: ")


def test_scenario_level_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("epoch_ms: 5\nincidents: []\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert (info.value.index, info.value.field) == (None, "epoch_ms")

    path.write_text("- at: 5\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="a mapping with an incidents: list"):
        load_scenario(path)

    path.write_text("incidents: [\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(path)

    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")


def test_parse_scenario_without_a_file_names_the_incident() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario({"incidents": [{"at": "1m", "device": "a", "do": "gas", "level": -1}]})
    assert (info.value.index, info.value.field, info.value.line) == (0, "level", None)
    assert str(info.value).startswith("incident 0, field level: ")


REGISTRY = {
    ("3/2/201", "smoke"): "b3-2-201-smoke",
    ("3/2/201", "temp_humidity"): "b3-2-201-th",
    ("3/2/202", "temp_humidity"): "b3-2-202-th",
    ("3/2/201", "motion"): "b3-2-201-pir",
    ("east-gate", "door_reader"): "east-gate-reader",
}


def lookup(place: str, kind: DeviceKind) -> str | None:
    assert isinstance(kind, DeviceKind)
    return REGISTRY.get((place, kind.value))


def test_resolve_turns_places_into_device_ids() -> None:
    scenario = parse_scenario(
        {
            "incidents": [
                {
                    "at": "10m",
                    "place": "3/2/201",
                    "do": "smoke",
                    "heat": [{"place": "3/2/201"}, "b3-2-202-th"],
                },
                {
                    "at": "1h",
                    "place": "3/2/201",
                    "device_kind": "motion",
                    "do": "silence",
                    "duration": "12h",
                },
                {"at": "2h", "place": "east-gate", "do": "denied_cards"},
                {"at": "3h", "device": "pump-leak", "do": "water_leak"},
            ]
        }
    )
    assert scenario.unresolved() == (0, 1, 2)
    resolved = scenario.resolve(lookup)
    assert resolved.unresolved() == ()
    smoke, silence, denied, leak = resolved.incidents
    assert isinstance(smoke, SmokeIncident)
    assert (smoke.device, smoke.place, smoke.device_kind) == ("b3-2-201-smoke", None, None)
    assert smoke.heat == ("b3-2-201-th", "b3-2-202-th")
    assert smoke.at == 600
    assert isinstance(silence, SilenceIncident)
    assert (silence.device, silence.duration) == ("b3-2-201-pir", 43200)
    assert denied.device == "east-gate-reader"
    assert leak == scenario.incidents[3]
    # The original is unchanged, and the result survives a trip through plain data (the demo
    # writes it into each gateway's config).
    assert scenario.incidents[0].place == "3/2/201"
    assert parse_scenario(resolved.model_dump(mode="json", exclude_none=True)) == resolved


@pytest.mark.parametrize(
    ("incident", "field", "reason"),
    [
        (
            {"at": 0, "place": "9/9/909", "do": "smoke"},
            "place",
            "no smoke device at place '9/9/909'",
        ),
        (
            {"at": 0, "device": "x", "do": "smoke", "heat": ["y", {"place": "9/9/909"}]},
            "heat.1",
            "no temp_humidity device at place '9/9/909'",
        ),
    ],
)
def test_resolve_fails_naming_the_incident(
    incident: dict[str, object], field: str, reason: str
) -> None:
    ok = {"at": 0, "place": "east-gate", "do": "door_forced"}
    scenario = parse_scenario({"incidents": [ok, incident]})
    with pytest.raises(ScenarioError) as info:
        scenario.resolve(lookup)
    assert (info.value.index, info.value.field) == (1, field)
    assert str(info.value) == f"incident 1, field {field}: {reason}"


def test_resolve_refuses_a_lookup_that_returns_a_bad_id() -> None:
    scenario = parse_scenario({"incidents": [{"at": 0, "place": "1/1/101", "do": "smoke"}]})
    with pytest.raises(ScenarioError) as info:
        scenario.resolve(lambda _place, _kind: "not a valid id")
    assert (info.value.index, info.value.field) == (0, "device")


def test_scenario_defaults_and_immutability() -> None:
    scenario = Scenario()
    assert scenario.incidents == ()
    assert scenario.epoch_ms is None
    assert PlaceRef(place="1/2/3").place == "1/2/3"
    with pytest.raises(ValueError, match="frozen"):
        scenario.epoch_ms = 1  # type: ignore[misc]
