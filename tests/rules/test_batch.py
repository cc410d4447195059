"""The batch engine, kind by kind, on the cases where batching could change the answer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from bench import rules_eval
from hub.registry import Registry, parse_site
from rules import AlertState, Engine, SnapshotError, Subject, Transition, parse_rules
from rules._reference import SequentialEngine
from rules._snapshot import ARRAYS_MAGIC, decode_arrays, encode_arrays
from rules.kinds import scope_masks

T0 = 1_767_585_600_000  # 2026-01-05 04:00 UTC
SEC = 1000
MIN = 60 * SEC
NAN = float("nan")

Row = tuple[int, int, dict[str, float]]  # (slot, ts, values)


def device(name: str, building: str = "3", kind: str = "env_sensor") -> Subject:
    labels = {
        "site": "s1",
        "device_kind": kind,
        "grid": "g7",
        "grid_name": "East Gate",
        "building": building,
        "floor": "2",
        "unit": "201",
        "place": f"Building {building}, floor 2, unit 201",
    }
    return Subject(name, labels)


def as_columns(
    rows: Sequence[Row], names: Sequence[str]
) -> tuple[
    np.ndarray[tuple[int], np.dtype[np.int32]],
    np.ndarray[tuple[int], np.dtype[np.int64]],
    dict[str, np.ndarray[tuple[int], np.dtype[np.float64]]],
]:
    slots = np.array([slot for slot, _, _ in rows], dtype=np.int32)
    ts = np.array([t for _, t, _ in rows], dtype=np.int64)
    fields = {n: np.array([v.get(n, NAN) for _, _, v in rows], dtype=np.float64) for n in names}
    return slots, ts, fields


def run(
    text: str, subjects: Sequence[Subject], batches: Sequence[Sequence[Row]], names: Sequence[str]
) -> list[list[Transition]]:
    """Each batch through the batch engine; asserts the sequential engine says the same."""
    rules = parse_rules(text, "test.yaml")
    reference, engine = SequentialEngine(rules), Engine(rules)
    engine.set_subjects(subjects)
    out = []
    for rows in batches:
        expected: list[Transition] = []
        for slot, ts, values in rows:
            # NaN is how a column says "no value": the sequential engine skips it likewise.
            ordered = {n: values[n] for n in names if n in values}
            expected += reference.on_reading(subjects[slot], ts, ordered)
        got = engine.on_batch(*as_columns(rows, names))
        assert got == expected
        out.append(got)
    assert engine.active() == reference.active()
    return out


def states(transitions: Sequence[Transition]) -> list[tuple[str, str, AlertState]]:
    return [(t.rule_id, t.device, t.state) for t in transitions]


HOT = """\
rules:
  - id: hot
    kind: threshold
    severity: critical
    message: "{value:.1f} at {place}"
    metric: temperature
    above: 57
    for: 30s
    clear_above: 50
"""


def test_a_for_timer_runs_across_batches_and_within_one() -> None:
    a, b = device("a"), device("b")
    out = run(
        HOT,
        [a, b],
        [
            [(0, T0, {"temperature": 60.0})],
            [(1, T0 + SEC, {"temperature": 61.0}), (0, T0 + 30 * SEC, {"temperature": 62.0})],
            # b: still pending, then held long enough, then in the band, in one batch.
            [
                (1, T0 + 20 * SEC, {"temperature": 62.0}),
                (1, T0 + 31 * SEC, {"temperature": 63.0}),
                (1, T0 + 40 * SEC, {"temperature": 55.0}),
                (1, T0 + 41 * SEC, {"temperature": 49.0}),
            ],
        ],
        ["temperature"],
    )
    assert [states(t) for t in out] == [
        [("hot", "a", AlertState.PENDING)],
        [("hot", "b", AlertState.PENDING), ("hot", "a", AlertState.FIRING)],
        # 55 is under the threshold but not in the clear band: no flapping.
        [("hot", "b", AlertState.FIRING), ("hot", "b", AlertState.RESOLVED)],
    ]
    assert out[1][1].since_ms == T0
    assert out[2][1].ts_ms == T0 + 41 * SEC


def test_a_pending_alert_that_goes_away_is_cancelled_and_a_late_reading_is_ignored() -> None:
    a = device("a")
    out = run(
        HOT,
        [a],
        [
            [(0, T0, {"temperature": 60.0}), (0, T0 - SEC, {"temperature": 20.0})],
            [(0, T0 + SEC, {"temperature": 20.0})],
        ],
        ["temperature"],
    )
    assert [states(t) for t in out] == [
        [("hot", "a", AlertState.PENDING)],
        [("hot", "a", AlertState.CANCELLED)],
    ]


def test_nan_means_no_value_but_the_reading_still_counts_as_a_sign_of_life() -> None:
    text = (
        HOT
        + """\
  - id: silent
    kind: absence
    severity: minor
    message: "{device} silent at {place}"
    for: 10m
