"""The hub's own state in SQLite: registry, quarantine, events, alerts and gateway presence.

Kept behind this small repository layer so that PostgreSQL can replace SQLite where several
hub workers share state.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from hub.db import Database
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
CREATE TABLE IF NOT EXISTS alert (
    id TEXT PRIMARY KEY, rule_id TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL,
    severity TEXT NOT NULL, issue_class TEXT NOT NULL, summary TEXT NOT NULL,
    message TEXT NOT NULL, labels TEXT NOT NULL, value REAL,
    started_ms INTEGER NOT NULL, firing_ms INTEGER, resolved_ms INTEGER,
    updated_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS alert_state ON alert (state);
CREATE TABLE IF NOT EXISTS gateway_state (
    gateway TEXT PRIMARY KEY, online INTEGER NOT NULL, session TEXT, agent TEXT,
    config_hash TEXT, last_seen_ms INTEGER, skew_ms INTEGER, health TEXT);
CREATE TABLE IF NOT EXISTS notification (
    id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, transition TEXT NOT NULL,
    channel TEXT NOT NULL, recipient TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL, last_error TEXT, updated_ms INTEGER NOT NULL,
    UNIQUE (alert_id, transition, channel, recipient));
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


# A quarantined payload is kept whole up to this size; larger ones keep their head.
_MAX_KEPT_PAYLOAD = 64 * 1024


class HubStore:
    """Repository for the hub's state."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path, schema=STATE_SCHEMA)

    def save_registry(self, registry: Registry) -> None:
        """Store the registry (at start-up, before ingest begins)."""
        self._db.call_sync(lambda conn: save_registry(conn, registry))

    async def add_quarantine(self, entries: Sequence[QuarantineEntry], keep: int) -> None:
        """Keep rejected messages, trimming the oldest beyond ``keep`` rows."""
        rows = [
            (e.received_ms, e.topic, e.gateway, e.field, e.reason, e.payload[:_MAX_KEPT_PAYLOAD])
            for e in entries
        ]

        def _add(conn: sqlite3.Connection) -> None:
            with conn:
                conn.executemany(
                    "INSERT INTO quarantine (received_ms, topic, gateway, field, reason, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                conn.execute(
                    "DELETE FROM quarantine WHERE id <= (SELECT MAX(id) FROM quarantine) - ?",
                    (keep,),
                )

        await self._db.call(_add)

    async def quarantine(self, limit: int = 100) -> list[QuarantineEntry]:
        """The most recent quarantined messages, newest first."""

        def _query(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT received_ms, topic, gateway, field, reason, payload FROM quarantine "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()

        return [QuarantineEntry(*row) for row in await self._db.call(_query)]

    async def add_events(self, events: Sequence[StoredEvent]) -> None:
        """Store accepted events; a (gateway, seq) already stored is ignored."""
        rows = [
            (
                e.ts,
                e.received_ms,
                e.gateway,
                e.seq,
                e.device,
                e.kind,
                orjson.dumps(e.data).decode(),
                int(e.replay),
            )
            for e in events
        ]

        def _add(conn: sqlite3.Connection) -> None:
            with conn:
                conn.executemany(
                    "INSERT OR IGNORE INTO event "
                    "(ts, received_ms, gateway, seq, device, kind, data, replay) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )

        await self._db.call(_add)

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

    async def save_alert(self, alert: AlertRecord) -> None:
        """Insert or update an alert."""
        row = (
            alert.id,
            alert.rule_id,
            alert.device,
            alert.state,
            alert.severity,
            alert.issue_class,
            alert.summary,
            alert.message,
            orjson.dumps(alert.labels).decode(),
            alert.value,
            alert.started_ms,
            alert.firing_ms,
            alert.resolved_ms,
            alert.updated_ms,
        )

        def _save(conn: sqlite3.Connection) -> None:
            with conn:
                sql = f"INSERT OR REPLACE INTO alert VALUES ({_marks(len(row))})"  # noqa: S608
                conn.execute(sql, row)

        await self._db.call(_save)

    async def alerts(self, *, active_only: bool = False, limit: int = 500) -> list[AlertRecord]:
        """Alerts, newest first."""

        def _query(conn: sqlite3.Connection) -> list[Any]:
            where = "WHERE state != 'resolved'" if active_only else ""
            return conn.execute(
                f"SELECT * FROM alert {where} ORDER BY started_ms DESC LIMIT ?",  # noqa: S608
                (limit,),
            ).fetchall()

        rows = await self._db.call(_query)
        return [_alert_from_row(row) for row in rows]

    async def save_gateway_state(
        self,
        gateway: str,
        *,
        online: bool,
        session: str | None,
        agent: str | None,
        config_hash: str | None,
        last_seen_ms: int,
        skew_ms: int | None,
        health: dict[str, Any] | None,
    ) -> None:
        """Record a gateway's presence."""
        row = (
            gateway,
            int(online),
            session,
            agent,
            config_hash,
            last_seen_ms,
            skew_ms,
            None if health is None else orjson.dumps(health).decode(),
        )

        def _save(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute(
                    "INSERT OR REPLACE INTO gateway_state VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )

        await self._db.call(_save)

    async def record_notification(
        self,
        *,
        alert_id: str,
        transition: str,
        channel: str,
        recipient: str,
        status: str,
        attempts: int,
        last_error: str | None,
        now_ms: int,
    ) -> None:
        """Record a notification's outcome, keyed by (alert, transition, channel, recipient)."""
        row = (alert_id, transition, channel, recipient, status, attempts, last_error, now_ms)

        def _save(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute(
                    "INSERT INTO notification "
                    "(alert_id, transition, channel, recipient, status, attempts, last_error,"
                    " updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (alert_id, transition, channel, recipient) DO UPDATE SET "
                    "status = excluded.status, attempts = excluded.attempts, "
                    "last_error = excluded.last_error, updated_ms = excluded.updated_ms",
                    row,
                )

        await self._db.call(_save)

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _alert_from_row(row: Sequence[Any]) -> AlertRecord:
    (
        aid,
        rule,
        device,
        state,
        sev,
        cls,
        summary,
        message,
        labels,
        value,
        started,
        firing,
        resolved,
        updated,
    ) = row
    return AlertRecord(
        id=aid,
        rule_id=rule,
        device=device,
        state=state,
        severity=sev,
        issue_class=cls,
        summary=summary,
        message=message,
        labels=orjson.loads(labels),
        value=value,
        started_ms=started,
        firing_ms=firing,
        resolved_ms=resolved,
        updated_ms=updated,
    )
