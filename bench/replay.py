"""Replay after an outage: a one-hour backlog of 200 sensors at 1 Hz drains while alarms go on.

The gateway's durable queue is filled with 720,000 readings (an hour of 200 sensors at 1 Hz, in
batches of 500) as if the hub had been unreachable for that hour.  Then a real hub (VictoriaMetrics
store, webhook notifier) and a real edge agent (``anju edge run``) start.  The agent replays the
backlog oldest first, flagged ``replay: true`` and rate-limited, while its emergency buttons are
pressed every two seconds: each press must reach the webhook as fast as without a backlog.

Two passes in the same run: the gateway's default replay rate, and the ceiling: replay
unlimited, so the hub's ingest is the only limit.  Drain time ends when the gateway's queue is
empty (every message acknowledged); VictoriaMetrics must then hold every sample exactly once.

    python -m bench.replay [--minutes 60] [--sensors 200] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench.alert_latency import summarise
from bench.common import (
    BROKER_CONFIG,
    BROKER_NODELAY,
    RULES_DIR,
    SITE_ID,
    BenchError,
    DeviceSpec,
    HubProcess,
    child_env,
    cpu_seconds,
    machine,
    sample_total,
    site_document,
    telemetry_devices,
    write_hub_config,
)
from edge_agent import DurableQueue, Priority
from tests.servers import Mosquitto, VictoriaMetrics, WebhookReceiver
from wire import Channel

GATEWAY = "gw-replay"
BATCH = 500
BUTTONS = 30
PRESS_EVERY_S = 2.0
SECRET = "replay-benchmark-site-secret"  # noqa: S105 - a benchmark key, not a credential


def fill_backlog(path: Path, *, sensors: int, minutes: int) -> tuple[int, int]:
    """Queue ``minutes`` of 1 Hz readings of ``sensors`` sensors; return (readings, messages)."""
    queue = DurableQueue(path, commit_interval_s=3600)
    start_ms = int(time.time() * 1000) - minutes * 60_000
    devices = [f"th-{i:04d}" for i in range(sensors)]
    pending: list[dict[str, Any]] = []
    readings = messages = 0

    def flush() -> None:
        nonlocal messages
        body = list(pending)
        queue.append(
            Channel.DATA,
            Priority.TELEMETRY,
            lambda seq: orjson.dumps(
                {"v": 1, "session": "before-outage", "seq": seq, "replay": False, "readings": body}
            ),
            body[0]["ts"],
        )
        pending.clear()
        messages += 1

    for second in range(minutes * 60):
        ts = start_ms + second * 1000
        for index, device in enumerate(devices):
            temperature = 20.0 + (index % 7) + (second % 600) / 100
            pending.append(
                {"dev": device, "ts": ts, "values": {"temperature": temperature, "humidity": 50.0}}
            )
            readings += 1
            if len(pending) == BATCH:
                flush()
    if pending:
        flush()
    queue.close()
    return readings, messages


def queue_depth(path: Path) -> int:
    """Messages still in the gateway's queue (read beside the running agent, WAL)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT COUNT(*) FROM message").fetchone()[0])


