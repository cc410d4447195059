"""Rule evaluation in-process: 500 rules over 10,000 devices, readings per second.

    python -m bench.rules_eval [--rules 500] [--devices 10000] [--readings 1000000]
                               [--batch 500] [--max-seconds 40] [--events 100000]
                               [--quick] [--json]

A synthetic site of ``--devices`` devices (ten grids of five 18-floor buildings; temperature and
humidity sensors, smoke, gas and leak detectors, CO2 and PM2.5 sensors, power and water meters,
motion sensors, emergency buttons, door readers and cameras) and ``--rules`` rules of every kind
(:func:`rule_mix`: thresholds with ``for`` and hysteresis, rates of change, absence, flat line,
count, event, correlation and anomaly), scoped by device kind and by grid or building, as a
community writes them.  The engine is :class:`rules.Engine`, fed as the hub feeds it: one
:class:`rules.Subject` per device with the registry's labels, numbered once
(``Engine.set_subjects``), and readings in batches of ``--batch`` as columns (slots, timestamps,
one float array per value name, NaN where a device has no such value; ``Engine.on_batch``).
The sequential engine (:class:`rules._reference.SequentialEngine`, one reading at a time, as
the hub fed rules before) runs the same readings in the same process for comparison.

Readings go round-robin over the devices that send readings, every one every 10 s of virtual
time, with values that wander inside their normal band; 2 % of the devices have an excursion (a
fire, a CO2 peak) in their cycle of 32 readings, which fires and resolves alerts.
``Engine.tick`` runs every virtual second (between batches).  Each engine's run stops after
``--readings`` readings or ``--max-seconds``, whichever comes first.  In the same run the
*ceiling* is the same loop (same batches built the same way, same tick test) calling a no-op
instead of the engine: what the figure would be if evaluating rules cost nothing; the
sequential engine has its own (one value mapping per reading).  Then ``--events`` events (door
access, motion, now and then an alarm), 6 ms of virtual time apart, go through the same rules,
and the engine's state is snapshotted and restored once (what a hub restart costs).  Peak RSS
is the process's (``getrusage``).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import yaml
from numpy.typing import NDArray

from bench.common import SystemCpu, machine
from hub.registry import Registry, parse_site
from rules import Engine, RuleSet, Subject, parse_rules
from rules._reference import SequentialEngine

T0 = 1_767_636_000_000  # 2026-01-06 02:00 in Asia/Shanghai
PERIOD_MS = 10_000  # every device sends a reading this often (virtual time)
TICK_MS = 1000
CYCLE = 32  # value rows kept per device, replayed in a loop (5 min 20 s of virtual time)
EXCURSION_P = 0.02  # share of devices with an excursion in their cycle (a fire, a CO2 peak)
EXCURSION_ROWS = 6  # its length: three rows to climb, then it holds
EVENT_SPACING_MS = 6  # 100,000 events take 10 virtual minutes: less than any absence `for`

GRIDS = 10
BUILDINGS_PER_GRID = 5
FLOORS = 18
UNITS_PER_FLOOR = 4

# Device kind -> share of the fleet.
KINDS: dict[str, float] = {
    "temp_humidity": 0.30,
    "smoke": 0.20,
    "co2": 0.06,
    "pm25": 0.04,
    "gas": 0.06,
    "water_leak": 0.05,
    "motion": 0.08,
    "emergency_button": 0.04,
    "power_meter": 0.03,
    "water_meter": 0.02,
    "door_reader": 0.07,
    "camera": 0.05,
}
# What each kind reports as readings; cameras and door readers send only events.
KIND_VALUES: dict[str, tuple[str, ...]] = {
    "temp_humidity": ("temperature", "humidity", "battery"),
    "smoke": ("battery",),
    "co2": ("co2", "temperature"),
    "pm25": ("pm25",),
    "gas": ("battery",),
    "water_leak": ("battery",),
    "motion": ("battery",),
    "emergency_button": ("battery",),
    "power_meter": ("power", "voltage"),
    "water_meter": ("water_flow", "pressure"),
}
# The normal band of each value, and what an excursion reaches.  No rule of the mix fires
# inside the bands (bench.common.random_values keeps within them too), so alerts come only
# from excursions.
BANDS: dict[str, tuple[float, float, float]] = {
    "temperature": (18.0, 30.0, 62.0),
    "humidity": (35.0, 70.0, 93.0),
    "battery": (40.0, 100.0, 9.0),
    "co2": (400.0, 1000.0, 2100.0),
    "pm25": (5.0, 80.0, 240.0),
    "power": (0.0, 3000.0, 6200.0),
    "voltage": (215.0, 235.0, 190.0),
    "water_flow": (0.0, 20.0, 65.0),
    "pressure": (0.2, 0.6, 0.05),
}
# Which kinds report a value, for scoping the rules on it.
METRIC_KINDS: dict[str, tuple[str, ...]] = {}
for _kind, _names in KIND_VALUES.items():
    for _name in _names:
        METRIC_KINDS.setdefault(_name, ())
        METRIC_KINDS[_name] += (_kind,)
# What each kind sends as events, with weights (most are routine).
KIND_EVENTS: dict[str, tuple[tuple[str, dict[str, Any], float], ...]] = {
    "door_reader": (
        ("door.access", {"granted": True}, 0.90),
        ("door.access", {"granted": False}, 0.07),
        ("door.held_open", {"open_s": 95.0}, 0.02),
        ("door.forced", {}, 0.01),
    ),
    "camera": (
        ("camera.motion", {"active": True}, 0.97),
        ("camera.intrusion", {"zone": "fence", "active": True}, 0.02),
        ("camera.tamper", {"active": True}, 0.01),
    ),
    "motion": (("presence.motion", {"active": True}, 1.0),),
    "smoke": (("alarm.smoke", {"active": True}, 0.5), ("alarm.smoke", {"active": False}, 0.5)),
    "gas": (("alarm.gas", {"active": True}, 0.5), ("alarm.gas", {"active": False}, 0.5)),
    "water_leak": (
        ("alarm.water_leak", {"active": True}, 0.5),
        ("alarm.water_leak", {"active": False}, 0.5),
    ),
    "emergency_button": (
        ("emergency.button", {"pressed": True}, 0.5),
        ("emergency.button", {"pressed": False}, 0.5),
    ),
}
# Share of events by sending kind: doors and cameras talk most, alarms are rare.
EVENT_SHARE = {
    "door_reader": 0.45,
    "camera": 0.30,
    "motion": 0.23,
    "smoke": 0.005,
    "gas": 0.005,
    "water_leak": 0.005,
    "emergency_button": 0.005,
}
CREDENTIAL = "h1:" + "5e" * 16


# -- the site ---------------------------------------------------------------------------------


def site_document(devices: int, *, seed: int = 1) -> dict[str, Any]:
    """A site of ``devices`` devices in ten grids of five buildings, kinds as in :data:`KINDS`."""
    rng = random.Random(seed)
    grids = []
    for g in range(GRIDS):
        buildings = [
            {"id": str(g * BUILDINGS_PER_GRID + b + 1), "floors": FLOORS}
            for b in range(BUILDINGS_PER_GRID)
        ]
        grids.append({"id": f"g{g + 1:02d}", "name": f"Grid {g + 1}", "buildings": buildings})
    kinds = rng.choices(list(KINDS), weights=list(KINDS.values()), k=devices)
    placed = []
    for index, kind in enumerate(kinds):
        grid = index % GRIDS
        building = grid * BUILDINGS_PER_GRID + (index // GRIDS) % BUILDINGS_PER_GRID + 1
        floor = (index // (GRIDS * BUILDINGS_PER_GRID)) % FLOORS + 1
        device: dict[str, Any] = {
            "id": f"{kind.replace('_', '-')}-{index:05d}",
            "gateway": f"gw-g{grid + 1:02d}",
            "kind": kind,
            "building": str(building),
            "floor": floor,
        }
        if kind in {"door_reader", "camera", "power_meter", "water_meter"}:
            device["area"] = "Lobby" if kind != "water_meter" else "Pump room"
        else:
            unit = (index // (GRIDS * BUILDINGS_PER_GRID * FLOORS)) % UNITS_PER_FLOOR + 1
            device["unit"] = f"{floor}{unit:02d}"
        placed.append(device)
    return {
        "site": {"id": "bench", "name": "Benchmark Garden", "timezone": "Asia/Shanghai"},
        "grids": grids,
        "gateways": [{"id": f"gw-g{g + 1:02d}"} for g in range(GRIDS)],
        "devices": placed,
    }


# -- the rules --------------------------------------------------------------------------------

# (metric, above, below, for, clear) of the threshold rules: every level is outside its band.
THRESHOLDS: tuple[tuple[str, float | None, float | None, str, float], ...] = (
    ("temperature", 57, None, "10s", 50),
    ("temperature", 40, None, "5m", 35),
    ("temperature", None, 5, "30m", 8),
    ("humidity", 85, None, "30m", 80),
    ("battery", None, 15, "1h", 25),
    ("co2", 1500, None, "5m", 1200),
    ("pm25", 150, None, "15m", 100),
    ("power", 5000, None, "1m", 4500),
    ("voltage", None, 200, "30s", 205),
    ("pressure", None, 0.1, "2m", 0.15),
    ("water_flow", 50, None, "10m", 40),
)
# (metric, max per minute, direction): faster than any move inside the band in a minute.
RATES: tuple[tuple[str, float, str], ...] = (
    ("temperature", 15, "rise"),
    ("co2", 800, "rise"),
    ("humidity", 40, "rise"),
    ("pressure", 0.5, "fall"),
)
# (metric, min_std): a z of 5 needs more than the whole band from the mean.
ANOMALIES: tuple[tuple[str, float], ...] = (
    ("temperature", 2.5),
    ("co2", 130.0),
    ("water_flow", 4.5),
    ("pressure", 0.09),
    ("power", 650.0),
)
# Event rules; smoke is left to the site-wide rule of config/rules/safety.yaml.
EVENTS: tuple[dict[str, Any], ...] = (
    {"match": {"kind": "alarm.gas", "data": {"active": True}}, "resolve_on": {"active": False}},
    {
        "match": {"kind": "alarm.water_leak", "data": {"active": True}},
        "resolve_on": {"active": False},
    },
    {
        "match": {"kind": "door.forced"},
        "schedule": {"timezone": "Asia/Shanghai", "between": ["22:00", "06:00"]},
        "auto_resolve": "15m",
    },
    {"match": {"kind": "door.held_open"}, "auto_resolve": "10m"},
    {
        "match": {"kind": "camera.intrusion", "data": {"active": True}},
        "resolve_on": {"active": False},
        "schedule": {"timezone": "Asia/Shanghai", "between": ["22:00", "06:00"]},
    },
    {"match": {"kind": "camera.tamper", "data": {"active": True}}, "resolve_on": {"active": False}},
    {
        "match": {"kind": "emergency.button", "data": {"pressed": True}},
        "resolve_on": {"pressed": False},
    },
    {"match": {"kind": "device.fault"}, "auto_resolve": "1h"},
)
COUNTS: tuple[dict[str, Any], ...] = (
    {"match": {"kind": "door.access", "data": {"granted": False}}, "count": 5, "window": "1m"},
    {"match": {"kind": "camera.motion"}, "count": 100, "window": "5m", "auto_resolve": "10m"},
    {"match": {"kind": "door.held_open"}, "count": 3, "window": "1h"},
)
CORRELATIONS: tuple[tuple[str, dict[str, Any], str, float], ...] = (
    ("alarm.smoke", {"active": True}, "temperature", 45),
    ("alarm.gas", {"active": True}, "co2", 1500),
    ("alarm.water_leak", {"active": True}, "humidity", 90),
)
# Kind -> share of the rule set.
MIX: dict[str, float] = {
    "threshold": 0.40,
    "event": 0.20,
    "rate_of_change": 0.08,
    "count": 0.08,
    "absence": 0.06,
    "flat_line": 0.06,
    "correlation": 0.06,
    "anomaly": 0.06,
}


def rule_mix(
    count: int, *, grids: Sequence[str], buildings: Sequence[str], seed: int = 7
) -> list[dict[str, Any]]:
    """``count`` rule documents of every kind in the shares of :data:`MIX`.

    Each rule is scoped by the device kinds it concerns and, mostly, by one grid or a few
    buildings of ``grids`` and ``buildings``, as a community sets different levels per place.
    No rule fires on values inside :data:`BANDS`.
    """
    rng = random.Random(seed)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=count)

    def place() -> dict[str, Any]:
        pick = rng.random()
        if pick < 0.45:  # a grid, a few buildings, or the whole site
            return {"grids": [rng.choice(grids)]}
        if pick < 0.85:
            return {"buildings": sorted(rng.sample(list(buildings), min(3, len(buildings))))}
        return {}

    rules: list[dict[str, Any]] = []
    for index, kind in enumerate(kinds):
        rule: dict[str, Any] = {
            "id": f"{kind.replace('_', '-')}-{index:04d}",
            "kind": kind,
            "severity": rng.choice(["critical", "major", "minor", "warning"]),
            "issue_class": rng.choice(["ordinary", "composite", "hard"]),
        }
        scope = place()
        body, metric = _BODIES[kind](rng)
        if metric is not None:
            scope["device_kinds"] = list(METRIC_KINDS[metric])
        elif kind == "absence":
            scope["device_kinds"] = sorted(rng.sample(list(KIND_VALUES), 3))
        rule.update(body)
        rule["scope"] = scope
        rule["message"] = f"{rule['id']} at {{place}} (grid {{grid_name}}), device {{device}}"
        rules.append(rule)
    return rules


def _threshold(rng: random.Random) -> tuple[dict[str, Any], str | None]:
    metric, above, below, hold, clear = rng.choice(THRESHOLDS)
    body: dict[str, Any] = {"metric": metric, "for": hold}
    if above is not None:
        body |= {"above": above, "clear_above": clear}
    else:
        body |= {"below": below, "clear_below": clear}
    return body, metric


def _rate(rng: random.Random) -> tuple[dict[str, Any], str | None]:
    metric, limit, direction = rng.choice(RATES)
    body = {"metric": metric, "max_per_minute": limit, "direction": direction, "window": "1m"}
    return body, metric


def _anomaly(rng: random.Random) -> tuple[dict[str, Any], str | None]:
    metric, min_std = rng.choice(ANOMALIES)
    alpha, warmup = rng.choice([0.01, 0.02, 0.05]), rng.choice([30, 60, 360])
    return {"metric": metric, "alpha": alpha, "warmup": warmup, "z": 5, "min_std": min_std}, metric


def _flat_line(rng: random.Random) -> tuple[dict[str, Any], str | None]:
    metric = rng.choice(["humidity", "temperature", "co2", "pressure"])
    return {"metric": metric, "for": rng.choice(["6h", "12h"]), "tolerance": 0.0}, metric


def _absence(rng: random.Random) -> tuple[dict[str, Any], str | None]:
    return {"for": rng.choice(["30m", "1h", "2h"]), "for_device_kinds": {"smoke": "26h"}}, None


def _correlation(rng: random.Random) -> tuple[dict[str, Any], str | None]:
    event, data, metric, above = rng.choice(CORRELATIONS)
    conditions = [{"event": {"kind": event, "data": data}}, {"metric": metric, "above": above}]
    return {"window": "5m", "conditions": conditions}, None


# Rule kind -> its own fields, and the metric it watches (for scoping by device kind).
_BODIES: dict[str, Callable[[random.Random], tuple[dict[str, Any], str | None]]] = {
    "threshold": _threshold,
    "rate_of_change": _rate,
    "anomaly": _anomaly,
    "flat_line": _flat_line,
    "absence": _absence,
    "event": lambda rng: (dict(rng.choice(EVENTS)), None),
    "count": lambda rng: (dict(rng.choice(COUNTS)), None),
    "correlation": _correlation,
}


def rules_yaml(rules: Sequence[Mapping[str, Any]]) -> str:
    """A rule file of ``rules``."""
    return yaml.safe_dump({"rules": list(rules)}, sort_keys=False, allow_unicode=True)


# -- the streams ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Feed:
    """What one device sends: its subject, value names and a cycle of value rows."""

    subject: Subject
    names: tuple[str, ...]
    rows: tuple[tuple[float, ...], ...]


def reading_feeds(registry: Registry, *, seed: int = 3) -> list[Feed]:
    """One feed per device that sends readings: values wander in their band, rare excursions."""
    rng = random.Random(seed)
    feeds: list[Feed] = []
    for device in registry.devices.values():
        names = KIND_VALUES.get(device.kind)
        if names is None:
            continue
        walk = [rng.uniform(*BANDS[name][:2]) for name in names]
        start = rng.randrange(CYCLE) if rng.random() < EXCURSION_P else CYCLE
        rows: list[tuple[float, ...]] = []
        for index in range(CYCLE):
            climb = min(1.0, (index - start + 1) / 3) if 0 <= index - start < EXCURSION_ROWS else 0
            row = []
            for i, name in enumerate(names):
                low, high, excursion = BANDS[name]
                step = (high - low) / 50
                walk[i] = min(high, max(low, walk[i] + rng.uniform(-step, step)))
                row.append(round(walk[i] + (excursion - walk[i]) * climb, 2))
            rows.append(tuple(row))
        feeds.append(Feed(Subject(device.id, device.labels), names, tuple(rows)))
    return feeds


def event_stream(
    registry: Registry, count: int, *, seed: int = 5
) -> list[tuple[Subject, str, dict[str, Any]]]:
    """``count`` events in the shares of :data:`EVENT_SHARE`, each from a device of its kind."""
    rng = random.Random(seed)
    by_kind: dict[str, list[Subject]] = {}
    for device in registry.devices.values():
        if device.kind in KIND_EVENTS:
            by_kind.setdefault(device.kind, []).append(Subject(device.id, device.labels))
    senders = [kind for kind in EVENT_SHARE if by_kind.get(kind)]
    weights = [EVENT_SHARE[kind] for kind in senders]
    events: list[tuple[Subject, str, dict[str, Any]]] = []
    for kind in rng.choices(senders, weights=weights, k=count):
        options = KIND_EVENTS[kind]
        event_kind, data, _ = rng.choices(options, weights=[o[2] for o in options])[0]
        if event_kind == "door.access":
            data = {"credential": CREDENTIAL, "format": "wiegand26", **data}
        events.append((rng.choice(by_kind[kind]), event_kind, data))
    return events


# -- the loops --------------------------------------------------------------------------------

OnReading = Callable[[Subject, int, Mapping[str, float]], object]


def _feed(
    feeds: Sequence[Feed],
    on_reading: OnReading,
    tick: Callable[[int], object],
    readings: int,
    max_seconds: float,
) -> tuple[int, float, int]:
    """Feed readings round-robin; return (readings fed, seconds, ticks)."""
    n = len(feeds)
    step_ms = PERIOD_MS / n
    next_tick = T0 + TICK_MS
    ticks = 0
    started = time.perf_counter()
    deadline = started + max_seconds
    k = 0
    while k < readings:
        feed = feeds[k % n]
        ts = T0 + int(k * step_ms)
        if ts >= next_tick:
            tick(ts)
            ticks += 1
            next_tick = ts - ts % TICK_MS + TICK_MS
        on_reading(feed.subject, ts, dict(zip(feed.names, feed.rows[k // n % CYCLE], strict=True)))
        k += 1
        if not k % 10_000 and time.perf_counter() > deadline:
            break
    return k, time.perf_counter() - started, ticks


def _noop(*_: object) -> None:
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Columns:
    """The feeds as the hub holds readings: a slot per feed and a table of value rows.

    Attributes:
        slots: feed -> its device's slot.
        names: the value names, one column each.
        table: (feed, cycle row, name) -> value; NaN where the feed has no such value.
    """

    slots: NDArray[np.int32]
    names: tuple[str, ...]
    table: NDArray[np.float64]


def reading_columns(feeds: Sequence[Feed], slot_of: Mapping[str, int]) -> Columns:
    """The feeds' values as one table, for building batches of columns."""
    names = tuple(sorted({name for feed in feeds for name in feed.names}))
    table = np.full((len(feeds), CYCLE, len(names)), np.nan)
    for f, feed in enumerate(feeds):
        where = [names.index(name) for name in feed.names]
        table[f][:, where] = np.array(feed.rows)
    slots = np.array([slot_of[feed.subject.device] for feed in feeds], dtype=np.int32)
    return Columns(slots, names, table)