"""
    )
    a, b = device("a"), device("b")
    rules = parse_rules(text, "test.yaml")
    engine = Engine(rules)
    engine.set_subjects([a, b])
    engine.on_batch(*as_columns([(0, T0, {"temperature": 20.0}), (1, T0, {})], ["temperature"]))
    assert states(engine.tick(T0 + 10 * MIN)) == [
        ("silent", "a", AlertState.FIRING),
        ("silent", "b", AlertState.FIRING),
    ]
    # b's reading has only NaN: no threshold meets it, but b is alive again.
    out = run(
        text,
        [a, b],
        [
            [(0, T0, {"temperature": 20.0}), (1, T0, {"temperature": 1.0})],
            [(1, T0 + 20 * MIN, {}), (0, T0 + 20 * MIN, {"temperature": 60.0})],
        ],
        ["temperature"],
    )
    # Without a tick the silences ran out unseen: each reading reports its gap, then life.
    assert states(out[1]) == [
        ("silent", "b", AlertState.FIRING),
        ("silent", "b", AlertState.RESOLVED),
        ("hot", "a", AlertState.PENDING),
        ("silent", "a", AlertState.FIRING),
        ("silent", "a", AlertState.RESOLVED),
    ]

    # A reading with only NaN: no value, but the device is alive.
    only_nan = as_columns([(1, T0 + 11 * MIN, {"temperature": NAN})], ["temperature"])
    assert states(engine.on_batch(*only_nan)) == [("silent", "b", AlertState.RESOLVED)]


RATE_AND_ANOMALY = """\
rules:
  - id: heat-rising
    kind: rate_of_change
    severity: major
    message: "{rate:.1f}/min at {place}"
    metric: temperature
    max_per_minute: 3
    direction: rise
    window: 2m
  - id: unusual
    kind: anomaly
    severity: minor
    message: "{value} at {place}, normally {mean:.3f} (z {zscore:.3f})"
    metric: humidity
    warmup: 5
    z: 3
    min_std: 0.5
  - id: stuck
    kind: flat_line
    severity: warning
    message: "{metric} stuck at {value} for {stuck_min:.1f} min at {place}"
    metric: humidity
    for: 3m
"""


@pytest.mark.parametrize("size", [1, 3, 8, 40])
def test_windows_baselines_and_flat_lines_see_a_device_several_times_in_a_batch(
    size: int,
) -> None:
    a, b = device("a"), device("b")
    rows: list[Row] = []
    for minute in range(40):
        temperature = 20.0 + (5.0 * (minute - 10) if 10 <= minute < 16 else 0.0)
        humidity = 50.0 if 20 <= minute < 30 else 50.0 + minute % 3 + (30 if minute == 12 else 0)
        rows.append((0, T0 + minute * MIN, {"temperature": temperature, "humidity": humidity}))
        rows.append((1, T0 + minute * MIN + 5 * SEC, {"humidity": 50.0 + minute % 2}))
        if minute % 7 == 0:  # a duplicate timestamp: no rate out of nothing
            rows.append((0, T0 + minute * MIN, {"temperature": temperature}))
    batches = [rows[i : i + size] for i in range(0, len(rows), size)]
    out = run(RATE_AND_ANOMALY, [a, b], batches, ["humidity", "temperature"])
    fired = {(t.rule_id, t.state) for batch in out for t in batch}
    assert fired >= {
        ("heat-rising", AlertState.FIRING),
        ("heat-rising", AlertState.RESOLVED),
        ("unusual", AlertState.FIRING),
        ("unusual", AlertState.RESOLVED),
        ("stuck", AlertState.FIRING),
        ("stuck", AlertState.RESOLVED),
    }


def test_the_order_of_a_batch_is_by_reading_then_by_column_then_by_rule() -> None:
    text = HOT.replace("for: 30s", "for: 0s") + RATE_AND_ANOMALY.removeprefix("rules:\n")
    a, b = device("a"), device("b")
    rules = parse_rules(text, "test.yaml")
    engine = Engine(rules)
    engine.set_subjects([a, b])
    for i in range(6):
        engine.on_batch(
            *as_columns(
                [
                    (s, T0 + i * MIN, {"temperature": 20.0, "humidity": 50.0 + i % 2})
                    for s in (0, 1)
                ],
                ["temperature", "humidity"],
            )
        )
    rows: list[Row] = [
        (1, T0 + 6 * MIN, {"temperature": 60.0, "humidity": 90.0}),
        (0, T0 + 6 * MIN, {"temperature": 60.0, "humidity": 90.0}),
    ]
    # Humidity first in this batch: its rules come first for each reading.
    got = engine.on_batch(*as_columns(rows, ["humidity", "temperature"]))
    assert states(got) == [
        ("unusual", "b", AlertState.FIRING),
        ("hot", "b", AlertState.FIRING),
        ("heat-rising", "b", AlertState.FIRING),
        ("unusual", "a", AlertState.FIRING),
        ("hot", "a", AlertState.FIRING),
        ("heat-rising", "a", AlertState.FIRING),
    ]


SCOPED = """\
rules:
  - id: hot-in-3
    kind: threshold
    severity: critical
    message: "{value:.1f} at {place}"
    metric: temperature
    above: 57
    scope: {buildings: [3]}
