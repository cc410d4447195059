"""Every panel's query runs on a real VictoriaMetrics holding what the hub writes.

The example site's messages go through the hub's Ingestor; its points go to VictoriaMetrics as
line protocol (as the InfluxDB sink sends them); then each panel's expression, with the template
variables set to "All" (``.*``), must parse, run without error and, for the panels fed here,
return data.
"""

from __future__ import annotations

import re
import time

import pytest

from dashboards import all_boards
from tests.dashboards.helpers import exprs_of
from tests.dashboards.hub_points import hub_points
from tests.dashboards.promql_scan import scan_label_values
from tests.servers import VictoriaMetrics

pytestmark = pytest.mark.integration

GRAFANA_VARIABLES = {"$__interval": "5m", "$__range": "1h"}
# Panels allowed to be empty with this data: a counter written once has no increase yet.
MAY_BE_EMPTY = {"Messages dropped"}


def substitute(expr: str) -> str:
    """What Grafana sends: built-in variables by value, the place variables at "All" (``.*``)."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    expr = re.sub(r"\$\{?(site|grid|building)\}?", ".*", expr)
    assert "$" not in expr, expr
    return expr


async def _fill(victoria: VictoriaMetrics, tmp_path) -> float:
    now_ms = int(time.time() * 1000)
    # Two rounds: one older than any subquery step (a subquery only sees samples up to its
    # last aligned step), one a moment ago (what "online" and instant queries look at).
    for offset_ms in (15 * 60_000, 5_000):
        points = await hub_points(tmp_path / f"hub-{offset_ms}", now_ms - offset_ms)
        victoria.write_lines([point.line() for point in points])
    return now_ms / 1000


async def test_every_panel_query_runs_and_returns_data(victoria: VictoriaMetrics, tmp_path):
    at = await _fill(victoria, tmp_path)
    empty = []
    ran = 0
    for board in (b.to_dict() for b in all_boards()):
        for title, expr in exprs_of(board):
            result = victoria.query(substitute(expr), at=at)  # raises on a parse error
            ran += 1
            if not result and title not in MAY_BE_EMPTY:
                empty.append(f"{board['uid']} / {title}: {expr}")
    assert ran > 30
    assert not empty, "\n".join(empty)


async def test_panel_values_on_known_data(victoria: VictoriaMetrics, tmp_path):
    at = await _fill(victoria, tmp_path)
    values: dict[str, list[tuple[dict[str, str], float]]] = {}
    for board in (b.to_dict() for b in all_boards()):
        for title, expr in exprs_of(board):
            rows = victoria.query(substitute(expr), at=at)
            values[title] = [(r["metric"], float(r["value"][1])) for r in rows]

    def only(title: str) -> float:
        ((_, value),) = values[title]
        return value

    assert only("Gateways online") == 3  # gw-north, gw-south, gw-gate in config/site.yaml
    assert only("Gateways silent") == 0
    assert only("Forced doors") == 2  # one per round, both within the hour
    assert only("Emergency button events") == 2
    movements = {m["unit"]: v for m, v in values["Movements in the last 12h"]}
    assert movements == {"302": 2}
    last_seen = values["Gateways: seconds since last report"]
    assert {m["gateway"] for m, _ in last_seen} == {"gw-north", "gw-south", "gw-gate"}
    assert all(v < 60 for _, v in last_seen)  # the fresh round, not the one 15 minutes ago
    (hours,) = values["Hours since the last movement"]
    assert hours[1] < 60 / 3600
    temperatures = {m["device"] for m, _ in values["Temperature now"]}
    assert temperatures == {"b1-pump-th", "b3-2-201-th", "b5-3-302-th"}
    places = {
        (m.get("building"), m.get("floor"), m.get("unit")) for m, _ in values["Temperature now"]
    }
    assert ("3", "2", "201") in places


async def test_variable_queries_find_the_sites_places(victoria: VictoriaMetrics, tmp_path):
    await _fill(victoria, tmp_path)
    board = all_boards()[0].to_dict()
    found = {}
    for variable in board["templating"]["list"]:
        selector_scan, label = scan_label_values(variable["query"])
        assert selector_scan.selectors
        selector = variable["query"][len("label_values(") : variable["query"].rindex(",")]
        series = victoria.series(substitute(selector))
        found[label] = {s[label] for s in series if label in s}
    assert found == {
        "site": {"sunrise"},
        "grid": {"north", "south"},
        "building": {"1", "3", "5", "7"},
    }


async def test_silent_gateways_stay_listed_with_their_age(victoria: VictoriaMetrics, tmp_path):
    """A gateway silent for 15 minutes is past the staleness window: still listed, as silent."""
    now = time.time()
    points = await hub_points(tmp_path / "hub", int((now - 15 * 60) * 1000))
    victoria.write_lines([point.line() for point in points])
    values = {}
    for board in (b.to_dict() for b in all_boards()):
        for title, expr in exprs_of(board):
            rows = victoria.query(substitute(expr), at=now)
            values[title] = [(r["metric"], float(r["value"][1])) for r in rows]
    assert values["Gateways online"] == [({}, 0.0)]
    assert values["Gateways silent"] == [({}, 3.0)]
    ages = [age for _, age in values["Gateways: seconds since last report"]]
    assert len(ages) == 3
    assert all(15 * 60 <= age <= 16 * 60 + 1 for age in ages), ages  # within one 1m step
