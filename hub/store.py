"""The hub's own state in SQLite: registry, quarantine, events, spool and gateway presence.

Kept behind this small repository layer so that PostgreSQL can replace SQLite where several
hub workers share state.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from hub.db import Database, transaction
from hub.errors import StoreError
from hub.registry import Registry, save_registry

logger = logging.getLogger(__name__)

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
CREATE TABLE IF NOT EXISTS spool_message (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_ms INTEGER NOT NULL, channel TEXT NOT NULL,
    gateway TEXT NOT NULL, points INTEGER NOT NULL, payload BLOB NOT NULL, rejected BLOB);
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


@dataclasses.dataclass(frozen=True, slots=True)
class SpoolRow:
    """One spooled message, as received."""

    channel: str
    gateway: str
    points: int
    payload: bytes
    rejected: bytes | None  # int32 indices of the readings that were not accepted


@dataclasses.dataclass(slots=True)
class Batch:
    """Everything one flush makes durable together."""

    created_ms: int
    quarantine: list[QuarantineEntry] = dataclasses.field(default_factory=list)
    events: list[StoredEvent] = dataclasses.field(default_factory=list)
    seen: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)
    gateway_states: list[GatewayRecord] = dataclasses.field(default_factory=list)
    spool: list[SpoolRow] = dataclasses.field(default_factory=list)


# A quarantined payload is kept whole up to this size; larger ones keep their head.
_MAX_KEPT_PAYLOAD = 64 * 1024


class HubStore:
    """Repository for the hub's state."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path, schema=STATE_SCHEMA)
        legacy = self._db.call_sync(_legacy_spool_rows)
        if legacy:
            logger.warning(
                "%d spooled batches of an older hub version are kept in table 'spool' and not "
                "forwarded; export them by hand if they matter",
                legacy,
            )

    def save_registry(self, registry: Registry) -> None:
        """Store the registry (at start-up, before ingest begins)."""
        self._db.call_sync(lambda conn: save_registry(conn, registry))

    async def commit_batch(self, batch: Batch, *, quarantine_keep: int) -> int:
        """Make one flush durable in one transaction; return the last spool id it used.

        The batch's spool rows get consecutive ids ending at the returned one (this store is
        the only writer).

        Raises:
            StoreError: if the database cannot be written (a full disk, say); nothing of the
                batch is stored then, and nothing of it may be acknowledged.
        """
        quarantine = [
            (e.received_ms, e.topic, e.gateway, e.field, e.reason, e.payload[:_MAX_KEPT_PAYLOAD])
            for e in batch.quarantine
        ]
        events = [_event_row(e) for e in batch.events]

        spool = [
            (batch.created_ms, r.channel, r.gateway, r.points, r.payload, r.rejected)
            for r in batch.spool
        ]

        def _commit(conn: sqlite3.Connection) -> int:
            with transaction(conn):
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
                if spool:
                    conn.executemany(
                        "INSERT INTO spool_message (created_ms, channel, gateway, points,"
                        " payload, rejected) VALUES (?, ?, ?, ?, ?, ?)",
                        spool,
                    )
                return _last_spool_id(conn)

        try:
            return await self._db.call(_commit)
        except sqlite3.Error as exc:
            raise StoreError(f"hub store write failed: {exc}") from exc

    async def spooled_ids(self, after_id: int, limit: int) -> list[int]:
        """Ids of spooled messages after ``after_id``, oldest first."""

        def _query(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT id FROM spool_message WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()

        return [int(i) for (i,) in await self._db.call(_query)]

    async def spooled_rows(self, ids: list[int]) -> dict[int, SpoolRow]:
        """The spooled messages of ``ids`` (read back only after a restart)."""
        wanted = set(ids)

        def _query(conn: sqlite3.Connection) -> list[Any]:
            # The ids come from one range of the spool: read the range, keep those asked for.
            return conn.execute(
                "SELECT id, channel, gateway, points, payload, rejected FROM spool_message "
                "WHERE id BETWEEN ? AND ?",
                (min(ids), max(ids)),
            ).fetchall()

        return {
            int(i): SpoolRow(channel, gateway, int(n), bytes(payload), rejected)
            for i, channel, gateway, n, payload, rejected in await self._db.call(_query)
            if i in wanted
        }

    async def unspool_through(self, spool_id: int) -> None:
        """Forget every message up to ``spool_id``: the time-series store has them."""

        def _delete(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute("DELETE FROM spool_message WHERE id <= ?", (spool_id,))

        await self._db.call(_delete)

    def spool_depth_sync(self) -> tuple[int, int]:
        """Batches and points waiting in the spool (at start-up)."""
        row = self._db.call_sync(
            lambda conn: conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(points), 0) FROM spool_message"
            ).fetchone()
        )
        return int(row[0]), int(row[1])

    def spool_max_id_sync(self) -> int:
        """The newest spool id (at start-up)."""
        return self._db.call_sync(_last_spool_id)

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
            with transaction(conn):
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


def _last_spool_id(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'spool_message'), 0)"
    ).fetchone()
    return int(row[0])


def _legacy_spool_rows(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spool'"
    ).fetchone()
    return int(conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0]) if exists else 0


def _marks(count: int) -> str:
    return ", ".join("?" * count)
