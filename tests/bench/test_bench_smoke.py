"""The benchmarks run end to end at tiny sizes, so their code cannot rot between `make bench`
runs: counts must match exactly and every latency must be positive."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import alert_latency, edge_footprint, ingest, profile_ingest, replay

pytestmark = pytest.mark.integration


def test_ingest_bench_counts_every_sample_and_measures_both_ceilings(tmp_path: Path) -> None:
    result = ingest.run(readings=2000, batch=100, gateways=2, devices=20, workdir=tmp_path)

    params, hub = result["params"], result["hub"]
    assert params["messages"] == 20
    # Every reading of the stream and of the two probes (one per gateway), three values each.
    assert hub["samples_stored"] == (2000 + 2) * 3
    assert hub["series"] == 20 * 3
    assert hub["readings_per_s"] > 0
    assert 0 < hub["first_ack_s"] <= hub["seconds"]
    assert hub["hub_peak_rss_mib"] > 0
    assert hub["hub_cpu_s"] > 0
    assert hub["hub_exit_code"] == 0
    assert hub["vm_write_requests"] >= 1
    for name in ("mosquitto_sub", "paho_subscriber"):
        ceiling = result["ceiling"][name]
        assert ceiling["seconds"] > 0
        assert ceiling["readings_per_s"] > 0
        assert result["ratio_to_ceiling"][name] > 0
    assert result["machine"]["cpus"] >= 1
    assert "readings/s" in ingest.render(result)
    assert not list(tmp_path.iterdir()), "the working directory was not removed"


def test_ingest_bench_publishes_one_reading_messages_with_mosquitto_pub(tmp_path: Path) -> None:
    result = ingest.run(readings=600, batch=1, gateways=3, devices=6, workdir=tmp_path)

    assert result["params"]["publisher"].startswith("mosquitto_pub")
    assert result["params"]["messages"] == 600
    assert result["hub"]["samples_stored"] == (600 + 3) * 3
    assert result["hub"]["messages_per_s"] > 0
    assert result["ceiling"]["mosquitto_sub"]["messages_per_s"] > 0


def test_ingest_bench_counts_every_value_in_the_embedded_store(tmp_path: Path) -> None:
    result = ingest.run(
        readings=1000,
        batch=50,
        gateways=2,
        devices=10,
        store="sqlite",
        ceilings=False,
        workdir=tmp_path,
    )

    hub = result["hub"]
    assert hub["samples_stored"] == (1000 + 2) * 3
    assert hub["series"] == 10 * 3
    assert hub["readings_per_s"] > 0
    assert "vm_write_requests" not in hub
    assert result["ceiling"] == {}
    assert "stored in SQLite" in ingest.render(result)


def test_alert_latency_bench_matches_every_notification_to_its_event(tmp_path: Path) -> None:
    result = alert_latency.run(
        alerts=5, rate=1000, interval=0.1, detectors=3, devices=20, burst=2000, workdir=tmp_path
    )

    burst = result["burst"]
    assert burst["readings"] == 2000
    assert burst["acked_s"] > 0
    for status in ("firing", "resolved"):
        groups = [s for s in (result[status], burst[status]) if s is not None]
        assert sum(s["count"] for s in groups) == 5
        for stats in groups:
            assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]
            assert stats["max_ms"] < 10_000
    assert result["load"]["readings"] > 0
    assert result["load"]["readings_per_s"] > 0
    assert result["hub"]["exit_code"] == 0
    assert "p99" in alert_latency.render(result)


def test_alert_latency_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert alert_latency.percentile(values, 0.5) == 50
    assert alert_latency.percentile(values, 0.99) == 99
    assert alert_latency.percentile([3.0], 0.99) == 3
    assert alert_latency.summarise([0.001, 0.002])["max_ms"] == 2


def test_profile_ingest_accounts_for_every_reading() -> None:
    result = profile_ingest.run(readings=2000, batch=100, top=5)

    assert result["params"]["lines_built_in_profile"] == 2000
    assert set(result["stages_s"]) >= {
        "decode (columns)",
        "handle",
        "line protocol",
        "influx write",
        "sqlite write",
    }
    assert all(seconds > 0 for seconds in result["stages_s"].values())
    assert len(result["top_functions"]) == 5


@pytest.mark.integration
def test_replay_bench_drains_a_small_backlog_and_counts_every_sample() -> None:
    result = replay.run(sensors=10, minutes=1, rate=50.0, buttons=2)
    for name in ("rate_limited", "ceiling_unlimited"):
        drained = result[name]
        assert drained["backlog_readings"] == 600
        assert drained["samples_stored"] == 1200
        assert drained["drain_s"] > 0
        assert drained["alarms"]["count"] == 2
    assert result["ratio_to_ceiling"] > 0


def test_edge_footprint_bench_measures_a_real_agent_that_was_acknowledged(tmp_path: Path) -> None:
    result = edge_footprint.run(
        sensors=10, seconds=5, warmup=2, thingsboard=False, workdir=tmp_path
    )

    ours = result["anju_edge"]
    assert ours["acked_in_window"] > 0
    assert ours["readings_in_window"] > 0
    assert ours["vm_hwm_mb"] > 0
    assert ours["vm_rss_mb"] > 0
    assert ours["cpu_percent_of_core"] >= 0
    assert len(ours["load_average"]) == 3
    assert ours["agent_exit_code"] == 0
    assert result["thingsboard_gateway"] == {"available": False, "reason": "not requested"}
    assert result["machine"]["cpus"] >= 1
    assert "anju edge" in edge_footprint.render(result)
    assert not list(tmp_path.iterdir()), "the run's directory was not removed"
