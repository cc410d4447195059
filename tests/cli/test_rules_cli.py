"""`anju rules validate` and `anju rules test --replay`, and the replay runner under them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner, Result

from cli.rules import (
    Record,
    RecordingError,
    ReplayStats,
    load_records,
    parse_records,
    replay_records,
    rules_app,
)
from hub.registry import Registry, load_site
from rules import AlertState, Engine, load_rules, parse_rules

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "config" / "site.yaml"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def invoke(*args: str) -> Result:
    # Wide enough that rich does not wrap the tables and the messages.
    return CliRunner(env={"COLUMNS": "240"}).invoke(rules_app, list(args), catch_exceptions=False)


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000)


# -- validate -----------------------------------------------------------------------------------


def test_validate_lists_the_rules_of_the_hub_config_found_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    result = invoke("validate")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    [row] = [line for line in lines if " device-silent " in line]
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells == [
        "device-silent",
        "absence",
        "minor",
        "ordinary",
        "kinds temp_humidity, co2, pm25, gas, smoke, water_leak",
        "no",
    ]
    files = sorted((REPO / "config" / "rules").glob("*.yaml"))
    assert lines[-1] == f"{len(load_rules(files))} rules in {len(files)} files load."


def test_validate_json_names_every_field_of_a_rule() -> None:
    result = invoke("validate", "--json", str(REPO / "config" / "rules"))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    files = sorted((REPO / "config" / "rules").glob("*.yaml"))
    assert [row["id"] for row in rows] == [rule.id for rule in load_rules(files)]
    [welfare] = [row for row in rows if row["id"] == "welfare-check"]
    watchdogs = REPO / "config" / "rules" / "watchdogs.yaml"
    line = watchdogs.read_text(encoding="utf-8").splitlines().index("  - id: welfare-check") + 1
    assert welfare == {
        "id": "welfare-check",
        "kind": "inactivity",
        "severity": "major",
        "issue_class": "ordinary",
        "scope": {"devices": ["b5-3-302-motion", "b5-3-302-button"]},
        "schedule": True,
        "source": f"{watchdogs}:{line}",
    }


BAD_FIELD = """\
rules:
  - id: too-hot
    kind: threshold
    severity: critical
    message: "Hot at {place}"
    metric: temperature
    abve: 57
"""


def test_validate_names_file_line_rule_and_field_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_FIELD, encoding="utf-8")
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {path}:7: rule 'too-hot', field 'abve': unknown field; did you mean 'above'?",
        (
            f"  → fix field 'abve' of rule 'too-hot' ({path}, line 7), then run anju rules "
            "validate again"
        ),
    ]

    result = invoke("validate", "--json", str(path))
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"] == {
        "file": str(path),
        "line": 7,
        "rule": "too-hot",
        "field": "abve",
        "reason": "unknown field; did you mean 'above'?",
        "hint": f"fix field 'abve' of rule 'too-hot' ({path}, line 7), then run anju rules "
        "validate again",
    }


def test_validate_reports_a_duplicate_id_across_files(tmp_path: Path) -> None:
    rule = BAD_FIELD.replace("abve", "above")
    (tmp_path / "a.yaml").write_text(rule, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(rule, encoding="utf-8")
    result = invoke("validate", str(tmp_path))
    assert result.exit_code == 1
    assert f"first defined at {tmp_path}/a.yaml:2" in result.stderr
    assert "rule ids must be unique across every rule file" in result.stderr


TYPO_SCOPES = """\
rules:
  - id: damp
    kind: threshold
    severity: warning
    message: "Damp at {place}"
    metric: humidity
    above: 85
    scope: {device_kinds: [temp_humidty]}
  - id: smoke-in-building-5
    kind: event
    severity: critical
    message: "Smoke at {place}"
    match: {kind: alarm.smoke}
    scope: {device_kinds: [smoke], buildings: [5]}
  - id: gas
    kind: event
    severity: critical
    message: "Gas at {place}"
    match: {kind: alarm.gas}
    scope: {device_kinds: [gas]}
