"""Where the hub's ingest path spends its CPU: the same payloads as ``bench.ingest``, fed
in-process to the real :class:`hub.ingest.Ingestor` (real registry and rules), stage by stage.

    python -m bench.profile_ingest [--readings N] [--batch B] [--top K] [--json]

Stages, each timed alone over the whole stream (no profiler running):

- ``json``: ``orjson.loads`` of every payload;
- ``decode (pydantic)``: ``wire.decode`` (JSON and pydantic validation of the DataBatch), which
  the hub no longer uses for data;
- ``decode (columns)``: ``wire.decode_data_columns``, the hub's decoder: JSON into columns;
- ``decode (columnar layout)``: the same batches laid out as columns (devices once, values as
  arrays), ``orjson.loads`` and one ``np.array`` per column: what a columnar wire format would
  cost to decode (the hub does not speak one; measured to weigh it);
- ``handle, no rules``: ``Ingestor.handle`` of a hub built without rules, in bursts of 20
  messages made columns together (``Ingestor.process_staged``), as the broker hands them over;
- ``handle``: ``Ingestor.handle`` of a hub built as ``anju hub run`` builds it, with the rules
  of ``config/rules`` (and their evaluation of the message's readings, which the running hub
  does in slices right after);
- ``flush (all at once)``: that hub's ``Ingestor.flush`` of everything ``handle`` buffered (it
  commits the batch to the hub's SQLite spool, which makes it acknowledgeable);
- ``forward (all at once)``: the hub's ``Forwarder`` draining that spool into its sink, which
  builds the line protocol as InfluxSink does and drops it;
- ``line protocol``: ``hub.columns.reading_lines`` over the stream's columns in chunks of 50,000
  readings (what InfluxSink does on its worker thread);
- ``influx write``: ``InfluxSink.write`` to a real VictoriaMetrics of the same chunks (lines,
  then HTTP on its worker thread);
- ``sqlite write``: ``SqliteSink.write`` (the embedded store) of the same chunks.

Then cProfile over ``handle``, ``flush`` (one every 20 messages) and the forwarder lists the top
functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from bench.common import (
    REPO_ROOT,
    RULES_DIR,
    VALUE_NAMES,
    Message,
    site_document,
    telemetry_devices,
    telemetry_stream,
)
from hub import Hub, HubConfig, InfluxSink, NotifierSettings, SinkBatch, SqliteSink
from hub.columns import DeviceTable, Readings
from tests.servers import VictoriaMetrics
from wire import Channel, decode
from wire.columns import decode_data_columns


class _LineSink:
    """Builds the line protocol as InfluxSink does, then drops it."""

    name = "lines"

    def __init__(self) -> None:
        self.lines = 0

    async def write(self, batch: SinkBatch) -> None:
        self.lines += len(batch.lines())

    async def aclose(self) -> None:
        return None


def _hub(workdir: Path, site_file: Path, *, rules: bool) -> tuple[Hub, _LineSink]:
    """A hub built as ``anju hub run`` builds it, not connected, with a line-building sink."""
    sink = _LineSink()
    config = HubConfig(
        site_file=site_file,
        rules=(RULES_DIR,) if rules else (),
        data_dir=workdir / f"hub-{'rules' if rules else 'bare'}",
        notifiers=NotifierSettings(log=False),
    )
    return Hub(config, sink=sink), sink


async def _close(hub: Hub) -> None:
    await hub.sink.aclose()
    hub.store.close()


async def _forward(hub: Hub) -> None:
    """Run the hub's forwarder until the spool is empty."""
    task = asyncio.create_task(hub.forwarder.run())
    try:
        await hub.forwarder.wait_drained()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _feed(hub: Hub, messages: Sequence[Message], received: int) -> None:
    # The hub evaluates readings in slices after handle; here each message's readings are
    # evaluated right after it, so the stage counts the rules as the running hub pays them.
    # Messages come in bursts of 20 here: the hub makes columns of a burst at its end.
    handle, evaluate = hub.ingestor.handle, hub.rules.evaluate
    for index, message in enumerate(messages, 1):
        handle(message.topic, message.payload, received)
        if index % 20 == 0:
            hub.ingestor.process_staged()
            evaluate()
    hub.ingestor.process_staged()
    evaluate()


