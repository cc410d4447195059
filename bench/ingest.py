"""End-to-end ingest throughput of the hub, beside the ceiling of the same broker and stream.

    python -m bench.ingest [--readings N] [--batch B] [--gateways G] [--devices D]
                           [--store vm|sqlite] [--no-ceiling] [--json]

One run, one Mosquitto, one VictoriaMetrics, one pre-encoded stream of data batches (``B``
readings of three values each, distinct millisecond timestamps, increasing seqs per gateway):

1. ceiling: ``mosquitto_sub -q 1`` receives the stream, then a paho-mqtt subscriber that does
   nothing with it; each timed from the first publish to the last message received;
2. the hub (``anju hub run`` as a subprocess, real rules, VictoriaMetrics as its store, or with
   ``--store sqlite`` its embedded store) receives the same stream, timed from the first publish
   until every gateway's ack has reached its last seq and the store is seen to hold every sample
   (the hub acknowledges a batch once it is durable in its own spool, and forwards the spool to
   the store after: both times are reported); then every sample is counted in the store, and a
   missing, extra or duplicated one fails the run.

The publisher is a separate process that loaded the encoded messages before the clock starts
and publishes with QoS 1 as fast as the broker accepts.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    BROKER_CONFIG,
    BROKER_NODELAY,
    RULES_DIR,
    SITE_ID,
    VALUE_NAMES,
    BenchError,
    CpuMeter,
    HubProcess,
    LineProcess,
    MosquittoPubs,
    Observer,
    Publisher,
    SystemCpu,
    count_samples,
    machine,
    probe,
    telemetry_devices,
    telemetry_stream,
    victoria_write_stats,
    wait_stored,
    write_hub_config,
    write_stream,
)
from tests.servers import Mosquitto, VictoriaMetrics, find_binary

DATA_FILTER = f"anju/v1/{SITE_ID}/+/data"
READINGS = '{__name__=~"reading_.*"}'


def _rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def publisher_for(kind: str) -> Callable[..., Publisher | MosquittoPubs]:
    """The publisher class of a ``--publisher`` choice."""
    return MosquittoPubs if kind == "mosquitto_pub" else Publisher


def ceiling_mosquitto_sub(
    mosquitto: Mosquitto,
    stream: Path,
    messages: int,
    readings: int,
    workdir: Path,
    publisher_kind: str = "python",
) -> dict[str, Any]:
    """``mosquitto_sub -q 1 -C <messages>`` receiving the stream: the broker's own ceiling."""
    binary = find_binary("mosquitto_sub", "ANJU_MOSQUITTO_SUB", "/usr/bin/mosquitto_sub")
    # -d prints "Subscribed" once the broker granted the subscription; stdbuf flushes each line
    # at once, and -F %U prints each message's arrival as Unix seconds with nanoseconds.
    command = ["stdbuf", "-oL", binary, "-d", "-h", mosquitto.host, "-p", str(mosquitto.port)]
    command += ["-i", "bench-mosquitto-sub", "-t", DATA_FILTER, "-q", "1"]
    command += ["-C", str(messages), "-F", "%U"]
    subscriber = LineProcess(command, log_path=workdir / "mosquitto_sub.log")
    publisher: Publisher | MosquittoPubs | None = None
    try:
        subscriber.expect(lambda line: line.startswith("Subscribed"), timeout=10)
        publisher = publisher_for(publisher_kind)(
            stream, mosquitto, log_path=workdir / "publisher-ceiling.log"
        )
        broker = CpuMeter({"broker": mosquitto.pid})
        system = SystemCpu()
        broker.start()
        system.start()
        publisher.go()
        published = publisher.result(timeout=300)
        lines = subscriber.drain(timeout=300)
        system.stop()
        broker_cpu = broker.stop()["broker"]
    finally:
        if publisher is not None:
            publisher.close()
        subscriber.close()
    arrivals = [float(line) for line in lines if line[:1].isdigit()]
    if len(arrivals) != messages:
        raise BenchError(f"mosquitto_sub received {len(arrivals)} of {messages} messages")
    seconds = arrivals[-1] - published["t_first"]
    return {
        "seconds": round(seconds, 3),
        "messages_per_s": _rate(messages, seconds),
        "readings_per_s": _rate(readings, seconds),
        "subscriber_cpu_s": subscriber.cpu_s,
        "broker_cpu_s": broker_cpu,
        "publisher_cpu_s": published["cpu_s"],
        "publish_seconds": round(published["t_all_acked"] - published["t_first"], 3),
        "machine_busy_cores": system.busy_cores,
    }


