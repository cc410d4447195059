"""Alarm latency under load: smoke event published → webhook received.

    python -m bench.alert_latency [--alerts N] [--rate R] [--store vm|sqlite] [--burst N]
                                  [--broker-nagle] [--sender-acks] [--rules-load N]
                                  [--devices N] [--json]

Mosquitto, the hub as a subprocess (``anju hub run``) with the real rules of
``config/rules/safety.yaml``, a webhook notifier pointing at a local HTTP receiver, and the
time-series store of ``--store`` (VictoriaMetrics, or the hub's embedded SQLite store).

A publisher process streams telemetry batches at ``--rate`` readings per second from the load
gateways for the whole run.  Meanwhile a smoke gateway sends ``N`` alarms, one every
``--interval`` seconds, each ``alarm.smoke`` ``active: true`` (a new firing) followed half an
interval later by ``active: false`` (its resolve), rotating over several detectors.  Every event
is stamped with its publish time; its latency is the time the webhook receiver got the matching
firing (or resolved) notification minus that time.  One warm-up alarm is not counted.

The broker runs with ``set_tcp_nodelay true`` and the alarm gateway's connection only publishes,
with TCP_NODELAY, so that the figures are the hub's; ``--broker-nagle`` and ``--sender-acks``
restore Mosquitto's default and the edge agent's connection to show what Nagle's algorithm adds.
``--burst N`` publishes N readings at once from two more gateways halfway through (a backlog a
gateway replays after an outage) and reports the alarms sent until the hub acked all of it
separately.  ``--rules-load N`` loads N more rules of every kind (the mix of
``bench.rules_eval``, scoped to the site's grid and buildings, none of which fires on the
benchmark's values) beside the safety rules, e.g. ``--rules-load 500 --devices 10000``, so that
the latency is measured with a community's full rule set evaluating every reading.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    BROKER_CONFIG,
    BROKER_NODELAY,
    RULES_DIR,
    SITE_ID,
    BenchError,
    CpuMeter,
    DeviceSpec,
    HubProcess,
    Message,
    Observer,
    Publisher,
    SystemCpu,
    ack_topic,
    machine,
    probe,
    site_document,
    telemetry_devices,
    telemetry_stream,
    write_hub_config,
    write_stream,
)
from bench.rules_eval import rule_mix, rules_yaml
from tests.servers import Mosquitto, RecordedRequest, VictoriaMetrics, WebhookReceiver
from wire import Event, encode

ALARM_GATEWAY = "gw-alarm"
EVENT_TOPIC = f"anju/v1/{SITE_ID}/{ALARM_GATEWAY}/event"
LEAD_IN_S = 2.0  # load runs alone this long before the first alarm
WARMUP_ALARMS = 1
BURST_GATEWAYS = 2
BURST_DEVICES = 50


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (``fraction`` in (0, 1])."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarise(latencies_s: Sequence[float]) -> dict[str, float]:
    """Milliseconds: count, min, p50, p90, p99, max, mean."""
    ms = [v * 1000 for v in latencies_s]
    return {
        "count": len(ms),
        "min_ms": round(min(ms), 2),
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p90_ms": round(percentile(ms, 0.90), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
    }


def _ms(rfc3339: str) -> int:
    return round(dt.datetime.fromisoformat(rfc3339).timestamp() * 1000)


def _notification_key(request: RecordedRequest) -> tuple[str, str, int] | None:
    body = request.json
    if not isinstance(body, dict) or not body.get("alerts"):
        return None
    alert = body["alerts"][0]
    status = alert["status"]
    stamp = alert["startsAt"] if status == "firing" else alert["endsAt"]
    return status, alert["labels"].get("device", ""), _ms(stamp)


class AlarmGateway:
    """The smoke gateway's own MQTT connection, which publishes the alarms.

    By default it only publishes, with Nagle's algorithm off, so that the figures are the
    hub's and the broker's.  With ``receive_acks`` it also subscribes to its gateway's acks on the
    same connection and leaves Nagle on, as the edge agent (paho via aiomqtt) does today.
    """

    def __init__(self, mosquitto: Mosquitto, *, receive_acks: bool) -> None:
        self._ready = threading.Event()
        self._receive_acks = receive_acks
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="bench-gw-alarm",
            protocol=paho.MQTTv311,
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self._ready.set()
        self._client.connect(mosquitto.host, mosquitto.port, keepalive=60)
        if not receive_acks:
            sock = self._client.socket()
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client.loop_start()
        if not self._ready.wait(10):
            self.close()
            raise BenchError("the alarm gateway could not connect")

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        if self._receive_acks:
            client.subscribe(ack_topic(ALARM_GATEWAY), qos=1)
        else:
            self._ready.set()

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1."""
        self._client.publish(topic, payload, qos=1)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


