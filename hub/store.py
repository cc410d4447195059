"""The hub's own state in SQLite: registry, quarantine, events, spool and gateway presence.

Kept behind this small repository layer so that PostgreSQL can replace SQLite where several
hub workers share state.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from hub.db import Database
from hub.errors import StoreError
from hub.registry import Registry, save_registry

STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL, topic TEXT NOT NULL,
    gateway TEXT, field TEXT NOT NULL, reason TEXT NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS event (
    id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, received_ms INTEGER NOT NULL,
    gateway TEXT NOT NULL, seq INTEGER NOT NULL, device TEXT NOT NULL, kind TEXT NOT NULL,
    data TEXT NOT NULL, replay INTEGER NOT NULL, UNIQUE (gateway, seq));
CREATE INDEX IF NOT EXISTS event_device_ts ON event (device, ts);
CREATE TABLE IF NOT EXISTS gateway_state (
    gateway TEXT PRIMARY KEY, online INTEGER NOT NULL, session TEXT, agent TEXT,
    config_hash TEXT, last_seen_ms INTEGER, skew_ms INTEGER, health TEXT);
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_ms INTEGER NOT NULL, points INTEGER NOT NULL,
    body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS seen (
    gateway TEXT NOT NULL, seq INTEGER NOT NULL, received_ms INTEGER NOT NULL,
    PRIMARY KEY (gateway, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_received ON seen (received_ms);
"""


@dataclasses.dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """A rejected message (or part of one), kept for inspection."""

    received_ms: int
    topic: str
    gateway: str | None
    field: str
    reason: str
    payload: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEvent:
    """An accepted event."""

    ts: int
    received_ms: int
    gateway: str
    seq: int
    device: str
    kind: str
    data: dict[str, Any]
    replay: bool


@dataclasses.dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert (one firing period of one rule for one subject)."""

    id: str
    rule_id: str
    device: str
    state: str
    severity: str
    issue_class: str
    summary: str
    message: str
    labels: dict[str, str]
    value: float | None
    started_ms: int
    firing_ms: int | None
    resolved_ms: int | None
    updated_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayRecord:
    """A gateway's presence as last announced."""

    gateway: str
    online: bool
    session: str | None
    agent: str | None
    config_hash: str | None
    last_seen_ms: int
    skew_ms: int | None


@dataclasses.dataclass(slots=True)
class Batch:
    """Everything one flush makes durable together."""

    created_ms: int
    quarantine: list[QuarantineEntry] = dataclasses.field(default_factory=list)
    events: list[StoredEvent] = dataclasses.field(default_factory=list)
    seen: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)
    gateway_states: list[GatewayRecord] = dataclasses.field(default_factory=list)
    spool_body: bytes | None = None
    spool_points: int = 0


# A quarantined payload is kept whole up to this size; larger ones keep their head.
_MAX_KEPT_PAYLOAD = 64 * 1024


