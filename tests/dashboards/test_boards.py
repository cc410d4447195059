"""The four boards: only series and labels the hub writes, valid Grafana JSON, stable uids."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

import dashboards
from dashboards import LEVELS, all_boards, grafana_unit
from dashboards import promql as q
from dashboards.panels import VM_DATASOURCE_UID
from rules import ThresholdRule, load_rules
from tests.dashboards.helpers import exprs_of, panels_of
from tests.dashboards.hub_points import hub_points, series_of
from tests.dashboards.promql_scan import Scan, scan, scan_label_values
from wire import DEVICE_TAGS, EVENT_SPECS, EVENT_TAGS, VALUE_UNITS, Measurement

ROOT = Path(__file__).resolve().parents[2]
STABLE_UIDS = ["anju-security-wall", "anju-environment", "anju-fleet-health", "anju-welfare"]
# The dashboard schema version grafana-foundation-sdk 11.6 writes (Grafana 11.6 and 12).
SCHEMA_VERSION = 41
GATEWAY_LABELS = frozenset({"site", "gateway"})
GRAFANA_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


# -- what the hub writes, from wire ---------------------------------------------------------------


def allowed_series() -> dict[str, frozenset[str]]:
    """Series name → its labels, derived from wire.measurements (as VictoriaMetrics names them)."""
    allowed = {f"{Measurement.READING}_{name}": frozenset(DEVICE_TAGS) for name in VALUE_UNITS}
    allowed[f"{Measurement.EVENT}_count"] = frozenset(EVENT_TAGS)
    for field in ("queue_depth", "oldest_age_s"):
        allowed[f"{Measurement.GATEWAY}_{field}"] = GATEWAY_LABELS
    return allowed


# Name regexes a panel may select several series with, and the labels those series carry.
ALLOWED_NAME_REGEXES: dict[str, frozenset[str]] = {
    f"{Measurement.READING}_.+": frozenset(DEVICE_TAGS),
    f"{Measurement.READING}_.+|{Measurement.EVENT}_count": frozenset(DEVICE_TAGS),
    # The hub writes health drops as fields dropped_<priority> (not listed in wire).
    f"{Measurement.GATEWAY}_dropped_.+": GATEWAY_LABELS,
}


def all_queries(boards_json: list[dict[str, Any]]) -> list[tuple[str, str, Scan]]:
    """``(board uid, where, scan)`` for every panel target and every variable query."""
    found = []
    for board in boards_json:
        for title, expr in exprs_of(board):
            found.append((board["uid"], title, scan(expr)))
        for variable in board["templating"]["list"]:
            selector_scan, _label = scan_label_values(variable["query"])
            found.append((board["uid"], f"${variable['name']}", selector_scan))
    return found


def test_every_series_and_label_in_the_boards_is_one_the_hub_writes(boards_json):
    allowed = allowed_series()
    checked = 0
    for uid, where, result in all_queries(boards_json):
        assert result.selectors, f"{uid} / {where}: no series selected"
        for selector in result.selectors:
            if selector.name is not None:
                assert selector.name in allowed, f"{uid} / {where}: {selector.name} not written"
                labels = allowed[selector.name]
            else:
                assert selector.name_regex in ALLOWED_NAME_REGEXES, f"{uid} / {where}"
                labels = ALLOWED_NAME_REGEXES[selector.name_regex]
            unknown = set(selector.labels) - labels
            assert not unknown, f"{uid} / {where}: labels {unknown} not on {selector.name}"
            kind = selector.values.get("kind")
            if kind is not None and "|" not in kind:
                assert kind in EVENT_SPECS, f"{uid} / {where}: unknown kind {kind}"
            checked += 1
        assert result.grouping_labels <= set(EVENT_TAGS), f"{uid} / {where}"
    assert checked > 40


def test_variable_queries_ask_for_labels_the_hub_writes(boards_json):
    for board in boards_json:
        names = [v["name"] for v in board["templating"]["list"]]
        assert names == ["site", "grid", "building"]
        for variable in board["templating"]["list"]:
            _, label = scan_label_values(variable["query"])
            assert label == variable["name"]
            assert label in DEVICE_TAGS
            assert variable["datasource"]["uid"] == VM_DATASOURCE_UID
            assert variable["type"] == "query"
            assert variable["includeAll"] is True
            assert variable["allValue"] == ".*"


async def test_the_series_selected_exist_in_what_the_hub_ingest_path_writes(tmp_path, boards_json):
    """Run the example site's messages through the hub's Ingestor and match the panels on them."""
    points = await hub_points(tmp_path / "hub", 1_700_000_000_000)
    written: dict[str, set[str]] = {}
    for point in points:
        for name, tags in series_of(point):
            written.setdefault(name, set()).update(tags)
    for uid, where, result in all_queries(boards_json):
        for selector in result.selectors:
            if selector.name is not None:
                names = [selector.name] if selector.name in written else []
            else:
                pattern = re.compile(selector.name_regex or "")
                names = [n for n in written if pattern.fullmatch(n)]
            assert names, f"{uid} / {where}: {selector} matches nothing the hub wrote"
            labels = set().union(*(written[n] for n in names))
            assert set(selector.labels) <= labels, f"{uid} / {where}: {selector}"


def test_kind_matchers_use_only_catalogued_kinds(boards_json):
    for board in boards_json:
        for title, expr in exprs_of(board):
            for selector in scan(expr).selectors:
                kind = selector.values.get("kind")
                if kind is None:
                    continue
                alternatives = [re.sub(r"\\(.)", r"\1", k) for k in kind.split("|")]
                assert set(alternatives) <= set(EVENT_SPECS), f"{board['uid']} / {title}"


def test_the_security_wall_never_shows_movement_inside_homes(boards_json):
    wall = next(b for b in boards_json if b["uid"] == "anju-security-wall")
    for title, expr in exprs_of(wall):
        assert "presence" not in expr, title


# -- Grafana dashboard JSON -------------------------------------------------------------------------


def test_uids_are_unique_and_stable(boards):
    uids = [board.uid for board in boards]
    assert uids == STABLE_UIDS
    assert [board.uid for board in all_boards()] == uids
    assert all(GRAFANA_UID.match(uid) for uid in uids)
    assert [board.to_dict()["uid"] for board in boards] == uids
    assert len({board.slug for board in boards}) == len(boards)


def test_boards_are_valid_grafana_dashboard_json(boards_json):
    for board in boards_json:
        uid = board["uid"]
        assert board["schemaVersion"] == SCHEMA_VERSION
        assert board["title"].startswith("anju · ")
        assert "anju" in board["tags"]
        assert "id" not in board or board["id"] is None
        assert board["time"]["from"].startswith("now-")
        ids = [panel["id"] for panel in panels_of(board)]
        assert ids == list(range(1, len(ids) + 1)), uid
        cells: set[tuple[int, int]] = set()
        for panel in panels_of(board):
            pos = panel["gridPos"]
            assert pos["x"] >= 0, (uid, panel["title"])
            assert pos["x"] + pos["w"] <= 24, (uid, panel["title"])
            assert pos["h"] > 0
            assert pos["y"] >= 0
            mine = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not mine & cells, f"{uid}: {panel['title']} overlaps another panel"
            cells |= mine
            if panel["type"] == "row":
                continue
            assert panel["type"] in {"timeseries", "stat", "table", "bargauge", "state-timeline"}
            assert panel["datasource"] == {"type": "prometheus", "uid": VM_DATASOURCE_UID}
            assert panel["targets"], (uid, panel["title"])
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids)
            assert all(ref_ids)
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == VM_DATASOURCE_UID
                assert target["expr"].strip()
            assert panel["description"], (uid, panel["title"])


def test_boards_round_trip_through_the_sdk_model(boards_json):
    for board in boards_json:
        again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
        assert again == board


def test_time_series_of_event_counts_step_with_the_interval(boards_json):
    """count_over_time over $__interval in range queries, over $__range in instant ones."""
    for board in boards_json:
        for panel in panels_of(board):
            for target in panel.get("targets", []):
                expr = target["expr"]
                if "$__range" in expr:
                    assert target["instant"] is True, panel["title"]
                if "$__interval" in expr:
                    assert target.get("range") is True, panel["title"]


# -- units and levels ---------------------------------------------------------------------------------


def _reading_names(expr: str) -> set[str]:
    prefix = f"{Measurement.READING}_"
    return {
        s.name[len(prefix) :] for s in scan(expr).selectors if s.name and s.name.startswith(prefix)
    }


def test_reading_panels_use_the_unit_from_wire_and_the_rule_levels(boards_json):
    seen_levels = set()
    for board in boards_json:
        for panel in panels_of(board):
            names = set().union(*(_reading_names(t["expr"]) for t in panel.get("targets", [])))
            if len(names) != 1:
                continue
            (name,) = names
            defaults = panel["fieldConfig"]["defaults"]
            assert defaults["unit"] == grafana_unit(name), panel["title"]
            if name in LEVELS:
                steps = [(s["value"], s["color"]) for s in defaults["thresholds"]["steps"]]
                assert steps == LEVELS[name].steps(), panel["title"]
                seen_levels.add(name)
    assert seen_levels == set(LEVELS)


def test_grafana_units_for_every_value_name():
    assert grafana_unit("temperature") == "celsius"
    assert grafana_unit("humidity") == "humidity"
    assert grafana_unit("co2") == "ppm"
    assert grafana_unit("pm25") == "con\u03bcgm3"  # Grafana's id is spelled with a Greek mu
    assert grafana_unit("gas") == "suffix:%LEL"
    assert grafana_unit("smoke") == "none"
    for name in VALUE_UNITS:
        assert grafana_unit(name)
    with pytest.raises(ValueError, match="unknown value name"):
        grafana_unit("lux")


def test_levels_match_the_threshold_rules_shipped_in_config():
    rule_set = load_rules(sorted((ROOT / "config" / "rules").glob("*.yaml")))
    by_id = {rule.id: rule for rule in rule_set}
    for value, level in LEVELS.items():
        rule = by_id[level.rule]
        assert isinstance(rule, ThresholdRule)
        assert rule.metric == value
        assert rule.severity == level.severity
        if level.direction == "above":
            assert (rule.above, rule.clear_above) == (level.fire, level.clear)
        else:
            assert (rule.below, rule.clear_below) == (level.fire, level.clear)
    threshold_rules = {r.metric for r in rule_set if isinstance(r, ThresholdRule)}
    assert threshold_rules == set(LEVELS)


# -- the helpers refuse names the hub does not write ----------------------------------------------------


def test_promql_helpers_refuse_unknown_names():
    with pytest.raises(ValueError, match="unknown value name"):
        q.reading("lux")
    with pytest.raises(ValueError, match="unknown gateway health field"):
        q.gateway("dropped")
    with pytest.raises(ValueError, match="unknown event kind"):
        q.kind_is("door.kicked")
    with pytest.raises(ValueError, match="unknown event kinds"):
        q.kind_in(["door.access", "fire.alarm"])
    with pytest.raises(ValueError, match="not written"):
        q.eq("room", "1")
    with pytest.raises(ValueError, match="no event kind"):
        q.kinds("lift.")
    assert q.reading("co2") == "reading_co2"
    assert q.quote('a"b\\c') == '"a\\"b\\\\c"'


def test_public_api_is_curated():
    assert sorted(dashboards.__all__) == sorted(set(dashboards.__all__))
    for name in dashboards.__all__:
        assert hasattr(dashboards, name), name