Latencies = dict[str, list[float]]


def _match(
    requests: Sequence[RecordedRequest],
    sent: dict[tuple[str, str, int], tuple[float, int]],
    burst_window: tuple[float, float],
    alerts: int,
) -> tuple[Latencies, Latencies]:
    """Latencies by transition: of alarms sent outside the burst window, and inside it."""
    latencies: Latencies = {"firing": [], "resolved": []}
    during_burst: Latencies = {"firing": [], "resolved": []}
    unmatched = 0
    for request in requests:
        found = _notification_key(request)
        if found is None or found not in sent:
            unmatched += 1
            continue
        sent_at, index = sent[found]
        if index < WARMUP_ALARMS:
            continue
        in_burst = burst_window[0] <= sent_at <= burst_window[1]
        (during_burst if in_burst else latencies)[found[0]].append(request.received_at - sent_at)
    matched = {k: len(latencies[k]) + len(during_burst[k]) for k in latencies}
    if unmatched or matched["firing"] != alerts or matched["resolved"] != alerts:
        msg = (
            f"matched {matched['firing']} firing and {matched['resolved']} "
            f"resolved notifications of {alerts} each; {unmatched} unmatched"
        )
        raise BenchError(msg)
    every = [v for group in (latencies, during_burst) for values in group.values() for v in values]
    if min(every) <= 0:
        raise BenchError("a notification arrived before its event was published")
    return latencies, during_burst


def _rules_load(base: Path, fleet: Sequence[DeviceSpec], count: int) -> Path:
    """A file of ``count`` rules of every kind, scoped to the grids and buildings of the site."""
    site = site_document(fleet)
    grids = [grid["id"] for grid in site["grids"]]
    buildings = [b["id"] for grid in site["grids"] for b in grid["buildings"]]
    path = base / "rules-load.yaml"
    path.write_text(rules_yaml(rule_mix(count, grids=grids, buildings=buildings)), encoding="utf-8")
    return path


def _last_seqs(messages: Sequence[Message], first_seq: int = 1) -> dict[str, int]:
    seqs: dict[str, int] = {}
    for message in messages:
        gateway = message.topic.split("/")[3]
        seqs[gateway] = seqs.get(gateway, first_seq - 1) + 1
    return seqs