def ceiling_paho(
    mosquitto: Mosquitto,
    stream: Path,
    messages: int,
    readings: int,
    workdir: Path,
    publisher_kind: str = "python",
) -> dict[str, Any]:
    """A paho-mqtt subscriber doing nothing: the ceiling of the hub's MQTT client library."""
    command = [sys.executable, "-m", "bench.nullsub", "--host", mosquitto.host]
    command += ["--port", str(mosquitto.port), "--topic", DATA_FILTER, "--count", str(messages)]
    subscriber = LineProcess(command, log_path=workdir / "nullsub.log")
    publisher: Publisher | MosquittoPubs | None = None
    try:
        subscriber.expect(lambda line: line == "subscribed", timeout=30)
        publisher = publisher_for(publisher_kind)(
            stream, mosquitto, log_path=workdir / "publisher-paho.log"
        )
        broker = CpuMeter({"broker": mosquitto.pid})
        system = SystemCpu()
        broker.start()
        system.start()
        publisher.go()
        published = publisher.result(timeout=300)
        report = orjson.loads(subscriber.expect(lambda line: line.startswith("{"), timeout=300))
        subscriber.wait(timeout=10)
        system.stop()
        broker_cpu = broker.stop()["broker"]
    finally:
        if publisher is not None:
            publisher.close()
        subscriber.close()
    if report["received"] != messages:
        raise BenchError(f"the paho subscriber received {report['received']} of {messages}")
    seconds = report["t_last"] - published["t_first"]
    return {
        "seconds": round(seconds, 3),
        "messages_per_s": _rate(messages, seconds),
        "readings_per_s": _rate(readings, seconds),
        "subscriber_cpu_s": subscriber.cpu_s,
        "broker_cpu_s": broker_cpu,
        "publisher_cpu_s": published["cpu_s"],
        "publish_seconds": round(published["t_all_acked"] - published["t_first"], 3),
        "machine_busy_cores": system.busy_cores,
    }


def run(
    *,
    readings: int = 200_000,
    batch: int = 100,
    gateways: int = 4,
    devices: int = 200,
    store: str = "vm",
    ceilings: bool = True,
    workdir: Path | None = None,
    keep: bool = False,
    publisher: str | None = None,
) -> dict[str, Any]:
    """Run the benchmark; return its results (see the module docstring)."""
    if readings < 1 or batch < 1 or gateways < 1 or devices < gateways:
        raise BenchError("need readings >= 1, batch >= 1, gateways >= 1, devices >= gateways")
    if store not in {"vm", "sqlite"}:
        raise BenchError(f"unknown store {store!r} (vm or sqlite)")
    # Small messages are too many for one Python publisher: Mosquitto's C client, one per
    # gateway, keeps the publishing side out of the figure.
    kind = publisher or ("mosquitto_pub" if batch <= 10 else "python")
    if kind not in {"python", "mosquitto_pub"}:
        raise BenchError(f"unknown publisher {kind!r} (python or mosquitto_pub)")
    base = Path(tempfile.mkdtemp(prefix="anju-bench-ingest-", dir=workdir))
    try:
        with contextlib.ExitStack() as stack:
            result = _run(stack, base, readings, batch, gateways, devices, store, ceilings, kind)
        if keep:
            result["workdir"] = str(base)
        return result
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