"""


def test_a_device_moved_out_of_scope_keeps_its_alert_aside_until_it_comes_back() -> None:
    rules = parse_rules(SCOPED, "test.yaml")
    engine = Engine(rules)
    engine.set_subjects([device("a", "3")])
    [firing] = engine.on_reading(engine.subjects[0], T0, {"temperature": 60.0})
    assert firing.state is AlertState.FIRING
    engine.set_subjects([device("a", "4")])
    assert engine.on_reading(engine.subjects[0], T0 + SEC, {"temperature": 20.0}) == []
    assert [a.rule_id for a in engine.active()] == ["hot-in-3"]
    engine.set_subjects([device("a", "3")])
    [resolved] = engine.on_reading(engine.subjects[0], T0 + 2 * SEC, {"temperature": 20.0})
    assert (resolved.state, resolved.since_ms) == (AlertState.RESOLVED, T0)


def test_a_restored_window_goes_on_from_where_it_was() -> None:
    rules = parse_rules(RATE_AND_ANOMALY, "test.yaml")
    a = device("a")
    reference, engine = SequentialEngine(rules), Engine(rules)
    engine.set_subjects([a])
    expected, got = [], []
    for minute in range(30):
        humidity = 50.0 + minute % 2 + (30.0 if minute == 13 else 0.0)
        values = {"temperature": 20.0 + max(0, minute - 20) * 4.0, "humidity": humidity}
        ts = T0 + minute * MIN
        expected += reference.on_reading(a, ts, values)
        got += engine.on_batch(*as_columns([(0, ts, values)], list(values)))
        if minute % 4 == 3:
            fresh = Engine(rules)
            fresh.set_subjects([a])
            fresh.restore(engine.snapshot())
            engine = fresh
    assert got == expected
    assert {t.rule_id for t in got} >= {"heat-rising", "unusual"}


def test_a_version_2_snapshot_restores_into_an_engine_that_has_not_seen_its_devices() -> None:
    rules = parse_rules(HOT, "test.yaml")
    engine = Engine(rules)
    engine.on_reading(device("a"), T0, {"temperature": 60.0})
    fresh = Engine(rules)
    report = fresh.restore(engine.snapshot())
    assert (report.states, report.dropped) == (1, 0)
    assert fresh.subjects == engine.subjects
    [firing] = fresh.on_reading(device("a"), T0 + 30 * SEC, {"temperature": 61.0})
    assert (firing.state, firing.since_ms) == (AlertState.FIRING, T0)


def damaged(blob: bytes, how: str) -> bytes:
    document, buffers = decode_arrays(blob)
    document.pop("buffers")
    copies = [b.copy() for b in buffers]
    [group] = document["groups"]
    if how == "device":
        copies[group["device"]][0] = 7
    elif how == "state":
        copies[group["columns"]["state"]][0] = 9
    elif how == "column":
        del group["columns"]["level"]
    return encode_arrays(document, copies)


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("device", "names a device the snapshot does not list"),
        ("state", "neither pending nor firing"),
        ("column", "has columns"),
        ("cut", "snapshot"),
        ("dtype", "expected [dtype, [shape], offset]"),
    ],
)
def test_a_damaged_version_2_snapshot_is_refused_and_the_engine_is_untouched(
    how: str, reason: str
) -> None:
    rules = parse_rules(HOT, "test.yaml")
    engine = Engine(rules)
    engine.on_reading(device("a"), T0, {"temperature": 60.0})
    blob = engine.snapshot()
    if how == "cut":
        bad = blob[: len(blob) - 4]
    elif how == "dtype":
        bad = blob.replace(b'"<i8"', b'"|O8"', 1)
    else:
        bad = damaged(blob, how)
    assert bad.startswith(ARRAYS_MAGIC)
    other = Engine(rules)
    other.on_reading(device("b"), T0, {"temperature": 61.0})
    before = other.active()
    with pytest.raises(SnapshotError, match="snapshot") as raised:
        other.restore(bad)
    assert reason in str(raised.value)
    assert other.active() == before


def test_the_sequential_engine_refuses_a_version_2_snapshot_clearly() -> None:
    rules = parse_rules(HOT, "test.yaml")
    engine = Engine(rules)
    engine.on_reading(device("a"), T0, {"temperature": 60.0})
    with pytest.raises(SnapshotError, match=r"version 2 \(arrays\) is read by rules.Engine"):
        SequentialEngine(rules).restore(engine.snapshot())


def test_columns_that_do_not_fit_are_refused() -> None:
    engine = Engine(parse_rules(HOT, "test.yaml"))
    engine.set_subjects([device("a")])
    slots, ts, fields = as_columns([(0, T0, {"temperature": 1.0})], ["temperature"])
    with pytest.raises(ValueError, match="one entry per reading"):
        engine.on_batch(slots, ts, {"temperature": np.zeros(2)})
    with pytest.raises(ValueError, match="slot with no subject"):
        engine.on_batch(slots + 1, ts, fields)
    with pytest.raises(ValueError, match="twice"):
        engine.set_subjects([device("a"), device("a")])


def test_scopes_matched_as_arrays_are_those_scope_matches_says() -> None:
    registry = Registry(parse_site(rules_eval.site_document(600)))
    buildings = sorted({d.building for d in registry.devices.values() if d.building})
    documents = rules_eval.rule_mix(200, grids=sorted(registry.grids), buildings=buildings)
    rules = list(parse_rules(rules_eval.rules_yaml(documents)))
    subjects = [Subject(d.id, d.labels) for d in registry.devices.values()]
    subjects[5] = Subject(subjects[5].device, {})  # no labels at all
    masks = scope_masks(rules, subjects)
    assert any(mask.any() and not mask.all() for mask in masks.values())
    for rule in rules:
        expected = [rule.scope.matches(s.device, s.labels) for s in subjects]
        assert masks[rule.id].tolist() == expected, rule.id


def test_a_reading_with_new_labels_moves_its_device_as_a_registry_reload_would() -> None:
    text = SCOPED + RATE_AND_ANOMALY.removeprefix("rules:\n")
    rules = parse_rules(text, "test.yaml")
    reference, engine = SequentialEngine(rules), Engine(rules)
    here, there = device("a", "3"), device("a", "4")
    expected: list[Transition] = []
    got: list[Transition] = []
    plan = [(here, 60.0), (here, 61.0), (there, 20.0), (there, 70.0), (here, 20.0), (here, 20.0)]
    for minute, (subject, temperature) in enumerate(plan):
        if minute and subject is not plan[minute - 1][0]:
            reference.forget_scopes()  # what the hub does on a reload; the batch engine sees it
        values = {"temperature": temperature, "humidity": 50.0}
        expected += reference.on_reading(subject, T0 + minute * MIN, values)
        got += engine.on_reading(subject, T0 + minute * MIN, values)
    assert got == expected
    assert states(got)[0] == ("hot-in-3", "a", AlertState.FIRING)
    assert ("hot-in-3", "a", AlertState.RESOLVED) in states(got)
    assert engine.active() == reference.active()
    assert engine.subjects == (here,)


def test_absence_states_travel_as_columns_and_damaged_ones_are_refused() -> None:
    text = """\
rules:
  - id: silent
    kind: absence
    severity: minor
    message: "{device} silent at {place}"
    for: 10m
"""
    rules = parse_rules(text, "test.yaml")
    engine = Engine(rules)
    engine.on_reading(device("a"), T0, {"temperature": 20.0})
    blob = engine.snapshot()
    document, buffers = decode_arrays(blob)
    assert document["states"]["silences"] == []
    fresh = Engine(rules)
    assert fresh.restore(blob).states == 1
    assert states(fresh.tick(T0 + 10 * MIN)) == [("silent", "a", AlertState.FIRING)]

    document.pop("buffers")
    copies = [b.copy() for b in buffers]
    copies[document["silences"]["columns"]["device"]][0] = 3
    other = Engine(rules)
    with pytest.raises(SnapshotError, match="names a device the snapshot does not list"):
        other.restore(encode_arrays(document, copies))
    assert other.tick(T0 + 10 * MIN) == []