"""


def test_validate_with_a_site_warns_about_rules_that_match_no_device(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(TYPO_SCOPES, encoding="utf-8")
    result = invoke("validate", str(path), "--site", str(SITE))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"warning: rule 'damp' ({path}:2) matches no device of the site, so it can never fire",
        (
            "  → scope.device_kinds: no device of the site has device_kind 'temp_humidty'; did you "
            "mean 'temp_humidity'?"
        ),
        (
            f"warning: rule 'smoke-in-building-5' ({path}:9) matches no device of the site, so it "
            "can never fire"
        ),
        "  → every value exists in the site, but no device has all of them at once",
    ]
    counts = {
        row["id"]: row["devices_in_scope"]
        for row in json.loads(invoke("validate", str(path), "--site", str(SITE), "--json").stdout)
    }
    assert counts == {"damp": 0, "smoke-in-building-5": 0, "gas": 1}
    assert invoke("validate", str(path), "--site", str(SITE), "--strict").exit_code == 1


def test_validate_without_rules_here_says_what_to_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("validate")
    assert result.exit_code == 2
    assert "no rule files given, and no config/hub.yaml or config/rules/ here" in result.stderr


# -- recordings ---------------------------------------------------------------------------------


def test_records_are_readings_or_events_with_either_kind_of_time() -> None:
    text = (
        "# a comment\n"
        "\n"
        '{"ts": 1767636000000, "device": "b3-2-201-th", "values": {"temperature": 21}}\n'
        '  {"ts": "2026-01-06T02:00:10+08:00", "device": "b3-2-201-smoke", "event": "alarm.smoke"}\n'
    )
    assert parse_records(text) == [
        Record(3, 1_767_636_000_000, "b3-2-201-th", values={"temperature": 21.0}),
        # The data is normalised as the hub does it: a smoke alarm is active unless it says not.
        Record(4, 1_767_636_010_000, "b3-2-201-smoke", event="alarm.smoke", data={"active": True}),
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"ts": 1767636000000, "device": "x", "values": {"t": 1}', "not JSON: "),
        ("[1, 2]", 'expected an object: {"ts": ..., "device": ..., "values"|"event": ...}'),
        (
            '{"ts": "2026-01-06T02:00:00", "device": "x", "values": {"t": 1}}',
            "\"ts\": '2026-01-06T02:00:00' has no UTC offset; add Z or one like +08:00",
        ),
        (
            '{"ts": 1767636000, "device": "x", "values": {"t": 1}}',
            '"ts": 1767636000 is not between 2020 and 2100 (milliseconds since 1970?)',
        ),
        (
            '{"ts": 1767636000000, "device": "x", "values": {"t": 1}, "event": "door.forced"}',
            'give either "values" (a reading) or "event" (an event)',
        ),
        (
            '{"ts": 1767636000000, "device": "x", "value": {"t": 1}}',
            "unknown field 'value'; a line has data, device, event, ts, values",
        ),
        (
            '{"ts": 1767636000000, "device": "x", "values": {"t": true}}',
            '"values.t" must be a finite number, got True',
        ),
        (
            '{"ts": 1767636000000, "device": "x", "event": "door.opened"}',
            "\"event\": unknown event kind: 'door.opened'",
        ),
        (
            '{"ts": 1767636000000, "device": "x", "event": "alarm.smoke", "data": {"active": "yes"}}',
            '"data.active": Input should be a valid boolean',
        ),
    ],
)
def test_a_malformed_line_is_an_error_naming_its_line(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = tmp_path / "night.jsonl"
    good = '{"ts": 1767636000000, "device": "x", "values": {"t": 1}}'
    path.write_text(f"# header\n{good}\n{line}\n{good}\n", encoding="utf-8")
    with pytest.raises(RecordingError) as raised:
        load_records(path)
    assert (raised.value.file, raised.value.line) == (str(path), 3)
    assert raised.value.reason.startswith(reason)
    assert str(raised.value).startswith(f"{path}:3: {reason}")

    result = invoke(
        "test",
        "--replay",
        str(path),
        "--site",
        str(SITE),
        "--rules",
        str(REPO / "config" / "rules"),
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {path}:3: ")


# -- replay -------------------------------------------------------------------------------------

RULES = """\
rules:
  - id: smoke
    kind: event
    severity: critical
    message: "Smoke at {place}"
    match: {kind: alarm.smoke, data: {active: true}}
    resolve_on: {active: false}
  - id: hot
    kind: threshold
    severity: critical
    message: "{value:.1f} °C at {place}"
    metric: temperature
    above: 57
    for: 30s
    clear_above: 50
  - id: silent
    kind: absence
    severity: minor
    message: "{device} silent at {place}"
    scope: {device_kinds: [temp_humidity]}
    for: 5m