class HubStore:
    """Repository for the hub's state."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path, schema=STATE_SCHEMA)

    def save_registry(self, registry: Registry) -> None:
        """Store the registry (at start-up, before ingest begins)."""
        self._db.call_sync(lambda conn: save_registry(conn, registry))

    async def commit_batch(self, batch: Batch, *, quarantine_keep: int) -> int | None:
        """Make one flush durable in one transaction; return its spool id (None if no points).

        Raises:
            StoreError: if the database cannot be written (a full disk, say); nothing of the
                batch is stored then, and nothing of it may be acknowledged.
        """
        quarantine = [
            (e.received_ms, e.topic, e.gateway, e.field, e.reason, e.payload[:_MAX_KEPT_PAYLOAD])
            for e in batch.quarantine
        ]
        events = [_event_row(e) for e in batch.events]

        def _commit(conn: sqlite3.Connection) -> int | None:
            spool_id = None
            with conn:
                conn.executemany(
                    "INSERT INTO quarantine (received_ms, topic, gateway, field, reason,"
                    " payload) VALUES (?, ?, ?, ?, ?, ?)",
                    quarantine,
                )
                conn.execute(
                    "DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?",
                    (quarantine_keep,),
                )
                if events:
                    conn.executemany(
                        "INSERT OR IGNORE INTO event "
                        "(ts, received_ms, gateway, seq, device, kind, data, replay) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        events,
                    )
                if batch.seen:
                    conn.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)", batch.seen)
                conn.executemany(
                    "INSERT OR REPLACE INTO gateway_state VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                    [
                        (
                            g.gateway,
                            int(g.online),
                            g.session,
                            g.agent,
                            g.config_hash,
                            g.last_seen_ms,
                            g.skew_ms,
                        )
                        for g in batch.gateway_states
                    ],
                )
                if batch.spool_body is not None:
                    cursor = conn.execute(
                        "INSERT INTO spool (created_ms, points, body) VALUES (?, ?, ?)",
                        (batch.created_ms, batch.spool_points, batch.spool_body),
                    )
                    spool_id = cursor.lastrowid
            return spool_id

        try:
            return await self._db.call(_commit)
        except sqlite3.Error as exc:
            raise StoreError(f"hub store write failed: {exc}") from exc

    async def spooled(self, after_id: int, limit: int) -> list[tuple[int, int, bytes]]:
        """Spooled batches after ``after_id``, oldest first: ``(id, points, body)``."""

        def _query(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT id, points, body FROM spool WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()

        return [(int(i), int(n), bytes(b)) for i, n, b in await self._db.call(_query)]

    async def unspool(self, spool_id: int) -> None:
        """Forget a batch that the time-series store has accepted."""

        def _delete(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("DELETE FROM spool WHERE id = ?", (spool_id,))

        await self._db.call(_delete)

    def spool_depth_sync(self) -> tuple[int, int]:
        """Batches and points waiting in the spool (at start-up)."""
        row = self._db.call_sync(
            lambda conn: conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(points), 0) FROM spool"
            ).fetchone()
        )
        return int(row[0]), int(row[1])

    def spool_max_id_sync(self) -> int:
        """The newest spool id (at start-up)."""
        row = self._db.call_sync(
            lambda conn: conn.execute(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'spool'), 0)"
            ).fetchone()
        )
        return int(row[0])

    def load_seen(self, per_gateway: int) -> dict[str, list[int]]:
        """The newest accepted seqs of each gateway, oldest first (at start-up)."""

        def _query(conn: sqlite3.Connection) -> dict[str, list[int]]:
            gateways = [r[0] for r in conn.execute("SELECT DISTINCT gateway FROM seen")]
            out: dict[str, list[int]] = {}
            for gateway in gateways:
                rows = conn.execute(
                    "SELECT seq FROM seen WHERE gateway = ? ORDER BY seq DESC LIMIT ?",
                    (gateway, per_gateway),
                ).fetchall()
                out[gateway] = [int(r[0]) for r in reversed(rows)]
            return out

        return self._db.call_sync(_query)

    async def prune_seen(self, before_ms: int) -> None:
        """Forget dedup records older than ``before_ms``."""

        def _delete(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("DELETE FROM seen WHERE received_ms < ?", (before_ms,))

        await self._db.call(_delete)

    async def quarantine(self, limit: int = 100) -> list[QuarantineEntry]:
        """The most recent quarantined messages, newest first."""

        def _query(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT received_ms, topic, gateway, field, reason, payload FROM quarantine "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()

        return [QuarantineEntry(*row) for row in await self._db.call(_query)]

    async def events(self, limit: int = 100, kind: str | None = None) -> list[StoredEvent]:
        """The most recent events, newest first."""

        def _query(conn: sqlite3.Connection) -> list[Any]:
            sql = "SELECT ts, received_ms, gateway, seq, device, kind, data, replay FROM event"
            args: tuple[Any, ...] = ()
            if kind is not None:
                sql += " WHERE kind = ?"
                args = (kind,)
            return conn.execute(f"{sql} ORDER BY ts DESC LIMIT ?", (*args, limit)).fetchall()

        return [
            StoredEvent(ts, rec, gw, seq, dev, kind_, orjson.loads(data), bool(replay))
            for ts, rec, gw, seq, dev, kind_, data, replay in await self._db.call(_query)
        ]

    async def gateway_records(self) -> list[GatewayRecord]:
        """Every gateway's last announced presence."""

        def _query(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT gateway, online, session, agent, config_hash, last_seen_ms, skew_ms "
                "FROM gateway_state ORDER BY gateway"
            ).fetchall()

        return [
            GatewayRecord(gw, bool(online), session, agent, chash, seen, skew)
            for gw, online, session, agent, chash, seen, skew in await self._db.call(_query)
        ]

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _event_row(e: StoredEvent) -> tuple[Any, ...]:
    data = orjson.dumps(e.data).decode()
    return (e.ts, e.received_ms, e.gateway, e.seq, e.device, e.kind, data, int(e.replay))


def _marks(count: int) -> str:
    return ", ".join("?" * count)