def run(
    *,
    alerts: int = 200,
    rate: float = 5000.0,
    interval: float = 0.1,
    batch: int = 100,
    gateways: int = 4,
    devices: int = 200,
    detectors: int = 20,
    store: str = "vm",
    sender_acks: bool = False,
    broker_nagle: bool = False,
    burst: int = 0,
    rules_load: int = 0,
    workdir: Path | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """Run the benchmark; return its results (see the module docstring)."""
    if store not in {"vm", "sqlite"}:
        raise BenchError(f"unknown store {store!r} (vm or sqlite)")
    if alerts < 1 or rate <= 0 or interval <= 0 or detectors < 1 or devices < gateways:
        raise BenchError("need alerts >= 1, rate > 0, interval > 0, detectors >= 1")
    base = Path(tempfile.mkdtemp(prefix="anju-bench-alerts-", dir=workdir))
    try:
        with contextlib.ExitStack() as stack:
            result = _run(
                stack,
                base,
                alerts,
                rate,
                interval,
                batch,
                gateways,
                devices,
                detectors,
                store,
                sender_acks,
                broker_nagle,
                burst,
                rules_load,
            )
        if keep:
            result["workdir"] = str(base)
        return result
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def _run(
    stack: contextlib.ExitStack,
    base: Path,
    alerts: int,
    rate: float,
    interval: float,
    batch: int,
    gateways: int,
    devices: int,
    detectors: int,
    store: str,
    sender_acks: bool,
    broker_nagle: bool,
    burst: int,
    rules_load: int,
) -> dict[str, Any]:
    broker_config = BROKER_CONFIG if broker_nagle else (*BROKER_CONFIG, *BROKER_NODELAY)
    mosquitto = Mosquitto(base / "mosquitto", extra_config=broker_config).start()
    stack.callback(mosquitto.stop)
    victoria: VictoriaMetrics | None = None
    if store == "vm":
        victoria = VictoriaMetrics(base / "victoria-metrics").start()
        stack.callback(victoria.stop)
    receiver = WebhookReceiver().start()
    stack.callback(receiver.stop)

    load_gateways = [f"gw-{i:02d}" for i in range(gateways)]
    load_devices = telemetry_devices(load_gateways, devices)
    smoke = [DeviceSpec(f"smoke-{i:03d}", ALARM_GATEWAY, "smoke") for i in range(detectors)]
    # A burst (a backlog replayed after an outage) comes from gateways of its own.
    burst_devices = [
        DeviceSpec(f"bt-{i:04d}", f"gw-burst-{i % BURST_GATEWAYS}", "temp_humidity")
        for i in range(BURST_DEVICES if burst else 0)
    ]
    fleet = [*load_devices, *smoke, *burst_devices]
    rules = [RULES_DIR / "safety.yaml"]
    if rules_load:
        rules.append(_rules_load(base, fleet, rules_load))
    config = write_hub_config(
        base,
        devices=fleet,
        mosquitto=mosquitto,
        rules=rules,
        influx_url=victoria.url if victoria is not None else None,
        webhook_url=f"{receiver.url}/alerts",
    )

    # Enough load for the whole run, with a margin; the publisher is stopped when done.
    total_alarms = alerts + WARMUP_ALARMS
    planned_s = LEAD_IN_S + total_alarms * interval + 10.0
    load_readings = max(batch, int(rate * planned_s))
    start_ms = time.time_ns() // 1_000_000 - load_readings - 60_000
    messages, _ = telemetry_stream(
        load_devices, readings=load_readings, batch=batch, start_ms=start_ms
    )
    stream = base / "load.bin"
    write_stream(stream, messages)
    burst_messages: list[Message] = []
    if burst:
        burst_messages, _ = telemetry_stream(
            burst_devices, readings=burst, batch=batch, start_ms=start_ms - burst - 20_000
        )
        write_stream(base / "burst.bin", burst_messages)

    observer = Observer(mosquitto)
    stack.callback(observer.close)
    hub = HubProcess(config, base)
    stack.callback(hub.stop)
    observer.wait_hub_online(hub)
    probe(observer, hub, fleet, start_ms=start_ms - 10_000)

    alarm_gateway = AlarmGateway(mosquitto, receive_acks=sender_acks)
    stack.callback(alarm_gateway.close)
    publisher = Publisher(stream, mosquitto, log_path=base / "publisher-load.log", rate=rate)
    stack.callback(publisher.close)
    burster: Publisher | None = None
    if burst:
        burster = Publisher(
            base / "burst.bin",
            mosquitto,
            log_path=base / "publisher-burst.log",
            client_id="bench-burst",
        )
        stack.callback(burster.close)
    burst_started = 0.0
    meter = CpuMeter({"hub": hub.pid, "broker": mosquitto.pid})
    system = SystemCpu()
    meter.start()
    system.start()
    publisher.go()
    time.sleep(LEAD_IN_S)

    # (status, device, ts) -> (publish time, alarm index)
    sent: dict[tuple[str, str, int], tuple[float, int]] = {}
    seq = 0
    first = time.monotonic()
    for index in range(total_alarms):
        if burster is not None and index == total_alarms // 2:
            delay = first + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            burst_started = time.time()
            burster.go()
        device = smoke[index % len(smoke)].id
        for half, (active, status) in enumerate(((True, "firing"), (False, "resolved"))):
            delay = first + (index + half / 2) * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            hub.check_alive()
            seq += 1
            now = time.time()
            ts_ms = int(now * 1000)
            event = Event(
                session="bench",
                seq=seq,
                dev=device,
                ts=ts_ms,
                kind="alarm.smoke",
                data={"active": active},
            )
            payload = encode(event)
            sent[status, device, ts_ms] = (time.time(), index)
            alarm_gateway.publish(EVENT_TOPIC, payload)

    expected = 2 * total_alarms
    try:
        requests = receiver.wait_for(
            lambda reqs: len(reqs) >= expected, timeout=30 + burst / 10_000
        )
    except TimeoutError:
        got = len(receiver.requests)
        raise BenchError(
            f"the webhook got {got} of {expected} notifications\n{hub.log_tail()}"
        ) from None
    publisher.stop()
    published = publisher.result(timeout=60)
    load_seconds = published["t_last_publish"] - published["t_first"]
    targets = _last_seqs(messages[: published["messages"]])
    targets[ALARM_GATEWAY] = seq
    acked_at = observer.wait_acked(targets, timeout=60, hub=hub)
    system.stop()
    burst_result: dict[str, Any] | None = None
    burst_window = (0.0, 0.0)
    if burster is not None:
        burst_published = burster.result(timeout=60)
        burst_acked = observer.wait_acked(
            _last_seqs(burst_messages), timeout=60 + burst / 10_000, hub=hub
        )
        burst_window = (burst_started, burst_acked)
        burst_result = {
            "readings": burst_published["readings"],
            "messages": burst_published["messages"],
            "acked_s": round(burst_acked - burst_published["t_first"], 3),
        }
    cpu = meter.stop()
    window = time.time() - published["t_first"]
    hub_stats = hub.stats()
    exit_code = hub.stop()

    latencies, during_burst = _match(requests, sent, burst_window, alerts)
    if burst_result is not None:
        burst_result.update(
            {k: summarise(v) if v else None for k, v in during_burst.items()},
        )

    return {
        "bench": "alert_latency",
        "params": {
            "alerts": alerts,
            "interval_s": interval,
            "detectors": detectors,
            "load_rate_target": rate,
            "batch": batch,
            "gateways": gateways,
            "devices": devices,
            "store": "victoria-metrics" if store == "vm" else "sqlite (embedded)",
            "rules": "config/rules/safety.yaml"
            + (f" + {rules_load} generated (bench.rules_eval mix)" if rules_load else ""),
            "broker": "Mosquitto defaults (Nagle on)"
            if broker_nagle
            else "Mosquitto with set_tcp_nodelay true",
            "alarm_sender": (
                "also receives its acks, Nagle on (like the edge agent)"
                if sender_acks
                else "publish-only connection, TCP_NODELAY"
            ),
        },
        "firing": summarise(latencies["firing"]) if latencies["firing"] else None,
        "resolved": summarise(latencies["resolved"]) if latencies["resolved"] else None,
        "burst": burst_result,
        "load": {
            "readings": published["readings"],
            "seconds": round(load_seconds, 3),
            "readings_per_s": published["rate_readings_per_s"],
            "ack_lag_s": round(acked_at - published["t_last_publish"], 3),
        },
        "hub": {
            "cpu_s": cpu["hub"],
            "cpu_util": round(cpu["hub"] / load_seconds, 2),
            "peak_rss_mib": hub_stats["peak_rss_mib"],
            "broker_cpu_s": cpu["broker"],
            "exit_code": exit_code,
        },
        "machine": {
            **machine(mosquitto, victoria),
            "busy_cores": system.busy_cores,
            "other_load_cores": system.others(window, sum(cpu.values()) + published["cpu_s"]),
        },
    }


def render(result: dict[str, Any]) -> str:
    """A plain-text table of the results."""
    p = result["params"]
    load = result["load"]
    hub = result["hub"]
    lines = [
        (
            f"alert latency: {p['alerts']} smoke alarms (fire + resolve), one per "
            f"{p['interval_s']:g} s over {p['detectors']} detectors; store: {p['store']}"
        ),
        f"broker: {p['broker']}; alarm sender: {p['alarm_sender']}",
        f"rules: {p['rules']}; {p['devices']:,} load devices",
        (
            f"background load: {load['readings_per_s']:,.0f} readings/s achieved "
            f"(target {p['load_rate_target']:,.0f}) in batches of {p['batch']} from "
            f"{p['gateways']} gateways; hub acked the last load batch {load['ack_lag_s']:.3f} s "
            "after it was published"
        ),
        "",
        (
            f"{'event → webhook':<18} {'n':>5} {'min':>8} {'p50':>8} {'p90':>8} {'p99':>8}"
            f" {'max':>8} {'mean':>8}  (ms)"
        ),
    ]
    rows = [(name, result[name]) for name in ("firing", "resolved")]
    burst = result.get("burst")
    if burst is not None:
        rows += [(f"{name}, in burst", burst[name]) for name in ("firing", "resolved")]
    for name, s in rows:
        if s is None:
            lines.append(f"{name:<18} {0:>5}")
            continue
        lines.append(
            f"{name:<18} {s['count']:>5} {s['min_ms']:>8.1f} {s['p50_ms']:>8.1f} "
            f"{s['p90_ms']:>8.1f} {s['p99_ms']:>8.1f} {s['max_ms']:>8.1f} {s['mean_ms']:>8.1f}"
        )
    if burst is not None:
        lines.append(
            f"burst: {burst['readings']:,} readings in {burst['messages']:,} messages published "
            f"at once mid-run; the hub acked them all {burst['acked_s']:.3f} s after the first; "
            "'in burst' rows are the alarms sent meanwhile"
        )
    lines += [
        "",
        (
            f"hub: CPU {hub['cpu_s']:.2f} s ({hub['cpu_util']:.2f} cores) during the load, "
            f"peak RSS {hub['peak_rss_mib']:.0f} MiB; broker CPU {hub['broker_cpu_s']:.2f} s"
        ),
        (
            f"machine: {result['machine']['busy_cores']:.2f} cores busy on average, "
            f"{result['machine']['other_load_cores']:.2f} of them by processes outside the "
            "benchmark"
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.alert_latency", description=__doc__)
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5000.0, help="load, readings per second")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between alarms")
    parser.add_argument("--batch", type=int, default=100, help="readings per load message")
    parser.add_argument("--gateways", type=int, default=4, help="load gateways")
    parser.add_argument("--devices", type=int, default=200, help="load devices")
    parser.add_argument("--detectors", type=int, default=20, help="smoke detectors")
    parser.add_argument("--store", choices=("vm", "sqlite"), default="vm")
    parser.add_argument(
        "--sender-acks",
        action="store_true",
        help="the alarm sender also receives its acks and keeps Nagle on, as the edge agent does",
    )
    parser.add_argument(
        "--broker-nagle",
        action="store_true",
        help="leave Mosquitto's set_tcp_nodelay at its default (false)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=0,
        help="also publish this many readings at once mid-run (a replayed backlog) and report "
        "the alarms sent while the hub works through it",
    )
    parser.add_argument(
        "--rules-load",
        type=int,
        default=0,
        help="also load this many generated rules of every kind (e.g. 500 with --devices 10000)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--json", action="store_true", help="print JSON, not a table")
    args = parser.parse_args(argv)
    try:
        result = run(
            alerts=args.alerts,
            rate=args.rate,
            interval=args.interval,
            batch=args.batch,
            gateways=args.gateways,
            devices=args.devices,
            detectors=args.detectors,
            store=args.store,
            sender_acks=args.sender_acks,
            broker_nagle=args.broker_nagle,
            burst=args.burst,
            rules_load=args.rules_load,
            keep=args.keep,
        )
    except BenchError as exc:
        print(f"bench.alert_latency: FAILED: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