"""

# Smoke in unit 3-2-201 with the heat above 57 °C for longer than `for`, the sensor in 5-3-302
# silent after its first reading, and one line from a device the site does not have.
RECORDING = """\
{"ts": "2026-01-06T02:00:00+08:00", "device": "b5-3-302-th", "values": {"temperature": 21.0}}
{"ts": "2026-01-06T02:00:00+08:00", "device": "b3-2-201-th", "values": {"temperature": 22.0}}
{"ts": "2026-01-06T02:00:10+08:00", "device": "b3-2-201-smoke", "event": "alarm.smoke", "data": {"active": true}}
{"ts": "2026-01-06T02:00:20+08:00", "device": "b3-2-201-th", "values": {"temperature": 58.0}}
{"ts": "2026-01-06T02:00:40+08:00", "device": "b3-2-201-th", "values": {"temperature": 60.0}}
{"ts": "2026-01-06T02:00:50+08:00", "device": "ghost-1", "values": {"temperature": 99.0}}
{"ts": "2026-01-06T02:01:00+08:00", "device": "b3-2-201-th", "values": {"temperature": 61.0}}
{"ts": "2026-01-06T02:02:00+08:00", "device": "b3-2-201-th", "values": {"temperature": 49.0}}
{"ts": "2026-01-06T02:03:00+08:00", "device": "b3-2-201-smoke", "event": "alarm.smoke", "data": {"active": false}}
{"ts": "2026-01-06T02:04:00+08:00", "device": "b3-2-201-th", "values": {"temperature": 22.0}}
{"ts": "2026-01-06T02:06:00+08:00", "device": "b3-2-201-th", "values": {"temperature": 22.0}}
"""

EXPECTED = [
    ("2026-01-06T02:00:10.000+08:00", "smoke", "b3-2-201-smoke", "firing"),
    ("2026-01-06T02:00:20.000+08:00", "hot", "b3-2-201-th", "pending"),
    ("2026-01-06T02:01:00.000+08:00", "hot", "b3-2-201-th", "firing"),
    ("2026-01-06T02:02:00.000+08:00", "hot", "b3-2-201-th", "resolved"),
    ("2026-01-06T02:03:00.000+08:00", "smoke", "b3-2-201-smoke", "resolved"),
    # No data from 5-3-302 after 02:00: its silence shows between records, at its deadline.
    ("2026-01-06T02:05:00.000+08:00", "silent", "b5-3-302-th", "firing"),
    # --tail 5m: time runs on past the last record until 3-2-201's sensor is silent too.
    ("2026-01-06T02:11:00.000+08:00", "silent", "b3-2-201-th", "firing"),
]


@pytest.fixture
def recording(tmp_path: Path) -> tuple[Path, Path]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    path = tmp_path / "night.jsonl"
    path.write_text(RECORDING, encoding="utf-8")
    return path, rules


def test_replay_prints_each_transition_at_its_time(recording: tuple[Path, Path]) -> None:
    path, rules = recording
    # The lifecycle's own output is tested below.
    args = (
        "test",
        "--replay",
        str(path),
        "--site",
        str(SITE),
        "--rules",
        str(rules),
        "--no-notifications",
    )
    result = invoke(*args, "--tail", "5m", "--json")
    assert result.exit_code == 0, result.output
    rows = [r for r in map(json.loads, result.stdout.splitlines()) if "state" in r]
    assert [(r["time"], r["rule"], r["subject"], r["state"]) for r in rows] == EXPECTED
    assert rows[2]["since"] == ms("2026-01-06T02:00:20+08:00")
    assert rows[2]["place"] == "Building 3, floor 2, unit 201"
    assert rows[2]["message"] == "61.0 °C at Building 3, floor 2, unit 201"
    assert rows[2]["severity"] == "critical"
    # The unknown device is reported, not fatal.
    assert result.stderr.splitlines() == [
        (
            "8 readings and 2 events replayed from 2026-01-06 02:00:00 to 2026-01-06 02:11:00 "
            "(Asia/Shanghai): 7 transitions"
        ),
        "warning: skipped 1 record of devices not in the site: ghost-1 (1)",
    ]

    table = invoke(*args, "--tail", "5m")
    assert table.exit_code == 0
    [row] = [line for line in table.stdout.splitlines() if "02:05:00" in line]
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells == [
        "2026-01-06 02:05:00",
        "silent",
        "b5-3-302-th",
        "Building 5, floor 3, unit 302",
        "firing",
        "minor",
    ]

    # Without the tail, time stops at the last record: 3-2-201 is not silent long enough.
    result = invoke(*args, "--json")
    assert len(result.stdout.splitlines()) == len(EXPECTED) - 1


def test_replay_until_stops_time_and_leaves_later_records_out(
    recording: tuple[Path, Path],
) -> None:
    path, rules = recording
    result = invoke(
        "test", "--replay", str(path), "--site", str(SITE), "--rules", str(rules),
        "--until", "2026-01-06T02:01:30+08:00", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [r for r in map(json.loads, result.stdout.splitlines()) if "state" in r]
    assert [(r["time"], r["rule"], r["subject"], r["state"]) for r in rows] == EXPECTED[:3]
    assert "warning: 4 records after --until not replayed" in result.stderr


def test_replay_records_ticks_between_records_and_yields_the_clock() -> None:
    registry = Registry(load_site(SITE))
    engine = Engine(parse_rules(RULES, "rules.yaml"))
    stats = ReplayStats()
    steps = list(
        replay_records(
            parse_records(RECORDING), engine, registry, tick_ms=60_000, tail_ms=0, stats=stats
        )
    )
    # Each record, and each tick on the minute grid from 02:00:00 when a record is a step on.
    times = [dt.datetime.fromtimestamp(t / 1000, SHANGHAI).strftime("%H:%M:%S") for t, _ in steps]
    assert times == [
        "02:00:00", "02:00:00", "02:00:10", "02:00:20", "02:00:40",
        "02:01:00", "02:01:00", "02:02:00", "02:02:00",
        "02:03:00", "02:03:00", "02:04:00", "02:04:00",
        "02:06:00", "02:06:00", "02:06:00",
    ]  # fmt: skip
    [(tick_time, [silent])] = [(t, out) for t, out in steps if out and out[0].rule_id == "silent"]
    assert tick_time == ms("2026-01-06T02:06:00+08:00")
    assert (silent.device, silent.state) == ("b5-3-302-th", AlertState.FIRING)
    assert silent.ts_ms == ms("2026-01-06T02:05:00+08:00")
    assert silent.labels["place"] == "Building 5, floor 3, unit 302"
    assert (stats.readings, stats.events, stats.ticks) == (8, 2, 6)
    assert stats.unknown == {"ghost-1": 1}


NIGHT = [
    ("02:00:20", "smoke-detected", "b3-2-201-smoke", "firing"),
    ("02:00:35", "door-forced-night", "east-gate-reader", "firing"),
    ("02:00:57", "cards-denied-burst", "east-gate-reader", "firing"),
    ("02:01:30", "heat-rising-fast", "b3-2-201-th", "firing"),
    ("02:02:30", "smoke-and-heat", "place:3/2/201", "firing"),
    ("02:03:00", "high-temperature", "b3-2-201-th", "pending"),
    ("02:03:30", "high-temperature", "b3-2-201-th", "firing"),
    ("02:04:00", "heat-rising-fast", "b3-2-201-th", "resolved"),
    ("02:05:20", "smoke-and-heat", "place:3/2/201", "resolved"),
    ("02:06:30", "high-temperature", "b3-2-201-th", "resolved"),
    ("02:09:20", "smoke-detected", "b3-2-201-smoke", "resolved"),
    ("02:10:57", "cards-denied-burst", "east-gate-reader", "resolved"),
    ("02:15:00", "device-silent", "b3-lobby-co2", "firing"),
    ("02:15:35", "door-forced-night", "east-gate-reader", "resolved"),
    ("02:18:00", "device-silent", "b3-lobby-co2", "resolved"),
]


def test_the_example_night_replays_with_the_example_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    # Run where an operator would: the site and the rules come from config/hub.yaml.
    monkeypatch.chdir(REPO)
    result = invoke("test", "--replay", "config/scenarios/replay-night.jsonl", "--json")
    assert result.exit_code == 0, result.output
    rows = [r for r in map(json.loads, result.stdout.splitlines()) if "state" in r]
    got = [(r["time"][11:19], r["rule"], r["subject"], r["state"]) for r in rows]
    assert got == NIGHT
    assert {r["time"][:11] for r in rows} == {"2026-01-06T"}
    assert rows[1]["place"] == "East gate"
    assert rows[4]["message"].startswith(
        "Smoke alarm and high temperature together at Building 3, floor 2, unit 201 (grid North grid)"
    )
    assert result.stderr.splitlines() == [
        (
            "43 readings and 8 events replayed from 2026-01-06 02:00:00 to 2026-01-06 02:20:00 "
            "(Asia/Shanghai): 15 transitions"
        )
    ]


def test_replay_runs_the_alert_lifecycle_on_the_same_virtual_clock() -> None:
    result = invoke("test", "--replay", "config/scenarios/replay-night.jsonl", "--json")
    assert result.exit_code == 0, result.output
    notices = [r for r in map(json.loads, result.stdout.splitlines()) if "notification" in r]
    door = [
        (r["notification"], r["recipients"]) for r in notices if r["rule"] == "door-forced-night"
    ]
    # The grid's worker after the group wait, the street-block lead after the step's wait,
    # and both hear of the resolve.
    assert door == [
        ("firing", ["Zhao Lei"]),
        ("step:1", ["Li Qiang"]),
        ("resolved", ["Zhao Lei", "Li Qiang"]),
    ]
    times = [r["ts"] for r in notices if r["rule"] == "door-forced-night"]
    assert times[1] - times[0] == 10 * 60_000  # the composite route's first wait
    smoke = next(r for r in notices if r["rule"] == "smoke-detected")
    assert {"Wang Fang", "Li Qiang", "Chen Min", "Security room"} <= set(smoke["recipients"])
