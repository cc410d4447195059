"""Malformed and hostile payloads are quarantined with their reason; good traffic flows on."""

from __future__ import annotations

import orjson
import pytest

from hub.ingest import now_ms
from hub.store import Batch
from wire import MAX_READINGS_PER_BATCH

DATA = "anju/v1/s1/gw1/data"
EVENT = "anju/v1/s1/gw1/event"


def batch(seq: int, *, dev: str = "th1", ts: int | None = None, values=None, **extra) -> bytes:
    body = {
        "v": 1,
        "session": "sess",
        "seq": seq,
        "readings": [
            {
                "dev": dev,
                "ts": now_ms() + seq if ts is None else ts,  # one point per batch
                "values": values or {"temperature": 21.5},
            }
        ],
        **extra,
    }
    return orjson.dumps(body)


def event(seq: int, kind: str, data: dict[str, object], *, dev: str = "smoke1") -> bytes:
    return orjson.dumps(
        {
            "v": 1,
            "session": "sess",
            "seq": seq,
            "dev": dev,
            "ts": now_ms(),
            "kind": kind,
            "data": data,
        }
    )


def raw_batch(text: str) -> bytes:
    return text.encode()


HOSTILE: list[tuple[str, str, bytes, str]] = [
    # (case, topic, payload, expected quarantine field)
    ("truncated JSON", DATA, b'{"v": 1, "session": "s', "$"),
    ("not an object", DATA, b"[1, 2, 3]", "$"),
    ("empty payload", DATA, b"", "$"),
    ("invalid UTF-8", DATA, b'{"v": 1, "session": "\xff\xfe"}', "$"),
    (
        "NaN literal",
        DATA,
        raw_batch(
            '{"v":1,"session":"s","seq":5,"readings":[{"dev":"th1","ts":1700000000000,"values":{"temperature":NaN}}]}'
        ),
        "$",
    ),
    (
        "infinite number",
        DATA,
        raw_batch(
            '{"v":1,"session":"s","seq":5,"readings":[{"dev":"th1","ts":1700000000000,"values":{"temperature":1e999}}]}'
        ),
        "$",
    ),
    ("deeply nested", DATA, b"[" * 100_000 + b"]" * 100_000, "$"),
    ("huge payload", DATA, b'{"v":1,"pad":"' + b"x" * 600_000 + b'"}', "$"),
    (
        "wrong schema version",
        DATA,
        orjson.dumps({"v": 2, "session": "s", "seq": 5, "readings": []}),
        "v",
    ),
    ("missing schema version", DATA, orjson.dumps({"session": "s", "seq": 5, "readings": []}), "v"),
    (
        "seq as a string",
        DATA,
        orjson.dumps(
            {
                "v": 1,
                "session": "s",
                "seq": "5",
                "readings": [{"dev": "th1", "ts": 1_700_000_000_000, "values": {"t": 1.0}}],
            }
        ),
        "seq",
    ),
    ("negative seq", DATA, batch(-1), "seq"),
    (
        "empty batch",
        DATA,
        orjson.dumps({"v": 1, "session": "s", "seq": 5, "readings": []}),
        "readings",
    ),
    (
        "too many readings",
        DATA,
        orjson.dumps(
            {
                "v": 1,
                "session": "s",
                "seq": 5,
                "readings": [{"dev": "th1", "ts": 1_700_000_000_000, "values": {"t": 1.0}}]
                * (MAX_READINGS_PER_BATCH + 1),
            }
        ),
        "readings",
    ),
    ("unknown field", DATA, batch(5, sneaky=True), "sneaky"),
    ("bad value name", DATA, batch(5, values={"Temp!": 1.0}), "readings.0.values.Temp!"),
    (
        "string value",
        DATA,
        batch(5, values={"temperature": "21.5"}),
        "readings.0.values.temperature",
    ),
    (
        "boolean value",
        DATA,
        batch(5, values={"temperature": True}),
        "readings.0.values.temperature",
    ),
    ("timestamp before 2020", DATA, batch(5, ts=86_400_000), "readings.0.ts"),
    ("far-future timestamp", DATA, batch(5, ts=now_ms() + 86_400_000), "readings.0.ts"),
    ("unknown device", DATA, batch(5, dev="ghost"), "readings.0.dev"),
    ("device of another gateway", DATA, batch(5, dev="other"), "readings.0.dev"),
    ("unknown gateway", "anju/v1/s1/intruder/data", batch(5), "gateway"),
    ("unknown site", "anju/v1/elsewhere/gw1/data", batch(5), "site"),
    ("unknown channel", "anju/v1/s1/gw1/bogus", batch(5), "topic"),
    ("extra topic levels", "anju/v1/s1/gw1/data/more", batch(5), "topic"),
    (
        "downlink channel from a gateway",
        "anju/v1/s1/gw1/ack",
        orjson.dumps({"v": 1, "session": "s", "seq": 1}),
        "topic",
    ),
    ("unknown event kind", EVENT, event(5, "alarm.unicorn", {}), "kind"),
    (
        "event data of the wrong type",
        EVENT,
        event(5, "alarm.smoke", {"active": "yes"}),
        "data.active",
    ),
    (
        "raw card number in an event",
        EVENT,
        event(5, "door.access", {"credential": "12345678", "format": "wiegand26"}, dev="reader1"),
        "data.credential",
    ),
    (
        "event from an unknown device",
        EVENT,
        event(5, "alarm.smoke", {"active": True}, dev="ghost"),
        "dev",
    ),
]


