"""The batch engine against the sequential one on the benchmark's synthetic community.

2,000 devices, 500 rules of every kind, about 100,000 readings with events and ticks between
batches.  The sequential engine gets every reading alone; the batch engine gets them as columns
in batches of varying sizes, some with a device several times, some readings without a value or
late.  Every transition must be the same, in the same order.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from bench import rules_eval
from hub.registry import Registry, parse_site
from rules import AlertState, Engine, RuleSet, Subject, Transition, parse_rules
from rules._reference import SequentialEngine

SEC = 1000
MIN = 60 * SEC
FAST_PERIOD_MS = 10 * SEC  # rates, `for` timers, anomalies
SLOW_PERIOD_MS = 15 * MIN  # flat lines and absences get their hours
# The metric conditions of the mix's correlations, and the alarm each goes with.
ALARMS = (
    ("temperature", 45, "alarm.smoke"),
    ("co2", 1500, "alarm.gas"),
    ("humidity", 90, "alarm.water_leak"),
)
Reading = tuple[Subject, int, dict[str, float]]


def community(devices: int) -> tuple[Registry, RuleSet]:
    registry = Registry(parse_site(rules_eval.site_document(devices), source="<test site>"))
    buildings = sorted({d.building for d in registry.devices.values() if d.building})
    documents = rules_eval.rule_mix(500, grids=sorted(registry.grids), buildings=buildings)
    return registry, parse_rules(rules_eval.rules_yaml(documents), "<test rules>")


def readings(registry: Registry, count: int, *, seed: int = 11) -> Iterator[Reading]:
    """Round-robin readings with stuck and silent devices, bursts, gaps and late ones."""
    rng = random.Random(seed)
    feeds = rules_eval.reading_feeds(registry)
    stuck = {f.subject.device for f in feeds if rng.random() < 0.02}
    silent = {f.subject.device for f in feeds if rng.random() < 0.03}
    fast = count // 3
    ts = rules_eval.T0
    k = 0
    while k < count:
        feed = feeds[k % len(feeds)]
        cycle = k // len(feeds)
        ts += (FAST_PERIOD_MS if k < fast else SLOW_PERIOD_MS) // len(feeds)
        k += 1
        if feed.subject.device in silent and 20 < cycle < 40:
            continue
        stuck_now = feed.subject.device in stuck and cycle < 50
        row = feed.rows[0 if stuck_now else cycle % rules_eval.CYCLE]
        values = dict(zip(feed.names, row, strict=True))
        pick = rng.random()
        if pick < 0.03 and len(values) > 1:
            del values[rng.choice(list(values))]  # a reading without one of its values
        elif pick < 0.035:
            values[feed.names[0]] = float("nan")
        elif pick < 0.04:
            values[feed.names[0]] = float("inf")
        yield feed.subject, ts, values
        if rng.random() < 0.01:  # a burst: the same device again, once or a few times
            for extra in range(rng.randint(1, 4)):
                yield feed.subject, ts + extra + 1, dict(values)
        if rng.random() < 0.005:  # late: older than what the device already sent
            yield feed.subject, ts - 30 * SEC, dict(values)


def columns(
    batch: Sequence[Reading], slot_of: dict[str, int]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], dict[str, np.ndarray[Any, Any]]]:
    names = sorted({name for _, _, values in batch for name in values})
    rng = random.Random(len(batch))
    rng.shuffle(names)  # the order of the columns is the batch's own
    fields = {name: np.full(len(batch), np.nan) for name in names}
    for i, (_, _, values) in enumerate(batch):
        for name, value in values.items():
            fields[name][i] = value
    slots = np.array([slot_of[s.device] for s, _, _ in batch], dtype=np.int32)
    ts = np.array([t for _, t, _ in batch], dtype=np.int64)
    return slots, ts, fields


def ordered(batch: Sequence[Reading], names: Sequence[str]) -> list[Reading]:
    """The readings with their values in the order of the batch's columns."""
    return [(s, t, {n: values[n] for n in names if n in values}) for s, t, values in batch]


