"""The spool keeps each message as received; a hub that dies after spooling loses nothing.

A hub killed after its flush committed (spool, seen records) but before it acknowledged or
forwarded anything comes back with only its files: the new process decodes the spooled
payloads, forwards every accepted reading once, and the gateway's resends of the seqs it never
saw acknowledged are duplicates, not stored twice. The real-process variant (``kill -9`` of
``anju hub run`` mid-stream and mid-drain) is in ``tests/faults``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson

from hub import HubStore, Ingestor, Registry, SqliteSink, parse_site
from hub.columns import DeviceTable
from hub.ingest import RuleSink, now_ms
from hub.spool import Forwarder
from tests.hub.conftest import SITE
from wire import Ack

DATA = "anju/v1/s1/gw1/data"
HEALTH = "anju/v1/s1/gw1/health"
EVENT = "anju/v1/s1/gw1/event"


class Hub:
    """The ingest half of a hub on files in ``path``: what a restart starts from."""

    def __init__(self, path: Path) -> None:
        registry = Registry(parse_site(SITE))
        self.store = HubStore(path / "hub.sqlite3")
        self.sink = SqliteSink(path / "tsdb.sqlite3", retention_days=30)
        devices = DeviceTable(registry)
        self.forwarder = Forwarder(self.store, self.sink, devices)
        self.acks: list[int] = []
        self.alive = True  # False: the process is dead before its acknowledgements go out
        self.ingestor = Ingestor(
            registry=registry,
            devices=devices,
            store=self.store,
            forwarder=self.forwarder,
            rules=RuleSink(),
            publish_ack=self._publish,
        )

    def _publish(self, _gateway: str, ack: Ack) -> None:
        if self.alive:
            self.acks.extend(s for a, b in ack.ranges or [] for s in range(a, b + 1))

    async def drain(self) -> None:
        task = asyncio.create_task(self.forwarder.run())
        try:
            async with asyncio.timeout(10):
                await self.forwarder.wait_drained()
        finally:
            task.cancel()

    async def close(self) -> None:
        await self.sink.aclose()
        self.store.close()


def data(seq: int, base: int, *, dev: str = "th1") -> bytes:
    readings = [
        {
            "dev": dev if i else "ghost",
            "ts": base + seq * 100 + i,
            "values": {"temperature": 20.0 + i},
        }
        for i in range(10)
    ]
    return orjson.dumps({"v": 1, "session": "s", "seq": seq, "readings": readings})


def spool_rows(path: Path) -> list[tuple[str, bytes, bytes | None]]:
    with sqlite3.connect(path / "hub.sqlite3") as conn:
        return conn.execute(
            "SELECT channel, payload, rejected FROM spool_message ORDER BY id"
        ).fetchall()


async def test_spooled_messages_survive_a_crash_before_ack_and_forward(tmp_path: Path) -> None:
    base = now_ms() - 60_000
    messages = [data(seq, base) for seq in range(1, 6)]
    health = orjson.dumps(
        {"v": 1, "ts": base, "session": "s", "queue_depth": 4, "oldest_age_s": 1.5}
    )
    event = orjson.dumps(
        {
            "v": 1,
            "session": "s",
            "seq": 6,
            "dev": "smoke1",
            "ts": base,
            "kind": "alarm.smoke",
            "data": {"active": True},
        }
    )

    first = Hub(tmp_path)
    for payload in messages:
        first.ingestor.handle(DATA, payload)
    first.ingestor.handle(HEALTH, health)
    first.ingestor.handle(EVENT, event)
    first.alive = False
    await first.ingestor.flush()
    # Spooled as received: one row per message, its payload byte for byte, and which of its
    # readings were refused (the unknown device at index 0 of each batch).
    rows = spool_rows(tmp_path)
    assert [r[0] for r in rows] == ["data"] * 5 + ["health", "event"]
    assert [r[1] for r in rows[:5]] == messages
    assert all(r[2] == (0).to_bytes(4, "little") for r in rows[:5])
    assert first.acks == []
    await first.close()  # nothing forwarded, nothing acknowledged

    second = Hub(tmp_path)
    try:
        assert second.forwarder.depth_batches == 7
        await second.drain()
        assert await second.sink.count("reading") == 5 * 9
        assert await second.sink.count("event") == 1
        assert await second.sink.count("gateway") == 2  # queue_depth and oldest_age_s
        assert spool_rows(tmp_path) == []
        # The gateway never got its acks, so it sends everything again.
        for payload in messages:
            second.ingestor.handle(DATA, payload)
        second.ingestor.handle(EVENT, event)
        await second.ingestor.flush()
        await second.drain()
        assert second.ingestor.counters["duplicates"] == 6
        assert sorted(second.acks) == [1, 2, 3, 4, 5, 6]
        assert await second.sink.count("reading") == 5 * 9
        history = await second.sink.history("th1", "temperature", 0)
        assert len(history) == len(set(history)) == 45
    finally:
        await second.close()