class _SqliteStore:
    """The hub's embedded time-series store, read through a read-only connection.

    A reading is a row of a day table (``reading_<day>``) with a column per value name; a
    sample is one non-NULL value. The key ``(device, ts)`` makes a second copy of a reading
    impossible, so what is checked is that every expected value is there, and no other.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _tables(self, conn: sqlite3.Connection) -> list[tuple[str, list[str]]]:
        names = [
            n
            for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if n.startswith("reading_")
        ]
        return [
            (n, [c[1] for c in conn.execute(f"PRAGMA table_info({n})") if c[1].startswith("v_")])
            for n in names
        ]

    def _counts(self) -> tuple[int, int]:
        """Samples (non-NULL values) and series (device and value name pairs)."""
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        except sqlite3.OperationalError:
            return 0, 0  # not created yet
        samples, series = 0, set[tuple[int, str]]()
        try:
            for table, columns in self._tables(conn):
                for column in columns:
                    rows = conn.execute(
                        f'SELECT device, COUNT("{column}") FROM {table} '  # noqa: S608
                        f'WHERE "{column}" IS NOT NULL GROUP BY device'
                    ).fetchall()
                    samples += sum(n for _, n in rows)
                    series.update((device, column) for device, _ in rows)
        except sqlite3.OperationalError:
            return 0, 0
        finally:
            conn.close()
        return samples, len(series)

    def samples(self) -> int:
        return self._counts()[0]

    def wait_stored(self, expected: int, timeout: float, interval: float = 0.05) -> float:
        """Poll until the store holds ``expected`` values; return when that look began."""
        deadline = time.monotonic() + timeout
        while True:
            began = time.time()
            found = self.samples()
            if found == expected:
                return began
            if found > expected or time.monotonic() > deadline:
                raise BenchError(f"the SQLite store holds {found} values; expected {expected}")
            time.sleep(interval)

    def count(self) -> dict[str, int]:
        samples, series = self._counts()
        return {"series": series, "samples": samples, "duplicate_timestamps": 0}


def _run(
    stack: contextlib.ExitStack,
    base: Path,
    readings: int,
    batch: int,
    gateways: int,
    devices: int,
    store: str,
    ceilings: bool,
    publisher_kind: str,
) -> dict[str, Any]:
    broker_config = (*BROKER_CONFIG, *BROKER_NODELAY)
    mosquitto = Mosquitto(base / "mosquitto", extra_config=broker_config).start()
    stack.callback(mosquitto.stop)
    victoria: VictoriaMetrics | None = None
    if store == "vm":
        victoria = VictoriaMetrics(base / "victoria-metrics").start()
        stack.callback(victoria.stop)

    gateway_ids = [f"gw-{i:02d}" for i in range(gateways)]
    fleet = telemetry_devices(gateway_ids, devices)
    # Millisecond-spaced timestamps ending a minute ago; the probe's are before them.
    start_ms = time.time_ns() // 1_000_000 - readings - 60_000
    messages, last_seq = telemetry_stream(fleet, readings=readings, batch=batch, start_ms=start_ms)
    stream = base / "stream.bin"
    write_stream(stream, messages)
    total_bytes = sum(len(m.payload) for m in messages)

    result: dict[str, Any] = {
        "bench": "ingest",
        "params": {
            "readings": readings,
            "batch": batch,
            "gateways": gateways,
            "devices": devices,
            "values_per_reading": len(VALUE_NAMES),
            "messages": len(messages),
            "payload_bytes_avg": round(total_bytes / len(messages)),
            "store": (
                "victoria-metrics (InfluxDB v2 write API)"
                if store == "vm"
                else "sqlite (the hub's embedded store)"
            ),
            "rules": "config/rules (all)",
            "broker": "Mosquitto, max_queued_messages 0, set_tcp_nodelay true",
            "publisher": (
                f"mosquitto_pub -l -q 1, one per gateway ({gateways})"
                if publisher_kind == "mosquitto_pub"
                else "one Python (paho) process"
            ),
        },
        "machine": machine(mosquitto, victoria),
        "ceiling": {},
    }
    if ceilings:
        result["ceiling"]["mosquitto_sub"] = ceiling_mosquitto_sub(
            mosquitto, stream, len(messages), readings, base, publisher_kind
        )
        result["ceiling"]["paho_subscriber"] = ceiling_paho(
            mosquitto, stream, len(messages), readings, base, publisher_kind
        )

    config = write_hub_config(
        base,
        devices=fleet,
        mosquitto=mosquitto,
        rules=[RULES_DIR],
        influx_url=victoria.url if victoria is not None else None,
    )
    sqlite_store = _SqliteStore(base / "hub" / "tsdb.sqlite3")
    observer = Observer(mosquitto)
    stack.callback(observer.close)
    hub = HubProcess(config, base)
    stack.callback(hub.stop)
    observer.wait_hub_online(hub)
    probe_readings = probe(observer, hub, fleet, start_ms=start_ms - 10_000)
    acks_before = observer.acks
    vm_before = victoria_write_stats(victoria) if victoria is not None else None

    publisher = publisher_for(publisher_kind)(
        stream, mosquitto, log_path=base / "publisher-hub.log"
    )
    stack.callback(publisher.close)
    meter = CpuMeter(
        {
            "hub": hub.pid,
            "broker": mosquitto.pid,
            "victoria_metrics": victoria.pid if victoria is not None else None,
        }
    )
    system = SystemCpu()
    meter.start()
    system.start()
    publisher.go()
    published = publisher.result(timeout=300)
    t_acked = observer.wait_acked(last_seq, timeout=max(120.0, readings / 1000), hub=hub)
    first_ack = min(t for t, _, _ in observer.ack_log[acks_before:])
    # Written means in the time-series store, whatever the hub acknowledges on.
    expected_samples = (readings + probe_readings) * len(VALUE_NAMES)
    if victoria is not None:
        t1 = wait_stored(victoria, READINGS, expected_samples, timeout=120)
    else:
        t1 = sqlite_store.wait_stored(expected_samples, timeout=120)
    system.stop()
    cpu = meter.stop()
    hub_stats = hub.stats()

    writes: dict[str, Any] = {}
    if victoria is not None and vm_before is not None:
        counted = count_samples(victoria, READINGS)
        # VictoriaMetrics's own counters trail what its queries already see by a moment.
        deadline = time.monotonic() + 10
        vm_after = victoria_write_stats(victoria)
        while vm_after["rows"] - vm_before["rows"] < readings * len(VALUE_NAMES):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
            vm_after = victoria_write_stats(victoria)
        requests = vm_after["write_requests"] - vm_before["write_requests"]
        rows = vm_after["rows"] - vm_before["rows"]
        writes = {
            "victoria_metrics_cpu_s": cpu["victoria_metrics"],
            "vm_write_requests": int(requests),
            "vm_rows_per_write": round(rows / requests) if requests else 0,
        }
    exit_code = hub.stop()
    if victoria is None:
        counted = sqlite_store.count()
    expected_series = min(devices, readings + probe_readings) * len(VALUE_NAMES)
    if (
        counted["samples"] != expected_samples
        or counted["duplicate_timestamps"]
        or counted["series"] != expected_series
    ):
        msg = (
            f"the store holds {counted} but {expected_samples} samples in "
            f"{expected_series} series were expected\n{hub.log_tail()}"
        )
        raise BenchError(msg)

    seconds = t1 - published["t_first"]
    result["hub"] = {
        "seconds": round(seconds, 3),
        "readings_per_s": _rate(readings, seconds),
        "messages_per_s": _rate(len(messages), seconds),
        "acked_s": round(t_acked - published["t_first"], 3),
        "publish_seconds": round(published["t_all_acked"] - published["t_first"], 3),
        "hub_cpu_s": cpu["hub"],
        "hub_cpu_util": round(cpu["hub"] / seconds, 2) if seconds > 0 else 0.0,
        "hub_cpu_total_s": hub_stats["cpu_s"],
        "hub_peak_rss_mib": hub_stats["peak_rss_mib"],
        "broker_cpu_s": cpu["broker"],
        "publisher_cpu_s": published["cpu_s"],
        "acks": observer.acks - acks_before,
        "first_ack_s": round(first_ack - published["t_first"], 3),
        **writes,
        "samples_stored": counted["samples"],
        "series": counted["series"],
        "hub_exit_code": exit_code,
        "machine_busy_cores": system.busy_cores,
        "other_load_cores": system.others(seconds, sum(cpu.values()) + (published["cpu_s"] or 0.0)),
    }
    result["ratio_to_ceiling"] = {
        name: round(result["hub"]["readings_per_s"] / c["readings_per_s"], 3)
        for name, c in result["ceiling"].items()
        if c["readings_per_s"]
    }
    return result


def render(result: dict[str, Any]) -> str:
    """A plain-text table of the results."""
    p = result["params"]
    hub = result["hub"]
    vm = "vm_write_requests" in hub
    stored_in = "VictoriaMetrics" if vm else "SQLite"
    lines = [
        (
            f"ingest: {p['readings']:,} readings x {p['values_per_reading']} values in "
            f"{p['messages']:,} batches of {p['batch']} (~{p['payload_bytes_avg']:,} B), "
            f"{p['gateways']} gateways, {p['devices']} devices, QoS 1; store: {p['store']}"
        ),
        "",
        (
            f"{'receiver':<34} {'seconds':>8} {'msg/s':>9} {'readings/s':>11} {'ratio':>6}"
            f" {'rcv CPU s':>9} {'broker CPU s':>12}"
        ),
    ]
    labels = {"mosquitto_sub": "mosquitto_sub (ceiling)", "paho_subscriber": "paho, no-op"}
    for name, c in result["ceiling"].items():
        lines.append(
            f"{labels.get(name, name):<34} {c['seconds']:>8.3f} {c['messages_per_s']:>9,.0f} "
            f"{c['readings_per_s']:>11,.0f} {'':>6} {c['subscriber_cpu_s']:>9.2f} "
            f"{c['broker_cpu_s']:>12.2f}"
        )
    ratio = result["ratio_to_ceiling"].get("mosquitto_sub")
    ratio_text = "" if ratio is None else f"{ratio:.3f}"
    lines.append(
        f"{'hub -> stored in ' + stored_in:<34} {hub['seconds']:>8.3f} "
        f"{hub['messages_per_s']:>9,.0f} {hub['readings_per_s']:>11,.0f} {ratio_text:>6} "
        f"{hub['hub_cpu_s']:>9.2f} {hub['broker_cpu_s']:>12.2f}"
    )
    summary = (
        f"hub: peak RSS {hub['hub_peak_rss_mib']:.0f} MiB, CPU {hub['hub_cpu_s']:.2f} s in the "
        f"run ({hub['hub_cpu_util']:.2f} cores), {hub['hub_cpu_total_s']:.2f} s in its life"
    )
    if vm:
        summary += f"; VictoriaMetrics CPU {hub['victoria_metrics_cpu_s']:.2f} s"
    lines += ["", summary]
    if vm:
        lines.append(
            f"writes: {hub['vm_write_requests']} requests to VictoriaMetrics, "
            f"~{hub['vm_rows_per_write']:,} rows each"
        )
    lines += [
        (
            f"machine: {hub['machine_busy_cores']:.2f} cores busy on average during the hub "
            f"run, {hub['other_load_cores']:.2f} of them by processes outside the benchmark"
        ),
        (
            f"acks: {hub['acks']}, the first {hub['first_ack_s']:.3f} s and the last "
            f"{hub['acked_s']:.3f} s after the first publish"
        ),
        (
            f"verified: {hub['samples_stored']:,} samples in {hub['series']} series in "
            f"{stored_in}, none missing, none duplicated"
        ),
        (
            f"publisher: all {p['messages']:,} messages PUBACKed {hub['publish_seconds']:.3f} s "
            "after the first publish"
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100, help="readings per message")
    parser.add_argument("--gateways", type=int, default=4)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument(
        "--store",
        choices=("vm", "sqlite"),
        default="vm",
        help="the hub's time-series store: VictoriaMetrics or its embedded SQLite store",
    )
    parser.add_argument(
        "--publisher",
        choices=("python", "mosquitto_pub"),
        default=None,
        help="who publishes the stream (default: mosquitto_pub for batches of 10 or fewer)",
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the ceiling passes")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--json", action="store_true", help="print JSON, not a table")
    args = parser.parse_args(argv)
    try:
        result = run(
            readings=args.readings,
            batch=args.batch,
            gateways=args.gateways,
            devices=args.devices,
            store=args.store,
            ceilings=not args.no_ceiling,
            keep=args.keep,
            publisher=args.publisher,
        )
    except BenchError as exc:
        print(f"bench.ingest: FAILED: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