def _columnar(payload: bytes) -> bytes:
    """A v1 batch re-laid as columns: device list once, an index per reading, value arrays."""
    batch = orjson.loads(payload)
    devices = list(dict.fromkeys(r["dev"] for r in batch["readings"]))
    index = {dev: i for i, dev in enumerate(devices)}
    names = list(dict.fromkeys(n for r in batch["readings"] for n in r["values"]))
    return orjson.dumps(
        {
            "v": 2,
            "session": batch["session"],
            "seq": batch["seq"],
            "devices": devices,
            "dev": [index[r["dev"]] for r in batch["readings"]],
            "ts": [r["ts"] for r in batch["readings"]],
            "values": {n: [r["values"].get(n) for r in batch["readings"]] for n in names},
        }
    )


def _chunks(devices: DeviceTable, messages: Sequence[Message], size: int) -> list[SinkBatch]:
    """The stream's readings as the forwarder hands them to a sink, ``size`` at a time."""
    batches: list[SinkBatch] = []
    parts: list[Readings] = []
    count = 0
    for message in messages:
        columns = decode_data_columns(message.payload)
        parts.append(Readings(devices.slots(columns.devs), columns.ts, columns.fields))
        count += len(columns)
        if count >= size:
            batches.append(SinkBatch(Readings.concat(parts), (), devices))
            parts, count = [], 0
    if parts:
        batches.append(SinkBatch(Readings.concat(parts), (), devices))
    return batches


def run(*, readings: int = 200_000, batch: int = 100, top: int = 20) -> dict[str, Any]:
    """Profile the ingest path; return per-stage timings and the top functions."""
    gateways = [f"gw-{i:02d}" for i in range(4)]
    fleet = telemetry_devices(gateways, 200)
    start_ms = time.time_ns() // 1_000_000 - readings - 60_000
    messages, _ = telemetry_stream(fleet, readings=readings, batch=batch, start_ms=start_ms)
    received = start_ms + readings + 60_000
    with tempfile.TemporaryDirectory(prefix="anju-bench-profile-") as tmp:
        workdir = Path(tmp)
        site_file = workdir / "site.yaml"
        site_file.write_text(yaml.safe_dump(site_document(fleet)), encoding="utf-8")
        return asyncio.run(_run(workdir, site_file, messages, readings, received, top))