def moved(subjects: Sequence[Subject], count: int) -> list[Subject]:
    """New subjects, ``count`` of them moved to another building."""
    out = []
    for i, subject in enumerate(subjects):
        labels = dict(subject.labels)
        if i % (len(subjects) // count) == 0 and labels.get("building"):
            labels["building"] = str(int(labels["building"]) % 50 + 1)
        out.append(Subject(subject.device, labels))
    return out


@pytest.mark.parametrize("seed", [1])
def test_batches_give_the_transitions_of_readings_one_by_one(seed: int) -> None:
    registry, ruleset = community(2000)
    rng = random.Random(seed)
    subjects = [Subject(d.id, d.labels) for d in registry.devices.values()]
    slot_of = {s.device: i for i, s in enumerate(subjects)}
    reference = SequentialEngine(ruleset)
    engine = Engine(ruleset)
    engine.set_subjects(subjects)
    stream = list(readings(registry, 100_000))
    events = rules_eval.event_stream(registry, 3000)
    current = {s.device: s for s in subjects}
    expected: list[Transition] = []
    got: list[Transition] = []
    sizes = [1, 2, 3, 17, 64, 500, 1500]
    i = 0
    chunks = 0
    before = engine.statistics()
    while i < len(stream):
        size = rng.choice(sizes)
        batch = [(current[s.device], t, v) for s, t, v in stream[i : i + size]]
        i += size
        chunks += 1
        now = batch[0][1] - 1
        expected += reference.tick(now)
        got += engine.tick(now)
        for _ in range(rng.choice([0, 0, 1, 3])):
            subject, kind, data = events[rng.randrange(len(events))]
            expected += reference.on_event(current[subject.device], now, kind, data)
            got += engine.on_event(current[subject.device], now, kind, data)
        for subject, _, values in batch:  # an alarm where it is hot: correlations fire
            for metric, level, kind in ALARMS:
                if values.get(metric, 0) > level and rng.random() < 0.5:
                    expected += reference.on_event(subject, now, kind, {"active": True})
                    got += engine.on_event(subject, now, kind, {"active": True})
        slots, ts, fields = columns(batch, slot_of)
        for subject, t, values in ordered(batch, list(fields)):
            expected += reference.on_reading(subject, t, values)
        got += engine.on_batch(slots, ts, fields)
        if chunks == 150:  # a hub restart: snapshot, fresh engine, same subjects
            blob = engine.snapshot()
            before = engine.statistics()
            engine = Engine(ruleset)
            engine.set_subjects(list(current.values()))
            engine.restore(blob)
        if chunks == 300:  # a registry reload: some devices moved to another building
            fresh = moved(list(current.values()), 40)
            current = {s.device: s for s in fresh}
            reference.forget_scopes()
            engine.set_subjects(fresh)
        assert got == expected, f"after chunk {chunks}"
    end = stream[-1][1] + 3 * 3600 * SEC
    expected += reference.tick(end)
    got += engine.tick(end)
    assert got == expected
    assert engine.active() == reference.active()
    # Counters are not in a snapshot: those of the engine before the restart are added.
    ours, theirs = engine.statistics(), reference.statistics()
    assert (
        ours.readings + before.readings,
        ours.evaluations + before.evaluations,
        ours.late + before.late,
        ours.active,
    ) == (theirs.readings, theirs.evaluations, theirs.late, theirs.active)
    # The run exercises what it claims to.
    seen = {(t.rule_id.rsplit("-", 1)[0], t.state) for t in expected}
    for kind in ("threshold", "rate-of-change", "flat-line", "absence", "anomaly"):
        assert (kind, AlertState.FIRING) in seen, kind
        assert (kind, AlertState.RESOLVED) in seen, kind
    assert ("threshold", AlertState.CANCELLED) in seen
    assert ("correlation", AlertState.FIRING) in seen
    assert ours.late > 0
    assert len(expected) > 1000