def run_pass(
    workdir: Path,
    *,
    sensors: int,
    minutes: int,
    replay_rate: float,
    mosquitto: Mosquitto,
    victoria: VictoriaMetrics,
    buttons: int = BUTTONS,
) -> dict[str, Any]:
    """One drain of a full backlog at ``replay_rate`` messages per second."""
    workdir.mkdir(parents=True)
    devices = [
        *telemetry_devices([GATEWAY], sensors),
        *(DeviceSpec(f"button-{i:02d}", GATEWAY, "emergency_button") for i in range(buttons)),
    ]
    queue_path = workdir / "edge" / f"{SITE_ID}.{GATEWAY}.queue.sqlite3"
    filled_at = time.monotonic()
    readings, messages = fill_backlog(queue_path, sensors=sensors, minutes=minutes)
    fill_s = time.monotonic() - filled_at
    with WebhookReceiver() as webhook:
        hub_config = write_hub_config(
            workdir,
            devices=devices,
            mosquitto=mosquitto,
            rules=[RULES_DIR / "safety.yaml"],
            influx_url=victoria.url,
            webhook_url=webhook.url,
        )
        site = yaml.safe_load((workdir / "site.yaml").read_text())
        assert site == site_document(devices)  # noqa: S101 - the hub and gateway agree
        gateway_config = workdir / "gateway.yaml"
        incidents = [
            {
                "at": f"{2 + i * PRESS_EVERY_S}s",
                "do": "emergency_button",
                "device": f"button-{i:02d}",
            }
            for i in range(buttons)
        ]
        gateway_config.write_text(
            yaml.safe_dump(
                {
                    "site": SITE_ID,
                    "gateway": GATEWAY,
                    "data_dir": str(workdir / "edge"),
                    "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
                    "privacy": {"site_secret": SECRET},
                    "replay": {"max_messages_per_s": replay_rate},
                    "drivers": [
                        {
                            "type": "simulated",
                            "id": "buttons",
                            "interval_s": 3600,
                            "devices": [
                                {"id": f"button-{i:02d}", "kind": "emergency_button"}
                                for i in range(buttons)
                            ],
                            "scenario": {"incidents": incidents},
                        }
                    ],
                }
            ),
            encoding="utf-8",
        )
        hub = HubProcess(hub_config, workdir)
        agent: subprocess.Popen[bytes] | None = None
        try:
            time.sleep(1.0)
            hub.check_alive()
            anju = Path(sys.executable).with_name("anju")
            started = time.monotonic()
            with (workdir / "edge.log").open("wb") as log:
                agent = subprocess.Popen(
                    [str(anju), "edge", "run", "--config", str(gateway_config)],
                    env=child_env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            progress: list[tuple[float, int]] = []
            drained_s = None
            deadline = started + max(600.0, 3 * messages / replay_rate)
            while time.monotonic() < deadline:
                hub.check_alive()
                depth = queue_depth(queue_path)
                progress.append((round(time.monotonic() - started, 2), depth))
                if depth == 0 and drained_s is None:
                    drained_s = time.monotonic() - started
                if drained_s is not None and len(webhook.requests) >= buttons:
                    break
                time.sleep(0.2)
            if drained_s is None:
                raise BenchError(f"the backlog did not drain; {progress[-1][1]} messages left")
            agent_cpu = cpu_seconds(agent.pid)
            hub_stats = hub.stats()
            stored = sample_total(victoria, '{__name__=~"reading_(temperature|humidity)"}')
            expected = 2 * readings
            if stored != expected:
                raise BenchError(f"VictoriaMetrics holds {stored} samples; expected {expected}")
            latencies = [
                r.received_at - _epoch_s(a["startsAt"])
                for r in webhook.requests
                if r.json and r.json["status"] == "firing"
                for a in r.json["alerts"]
            ]
        finally:
            if agent is not None and agent.poll() is None:
                agent.terminate()
                agent.wait(20)
            hub.stop()
    return {
        "replay_rate_msgs_per_s": replay_rate,
        "backlog_readings": readings,
        "backlog_messages": messages,
        "fill_s": round(fill_s, 2),
        "drain_s": round(drained_s, 2),
        "drain_readings_per_s": round(readings / drained_s, 1),
        "samples_stored": stored,
        "alarms": summarise(latencies) if latencies else {"count": 0},
        "hub_cpu_s": hub_stats["cpu_s"],
        "hub_peak_rss_mib": hub_stats["peak_rss_mib"],
        "agent_cpu_s": round(agent_cpu, 2),
        "progress": progress[:: max(1, len(progress) // 20)],
    }


def _epoch_s(rfc3339: str) -> float:
    return dt.datetime.fromisoformat(rfc3339).timestamp()


def run(
    *, sensors: int, minutes: int, rate: float, buttons: int = BUTTONS, keep: bool = False
) -> dict[str, Any]:
    """Both passes: the given replay rate, then unlimited (the ceiling)."""
    workdir = Path(tempfile.mkdtemp(prefix="anju-bench-replay-"))
    try:
        result: dict[str, Any] = {"bench": "replay", "workdir": str(workdir)}
        passes = {"rate_limited": rate, "ceiling_unlimited": 100_000.0}
        for name, replay_rate in passes.items():
            with (
                Mosquitto(
                    workdir / f"{name}-mqtt", extra_config=(*BROKER_CONFIG, *BROKER_NODELAY)
                ).start() as mosquitto,
                VictoriaMetrics(workdir / f"{name}-vm").start() as victoria,
            ):
                result[name] = run_pass(
                    workdir / name,
                    sensors=sensors,
                    minutes=minutes,
                    replay_rate=replay_rate,
                    mosquitto=mosquitto,
                    victoria=victoria,
                    buttons=buttons,
                )
                result["machine"] = machine(mosquitto, victoria)
        limited, ceiling = result["rate_limited"], result["ceiling_unlimited"]
        result["ratio_to_ceiling"] = round(
            limited["drain_readings_per_s"] / ceiling["drain_readings_per_s"], 3
        )
        return result
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def render(result: dict[str, Any]) -> str:
    """A short table."""
    lines = [
        f"{'pass':<20}{'readings':>10}{'drain s':>9}{'readings/s':>12}{'alarm p50':>11}{'p99':>8}"
    ]
    for name in ("rate_limited", "ceiling_unlimited"):
        p = result[name]
        alarms = p["alarms"]
        lines.append(
            f"{name:<20}{p['backlog_readings']:>10}{p['drain_s']:>9}{p['drain_readings_per_s']:>12}"
            f"{alarms.get('p50_ms', '-'):>11}{alarms.get('p99_ms', '-'):>8}"
        )
    lines.append(f"ratio to ceiling: {result['ratio_to_ceiling']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--rate", type=float, default=20.0, help="replay messages per second")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("ANJU_SITE_SECRET", SECRET)
    try:
        result = run(sensors=args.sensors, minutes=args.minutes, rate=args.rate, keep=args.keep)
    except BenchError as exc:
        print(f"bench.replay: FAILED: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