OnBatch = Callable[
    [NDArray[np.int32], NDArray[np.int64], Mapping[str, NDArray[np.float64]]], object
]


def _feed_batches(
    columns: Columns,
    on_batch: OnBatch,
    tick: Callable[[int], object],
    readings: int,
    max_seconds: float,
    batch: int,
    first: int = 0,
) -> tuple[int, float, int]:
    """The readings of :func:`_feed`, in batches of columns; return (fed, seconds, ticks).

    ``first`` skips the stream's first readings (to go on where an earlier call stopped).
    """
    n = columns.slots.size
    step_ms = PERIOD_MS / n
    next_tick = T0 + int(first * step_ms)
    ticks = 0
    started = time.perf_counter()
    deadline = started + max_seconds
    k = first
    readings += first
    while k < readings:
        index = np.arange(k, min(k + batch, readings))
        feed = index % n
        ts = T0 + (index * step_ms).astype(np.int64)
        now = int(ts[0])
        if now >= next_tick:
            tick(now)
            ticks += 1
            next_tick = now - now % TICK_MS + TICK_MS
        rows = np.ascontiguousarray(columns.table[feed, index // n % CYCLE].T)
        on_batch(columns.slots[feed], ts, dict(zip(columns.names, rows, strict=True)))
        k += index.size
        if time.perf_counter() > deadline:
            break
    return k - first, time.perf_counter() - started, ticks


def run(
    *,
    rules: int = 500,
    devices: int = 10_000,
    readings: int = 1_000_000,
    max_seconds: float = 40.0,
    events: int = 100_000,
    batch: int = 500,
) -> dict[str, Any]:
    """Run the benchmark; return its results (see the module docstring)."""
    setup_started = time.perf_counter()
    registry = Registry(parse_site(site_document(devices), source="<bench site>"))
    grids = sorted(registry.grids)
    buildings = sorted({d.building for d in registry.devices.values() if d.building})
    documents = rule_mix(rules, grids=grids, buildings=buildings)
    ruleset: RuleSet = parse_rules(rules_yaml(documents), "<bench rules>")
    feeds = reading_feeds(registry)
    stream = event_stream(registry, events)

    subjects = [Subject(device.id, device.labels) for device in registry.devices.values()]
    slot_of = {subject.device: slot for slot, subject in enumerate(subjects)}
    columns = reading_columns(feeds, slot_of)
    setup_s = time.perf_counter() - setup_started

    engine = Engine(ruleset)
    started = time.perf_counter()
    engine.set_subjects(subjects)
    subjects_s = time.perf_counter() - started
    transitions = 0

    def on_batch(
        slots: NDArray[np.int32], ts: NDArray[np.int64], fields: Mapping[str, NDArray[np.float64]]
    ) -> None:
        nonlocal transitions
        transitions += len(engine.on_batch(slots, ts, fields))

    def tick(ts: int) -> None:
        nonlocal transitions
        transitions += len(engine.tick(ts))

    system = SystemCpu()
    system.start()
    cpu_started = time.process_time()
    fed, seconds, ticks = _feed_batches(columns, on_batch, tick, readings, max_seconds, batch)
    cpu_s = time.process_time() - cpu_started
    system.stop()
    stats = engine.statistics()
    reading_transitions = transitions
    # The ceiling: the same loop, the engine replaced by a no-op.
    _, ceiling_s, _ = _feed_batches(columns, _noop, _noop, fed, float("inf"), batch)

    end_ms = T0 + int(fed * PERIOD_MS / len(feeds))
    next_tick = end_ms
    started = time.perf_counter()
    for i, (subject, kind, data) in enumerate(stream):
        ts = end_ms + i * EVENT_SPACING_MS
        if ts >= next_tick:
            transitions += len(engine.tick(ts))
            next_tick = ts - ts % TICK_MS + TICK_MS
        transitions += len(engine.on_event(subject, ts, kind, data))
    events_s = time.perf_counter() - started
    started = time.perf_counter()
    next_tick = end_ms
    for i, (subject, kind, data) in enumerate(stream):
        ts = end_ms + i * EVENT_SPACING_MS
        if ts >= next_tick:
            _noop(ts)
            next_tick = ts - ts % TICK_MS + TICK_MS
        _noop(subject, ts, kind, data)
    events_ceiling_s = time.perf_counter() - started
    after = engine.statistics()

    started = time.perf_counter()
    blob = engine.snapshot()
    snapshot_s = time.perf_counter() - started
    restored = Engine(ruleset)
    restored.set_subjects(subjects)
    started = time.perf_counter()
    report = restored.restore(blob)
    restore_s = time.perf_counter() - started
    del restored

    # The sequential engine on the same readings, one value mapping per reading.
    sequential = SequentialEngine(ruleset)
    sequential_transitions = 0

    def on_reading(subject: Subject, ts: int, values: Mapping[str, float]) -> None:
        nonlocal sequential_transitions
        sequential_transitions += len(sequential.on_reading(subject, ts, values))

    def sequential_tick(ts: int) -> None:
        nonlocal sequential_transitions
        sequential_transitions += len(sequential.tick(ts))

    sequential_fed, sequential_s, _ = _feed(feeds, on_reading, sequential_tick, fed, max_seconds)
    _, sequential_ceiling_s, _ = _feed(feeds, _noop, _noop, sequential_fed, float("inf"))
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rule_kinds: dict[str, int] = {}
    for document in documents:
        rule_kinds[document["kind"]] = rule_kinds.get(document["kind"], 0) + 1
    readings_per_s = fed / seconds
    ceiling_per_s = fed / ceiling_s
    return {
        "bench": "rules_eval",
        "params": {
            "rules": len(ruleset),
            "rule_kinds": rule_kinds,
            "devices": len(registry.devices),
            "reading_devices": len(feeds),
            "readings_target": readings,
            "max_seconds": max_seconds,
            "events": len(stream),
            "virtual_period_s": PERIOD_MS / 1000,
            "tick_ms": TICK_MS,
            "batch": batch,
            "setup_s": round(setup_s, 2),
            "set_subjects_s": round(subjects_s, 3),
        },
        "readings": {
            "count": fed,
            "seconds": round(seconds, 3),
            "cpu_s": round(cpu_s, 3),
            "readings_per_s": round(readings_per_s),
            "us_per_reading": round(seconds / fed * 1e6, 2),
            "evaluations_per_reading": round(stats.evaluations / fed, 2),
            "ticks": ticks,
            "transitions": reading_transitions,
            "virtual_minutes": round((end_ms - T0) / 60_000, 1),
        },
        "ceiling": {
            "seconds": round(ceiling_s, 3),
            "readings_per_s": round(ceiling_per_s),
            "us_per_reading": round(ceiling_s / fed * 1e6, 2),
        },
        "ratio_to_ceiling": round(readings_per_s / ceiling_per_s, 4),
        "sequential": {
            "count": sequential_fed,
            "seconds": round(sequential_s, 3),
            "readings_per_s": round(sequential_fed / sequential_s),
            "us_per_reading": round(sequential_s / sequential_fed * 1e6, 2),
            "transitions": sequential_transitions,
            "ceiling_readings_per_s": round(sequential_fed / sequential_ceiling_s),
            "speedup": round(readings_per_s / (sequential_fed / sequential_s), 1),
        },
        "events": {
            "count": len(stream),
            "seconds": round(events_s, 3),
            "events_per_s": round(len(stream) / events_s) if events_s else None,
            "evaluations_per_event": round(
                (after.evaluations - stats.evaluations) / max(len(stream), 1), 2
            ),
            "ceiling_events_per_s": round(len(stream) / events_ceiling_s)
            if events_ceiling_s
            else None,
            "transitions": transitions - reading_transitions,
        },
        "state": {
            "active_alerts": after.active,
            "states": report.states,
            "snapshot_mib": round(len(blob) / 2**20, 2),
            "snapshot_s": round(snapshot_s, 4),
            "restore_s": round(restore_s, 4),
        },
        "peak_rss_mib": round(peak_rss_mib, 1),
        "machine": {
            **machine(),
            "busy_cores": system.busy_cores,
            "other_load_cores": system.others(seconds, 0.0),
        },
    }


def render(result: dict[str, Any]) -> str:
    """A plain-text summary of the results."""
    p, r, c, e, s, q = (
        result["params"],
        result["readings"],
        result["ceiling"],
        result["events"],
        result["state"],
        result["sequential"],
    )
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(p["rule_kinds"].items()))
    return "\n".join(
        [
            (
                f"rules_eval: {p['rules']} rules ({kinds}) over {p['devices']:,} devices "
                f"({p['reading_devices']:,} send readings, each every {p['virtual_period_s']:g} s "
                "of virtual time)"
            ),
            "",
            (
                f"{'':<26} {'count':>10} {'seconds':>8} {'per second':>11} {'µs each':>8} "
                f"{'evals each':>10}"
            ),
            (
                f"{'readings, batch engine':<26} {r['count']:>10,} {r['seconds']:>8.2f} "
                f"{r['readings_per_s']:>11,} {r['us_per_reading']:>8.2f} "
                f"{r['evaluations_per_reading']:>10.2f}"
            ),
            (
                f"{'readings, no-op (ceiling)':<26} {r['count']:>10,} {c['seconds']:>8.2f} "
                f"{c['readings_per_s']:>11,} {c['us_per_reading']:>8.2f}"
            ),
            (
                f"{'readings, sequential':<26} {q['count']:>10,} {q['seconds']:>8.2f} "
                f"{q['readings_per_s']:>11,} {q['us_per_reading']:>8.2f}"
            ),
            (
                f"{'events, engine':<26} {e['count']:>10,} {e['seconds']:>8.2f} "
                f"{e['events_per_s']:>11,} {'':>8} {e['evaluations_per_event']:>10.2f}"
            ),
            "",
            (
                f"ratio to the ceiling: {result['ratio_to_ceiling']:.3f}; transitions: "
                f"{r['transitions']:,} from readings and ticks, {e['transitions']:,} from events; "
                f"{r['virtual_minutes']:g} virtual minutes; batches of {p['batch']:,} readings"
            ),
            (
                f"batch engine {q['speedup']:g}x the sequential one (whose own no-op loop: "
                f"{q['ceiling_readings_per_s']:,} readings/s; {q['transitions']:,} transitions "
                f"on its {q['count']:,} readings); set_subjects {p['set_subjects_s']:.2f} s"
            ),
            (
                f"state: {s['states']:,} states, {s['active_alerts']:,} alerts active; snapshot "
                f"{s['snapshot_mib']:.1f} MiB in {s['snapshot_s'] * 1000:.1f} ms, restored in "
                f"{s['restore_s'] * 1000:.1f} ms"
            ),
            (
                f"peak RSS {result['peak_rss_mib']:.0f} MiB; setup (site, rules, streams) "
                f"{p['setup_s']:.1f} s"
            ),
            (
                f"machine: {result['machine']['busy_cores']:.2f} cores busy on average while "
                f"the engine ran, {result['machine']['other_load_cores']:.2f} of them by other "
                "processes"
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rules_eval", description=__doc__)
    parser.add_argument("--rules", type=int, default=500)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument(
        "--max-seconds", type=float, default=40.0, help="stop feeding readings after this long"
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="readings per batch")
    parser.add_argument(
        "--quick", action="store_true", help="50 rules, 500 devices, 20,000 readings (a smoke run)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON, not a table")
    args = parser.parse_args(argv)
    if args.quick:
        args.rules, args.devices, args.readings, args.events = 50, 500, 20_000, 2000
    result = run(
        rules=args.rules,
        devices=args.devices,
        readings=args.readings,
        max_seconds=args.max_seconds,
        events=args.events,
        batch=args.batch,
    )
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
