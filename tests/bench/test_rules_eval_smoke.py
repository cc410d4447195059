"""The rule evaluation benchmark at tiny sizes, and its rule mix kept quiet inside the bands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import alert_latency, rules_eval
from hub.registry import Registry, parse_site
from rules import Engine, Subject, parse_rules


def test_rules_eval_feeds_every_reading_and_measures_its_ceiling() -> None:
    result = rules_eval.run(rules=50, devices=500, readings=20_000, events=2000)

    params, readings, ceiling = result["params"], result["readings"], result["ceiling"]
    assert params["rules"] == sum(params["rule_kinds"].values()) == 50
    assert set(params["rule_kinds"]) >= {"threshold", "event", "count", "anomaly"}
    assert params["devices"] == 500
    assert readings["count"] == 20_000
    assert readings["readings_per_s"] > 0
    assert readings["evaluations_per_reading"] > 0
    assert readings["ticks"] > 0
    assert readings["transitions"] > 0  # the excursions fire and resolve alerts
    assert ceiling["readings_per_s"] > readings["readings_per_s"]
    assert 0 < result["ratio_to_ceiling"] < 1
    assert result["events"]["count"] == 2000
    assert result["events"]["events_per_s"] > 0
    assert result["state"]["states"] > 0
    assert result["peak_rss_mib"] > 0
    assert "readings, no-op (ceiling)" in rules_eval.render(result)


def test_rules_eval_stops_at_its_time_limit() -> None:
    result = rules_eval.run(rules=20, devices=200, readings=10**9, max_seconds=0.2, events=10)
    assert 10_000 <= result["readings"]["count"] < 10**9
    assert result["readings"]["seconds"] < 5


def test_no_rule_of_the_mix_fires_on_values_inside_their_bands() -> None:
    # alert_latency loads the mix beside the smoke rule and counts every notification: a rule
    # of the mix firing on the benchmark's ordinary values would fail it.
    registry = Registry(parse_site(rules_eval.site_document(1000)))
    buildings = sorted({d.building for d in registry.devices.values() if d.building})
    documents = rules_eval.rule_mix(500, grids=sorted(registry.grids), buildings=buildings)
    engine = Engine(parse_rules(rules_eval.rules_yaml(documents)))
    subjects = [Subject(d.id, d.labels) for d in registry.devices.values()]
    engine.set_subjects(subjects)
    feeds = rules_eval.reading_feeds(registry)
    slots = np.array([engine.slot(feed.subject.device) for feed in feeds], dtype=np.int32)
    transitions = []
    # Steps from one edge of each band to the other: the worst case for rates and anomalies.
    for step in range(150):
        edge = 0 if step < 50 or step >= 100 else 1
        ts = rules_eval.T0 + step * 10_000
        fields = {
            name: np.array(
                [rules_eval.BANDS[name][edge] if name in f.names else np.nan for f in feeds]
            )
            for name in rules_eval.BANDS
        }
        transitions += engine.on_batch(slots, np.full(len(feeds), ts, dtype=np.int64), fields)
        transitions += engine.tick(ts)
    assert engine.statistics().evaluations > 100_000
    assert [(t.rule_id, t.state) for t in transitions] == []


@pytest.mark.integration
def test_alert_latency_bench_runs_with_a_generated_rule_load(tmp_path: Path) -> None:
    result = alert_latency.run(
        alerts=5,
        rate=1000,
        interval=0.1,
        detectors=3,
        devices=200,
        rules_load=200,
        workdir=tmp_path,
    )
    assert result["params"]["rules"] == (
        "config/rules/safety.yaml + 200 generated (bench.rules_eval mix)"
    )
    # Every notification is one of the smoke alarms: none of the 200 rules fired.
    assert result["firing"]["count"] == 5
    assert result["resolved"]["count"] == 5
    assert result["hub"]["exit_code"] == 0
    assert not list(tmp_path.iterdir()), "the working directory was not removed"