async def _run(
    workdir: Path,
    site_file: Path,
    messages: Sequence[Message],
    readings: int,
    received: int,
    top: int,
) -> dict[str, Any]:
    stages: dict[str, float] = {}
    payloads = [m.payload for m in messages]

    def json_only() -> None:
        for payload in payloads:
            orjson.loads(payload)

    def decode_only() -> None:
        for payload in payloads:
            decode(Channel.DATA, payload)

    def columns_only() -> None:
        for payload in payloads:
            decode_data_columns(payload)

    # The same batches in a columnar layout (devices once, values as arrays): what a v2 wire
    # batch would cost to decode. Not a format the hub speaks; measured to weigh one.
    columnar = [_columnar(payload) for payload in payloads]

    def columnar_only() -> None:
        for payload in columnar:
            obj = orjson.loads(payload)
            np.array(obj["ts"], dtype=np.int64)
            np.array(obj["dev"], dtype=np.int32)
            for column in obj["values"].values():
                np.array(column, dtype=np.float64)

    stages["json"] = _timed(json_only)
    stages["decode (pydantic)"] = _timed(decode_only)
    stages["decode (columns)"] = _timed(columns_only)
    stages["decode (columnar layout)"] = _timed(columnar_only)

    bare, _ = _hub(workdir, site_file, rules=False)
    stages["handle, no rules"] = _timed(lambda: _feed(bare, messages, received))
    await _close(bare)
    hub, hub_lines = _hub(workdir, site_file, rules=True)
    stages["handle"] = _timed(lambda: _feed(hub, messages, received))
    start = time.perf_counter()
    await hub.ingestor.flush()
    stages["flush (all at once)"] = time.perf_counter() - start
    start = time.perf_counter()
    await _forward(hub)
    stages["forward (all at once)"] = time.perf_counter() - start
    registry = hub.registry
    await _close(hub)
    if hub_lines.lines != readings:
        msg = f"the hub's sink got {hub_lines.lines} points of {readings}"
        raise RuntimeError(msg)

    devices = DeviceTable(registry)
    chunks = _chunks(devices, messages, 50_000)
    stages["line protocol"] = _timed(lambda: [c.lines() for c in chunks])
    with VictoriaMetrics(workdir / "victoria-metrics") as victoria:
        sink = InfluxSink(victoria.url, token="", org="anju", bucket="anju", timeout_s=30)
        start = time.perf_counter()
        for chunk in chunks:
            await sink.write(chunk)
        stages["influx write"] = time.perf_counter() - start
        await sink.aclose()
    sqlite_sink = SqliteSink(workdir / "tsdb.sqlite3", retention_days=30)
    start = time.perf_counter()
    cpu_start = time.process_time()
    for chunk in chunks:
        await sqlite_sink.write(chunk)
    stages["sqlite write"] = time.perf_counter() - start
    sqlite_cpu = time.process_time() - cpu_start
    await sqlite_sink.aclose()

    # cProfile: a fresh hub, as it runs: handle, a flush every 20 messages, the forwarder.
    profiled, sink_lines = _hub(workdir / "profiled", site_file, rules=True)
    profiler = cProfile.Profile()
    profiler.enable()
    forwarder = asyncio.create_task(profiled.forwarder.run())
    for index, message in enumerate(messages, 1):
        profiled.ingestor.handle(message.topic, message.payload, received)
        if index % 20 == 0:
            profiled.ingestor.process_staged()
            profiled.rules.evaluate()
            await profiled.ingestor.flush()
    await profiled.ingestor.flush()
    await profiled.forwarder.wait_drained()
    forwarder.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await forwarder
    profiler.disable()
    await _close(profiled)
    return {
        "bench": "profile_ingest",
        "params": {
            "readings": readings,
            "messages": len(messages),
            "values_per_reading": len(VALUE_NAMES),
            "lines_built_in_profile": sink_lines.lines,
            "sqlite_write_cpu_s": round(sqlite_cpu, 3),
        },
        "stages_s": {k: round(v, 6) for k, v in stages.items()},
        "stages_us_per_reading": {k: round(v / readings * 1e6, 2) for k, v in stages.items()},
        "top_functions": _top(profiler, top),
    }


def _top(profiler: cProfile.Profile, count: int) -> list[dict[str, Any]]:
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    root = str(REPO_ROOT) + "/"
    rows = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in sorted(
        raw.items(), key=lambda item: item[1][2], reverse=True
    )[:count]:
        where = filename.split("site-packages/")[-1].replace(root, "")
        rows.append(
            {
                "function": f"{where}:{line}({name})",
                "calls": calls,
                "tottime_s": round(tottime, 3),
                "share": round(tottime / total, 3) if total else 0.0,
                "cumtime_s": round(cumtime, 3),
            }
        )
    return rows


def render(result: dict[str, Any]) -> str:
    """A plain-text report."""
    p = result["params"]
    lines = [
        (
            f"ingest path, in-process: {p['readings']:,} readings x "
            f"{p['values_per_reading']} values in {p['messages']:,} batches"
        ),
        "",
        f"{'stage':<20} {'seconds':>8} {'us/reading':>11} {'readings/s':>11}",
    ]
    for name, seconds in result["stages_s"].items():
        per = result["stages_us_per_reading"][name]
        rate = p["readings"] / seconds if seconds else 0.0
        lines.append(f"{name:<20} {seconds:>8.3f} {per:>11.2f} {rate:>11,.0f}")
    lines += ["", "cProfile, handle + flush, by own time:"]
    for f in result["top_functions"]:
        lines.append(
            f"  {f['share']:>6.1%} {f['tottime_s']:>7.3f} s {f['calls']:>9,} calls  {f['function']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_ingest", description=__doc__)
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(readings=args.readings, batch=args.batch, top=args.top)
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