# Quarantined messages of a known gateway on its data or event topic with a plain seq of 5.
ACKED_WHEN_QUARANTINED = {
    "far-future timestamp",
    "unknown device",
    "device of another gateway",
    "event from an unknown device",
    "unknown field",
    "bad value name",
    "string value",
    "boolean value",
    "timestamp before 2020",
    "empty batch",
    "too many readings",
    "wrong schema version",
    "missing schema version",
    "unknown event kind",
    "event data of the wrong type",
    "raw card number in an event",
}


@pytest.mark.parametrize(
    ("case", "topic", "payload", "field"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
async def test_hostile_payload_is_quarantined_and_good_traffic_continues(
    rig, case, topic, payload, field
):
    ingestor = rig.ingestor
    ingestor.handle(DATA, batch(1))
    ingestor.handle(topic, payload)
    ingestor.handle(DATA, batch(2, values={"temperature": 22.0}))
    await rig.flush()

    entries = await rig.store.quarantine()
    assert [e.field for e in entries] == [field], (
        f"{case}: {[(e.field, e.reason) for e in entries]}"
    )
    assert entries[0].reason
    assert entries[0].payload == payload[: 64 * 1024]
    # Both good batches around the bad one are stored and acknowledged.  A bad message of a known
    # gateway that carries a seq is durably quarantined, so it is acknowledged too, and the
    # gateway stops resending what can never pass.
    assert await rig.sink.count("reading") == 2
    acked = {seq for _, ack in rig.acks for seq in range(10) if ack.covers(seq)}
    assert acked == ({1, 2, 5} if case in ACKED_WHEN_QUARANTINED else {1, 2})
    assert ingestor.counters["quarantined"] == 1


def test_at_least_twenty_kinds_of_hostile_input():
    assert len(HOSTILE) >= 20


async def test_replayed_seq_is_quarantined_once_stored_and_acknowledged_again(rig):
    ingestor = rig.ingestor
    ingestor.handle(DATA, batch(7))
    await rig.flush()
    ingestor.handle(DATA, batch(7))
    await rig.flush()

    assert await rig.sink.count("reading") == 1
    entries = await rig.store.quarantine()
    assert [(e.field, e.reason) for e in entries] == [("seq", "duplicate seq 7")]
    assert ingestor.counters["duplicates"] == 1
    # The gateway evidently missed the first ack: it gets it again.
    assert [ack.ranges for _, ack in rig.acks] == [[[7, 7]], [[7, 7]]]


async def test_partially_bad_batch_keeps_the_good_readings(rig):
    body = {
        "v": 1,
        "session": "s",
        "seq": 3,
        "readings": [
            {"dev": "th1", "ts": now_ms(), "values": {"temperature": 20.0}},
            {"dev": "ghost", "ts": now_ms(), "values": {"temperature": 99.0}},
            {"dev": "smoke1", "ts": now_ms(), "values": {"smoke": 0.0}},
        ],
    }
    rig.ingestor.handle(DATA, orjson.dumps(body))
    await rig.flush()

    assert await rig.sink.count("reading") == 2
    entries = await rig.store.quarantine()
    assert len(entries) == 1
    assert entries[0].field == "readings.1.dev"
    assert entries[0].reason.startswith("1 of 3 readings rejected")
    assert rig.ingestor.counters["rejected_readings"] == 1
    assert rig.acks[-1][1].covers(3)
    assert [r[0] for r in rig.rules.readings] == ["th1", "smoke1"]


async def test_quarantine_is_bounded(rig, tmp_path):
    for seq in range(150):
        rig.ingestor.handle(DATA, b"not json %d" % seq)
    await rig.flush()
    await rig.store.commit_batch(Batch(created_ms=now_ms()), quarantine_keep=100)
    assert len(await rig.store.quarantine(limit=1000)) == 100
    assert rig.ingestor.counters["quarantined"] == 150


async def test_dedup_records_past_the_horizon_are_pruned(rig):
    rig.ingestor.handle(DATA, batch(11))
    await rig.flush()
    await rig.store.prune_seen(now_ms() - 60_000)  # within the horizon: kept
    assert rig.store.load_seen(per_gateway=10) == {"gw1": [11]}
    await rig.store.prune_seen(now_ms() + 60_000)  # past it: forgotten
    assert rig.store.load_seen(per_gateway=10) == {}


async def test_a_burst_of_small_messages_is_judged_message_by_message(rig):
    # Made columns together, yet each message keeps its own verdict: its own quarantine entry
    # with the index and reason of its first refused reading, its good readings stored.
    ts = now_ms()
    messages = [
        ("th1", {"temperature": 20.0}),
        ("ghost", {"temperature": 21.0}),
        ("smoke1", {"smoke": 0.0}),
        ("other", {"co2": 900.0}),  # a device of gw2, sent by gw1
        ("th1", {"humidity": 40.0, "temperature": 20.5}),
    ]
    for seq, (dev, values) in enumerate(messages, 1):
        rig.ingestor.handle(DATA, batch(seq, dev=dev, ts=ts + seq, values=values))
    rig.ingestor.handle(
        DATA,
        orjson.dumps(
            {
                "v": 1,
                "session": "s",
                "seq": 6,
                "readings": [
                    {"dev": "smoke1", "ts": ts + 6, "values": {"smoke": 1.0}},
                    {"dev": "th1", "ts": ts + 86_400_000, "values": {"temperature": 1.0}},
                ],
            }
        ),
    )
    await rig.flush()

    entries = sorted((e.field, e.reason) for e in await rig.store.quarantine())
    assert [field for field, _ in entries] == ["readings.0.dev", "readings.0.dev", "readings.1.ts"]
    assert any("unknown device 'ghost'" in reason for _, reason in entries)
    assert any("belongs to gateway 'gw2'" in reason for _, reason in entries)
    assert any(reason.startswith("1 of 2 readings rejected") for _, reason in entries)
    assert await rig.sink.count("reading") == 4
    assert rig.rules.readings == [
        ("th1", ts + 1, {"temperature": 20.0}),
        ("smoke1", ts + 3, {"smoke": 0.0}),
        ("th1", ts + 5, {"humidity": 40.0, "temperature": 20.5}),
        ("smoke1", ts + 6, {"smoke": 1.0}),
    ]
    assert rig.ingestor.latest.get(rig.ingestor.devices.slot_of["th1"]) == (
        ts + 5,
        {"temperature": 20.5, "humidity": 40.0},
    )
    assert sorted(s for _, ack in rig.acks for a, b in ack.ranges for s in range(a, b + 1)) == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
