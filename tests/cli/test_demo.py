"""`anju demo --duration N --json` runs the whole site and reports the fire with its place."""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from cli.demo import scenario_epoch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.scenario
@pytest.mark.integration
def test_demo_reports_the_fire_as_critical_with_its_place() -> None:
    anju = Path(sys.executable).with_name("anju")
    env = {k: v for k, v in os.environ.items() if k != "ANJU_SITE_SECRET"}
    result = subprocess.run(
        [str(anju), "demo", "--duration", "60", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    summary = orjson.loads(result.stdout)
    assert summary["broker"] == "mosquitto"
    assert summary["store"] == "sqlite"
    assert summary["readings"] > 100  # about 12 telemetry devices every 5 s
    assert summary["quarantined"] == 0
    assert all(gw["online"] for gw in summary["gateways"].values())
    fire = next(a for a in summary["alerts"] if a["rule"] == "smoke-detected")
    assert fire["severity"] == "critical"
    assert fire["place"] == "Building 3, floor 2, unit 201"
    assert (fire["building"], fire["floor"], fire["unit"], fire["grid"]) == (
        "3",
        "2",
        "201",
        "North grid",
    )
    assert any("Wang Fang" in r for r in fire["recipients"])
    door = next(a for a in summary["alerts"] if a["rule"] == "door-forced-night")
    assert door["place"] == "East gate"
    # Card reads reach the hub only as keyed pseudonyms (the denied cards at 45 s among them).
    with sqlite3.connect(Path(summary["run_dir"]) / "hub" / "hub.sqlite3") as db:
        rows = db.execute("SELECT data FROM event WHERE kind = 'door.access'").fetchall()
    credentials = [orjson.loads(data)["credential"] for (data,) in rows]
    assert len(credentials) >= 5
    assert all(re.fullmatch(r"h1:[0-9a-f]{32}", c) for c in credentials)


def test_the_demo_night_starts_in_the_past_at_0159() -> None:
    now = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)  # 20:00 in Shanghai
    epoch = scenario_epoch("Asia/Shanghai", duration_s=60, speed=1, now=now)
    start = dt.datetime.fromtimestamp(epoch / 1000, tz=dt.UTC)
    assert start == dt.datetime(2026, 11, 21, 17, 59, 30, tzinfo=dt.UTC)  # 01:59:30 local
    # Just after 02:00 local, a compressed night would run into the future: take the day before.
    early = dt.datetime(2026, 11, 21, 18, 0, tzinfo=dt.UTC)
    assert scenario_epoch("Asia/Shanghai", 3600, 10, early) < scenario_epoch(
        "Asia/Shanghai", 10, 1, early
    )
