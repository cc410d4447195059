"""Alert state on disk: alerts, silences, flapping, the notification outbox, rule state.

A database of its own (``alerts.sqlite3``) on a thread of its own, so an alarm never waits
behind a large ingest flush.  Every change of the lifecycle and the deliveries it causes are
written in one transaction *before* anything is sent; a delivery is keyed by (alert,
transition, channel, recipient) and a key that exists is never sent again, so a restart or a
replayed transition cannot notify anyone twice.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from hub.db import Database
from hub.errors import StoreError
from hub.lifecycle import Alert, Dispatch, Flap, Outcome, Silence
from hub.store import AlertRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert (
    id TEXT PRIMARY KEY, rule_id TEXT NOT NULL, subject TEXT NOT NULL, status TEXT NOT NULL,
    severity TEXT NOT NULL, grid TEXT NOT NULL, started_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS alert_status ON alert (status);
CREATE INDEX IF NOT EXISTS alert_started ON alert (started_ms);
CREATE TABLE IF NOT EXISTS silence (id TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS flap (
    rule_id TEXT NOT NULL, subject TEXT NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (rule_id, subject));
CREATE TABLE IF NOT EXISTS dispatch (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    transition TEXT NOT NULL, urgent INTEGER NOT NULL, alerts BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS delivery (
    alert_id TEXT NOT NULL, transition TEXT NOT NULL, channel TEXT NOT NULL,
    recipient TEXT NOT NULL, dispatch_id INTEGER NOT NULL REFERENCES dispatch (id),
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
    next_try_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
    PRIMARY KEY (alert_id, transition, channel, recipient));
CREATE INDEX IF NOT EXISTS delivery_status ON delivery (status);
CREATE TABLE IF NOT EXISTS engine_state (
    id INTEGER PRIMARY KEY CHECK (id = 1), saved_ms INTEGER NOT NULL, blob BLOB NOT NULL);
"""

# A dispatch with nobody to name still goes to the broadcast channels (robots, webhooks).
NOBODY = "-"


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One send: a dispatch on one channel, to the recipients not yet sent to there."""

    dispatch_id: int
    channel: str
    kind: str
    transition: str
    urgent: bool
    alerts: tuple[AlertRecord, ...]
    recipients: tuple[str, ...]  # person ids (or NOBODY)
    attempts: int
    created_ms: int
    next_try_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A delivery as the operator sees it in ``anju alerts show``."""

    transition: str
    channel: str
    recipient: str
    status: str
    attempts: int
    last_error: str | None
    updated_ms: int


class AlertStore:
    """The alert lifecycle's SQLite file."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path, schema=_SCHEMA)
        self.path = path

    # -- writing ------------------------------------------------------------------------------

    async def commit(self, outcome: Outcome, channels: Sequence[str], now_ms: int) -> list[Job]:
        """Persist what changed and queue the outcome's dispatches on every channel.

        Returns the jobs to send now: deliveries whose key did not exist yet.
        """

        def _commit(conn: sqlite3.Connection) -> list[Job]:
            try:
                conn.execute("BEGIN IMMEDIATE")
                _write_state(conn, outcome)
                # Without a channel there is nothing to deliver, so nothing to queue.
                jobs = [
                    job
                    for dispatch in (outcome.dispatches if channels else ())
                    for job in _queue(conn, dispatch, channels, now_ms)
                ]
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"alert store {self.path}: {exc}") from exc
            return jobs

        return await self._db.call(_commit)

    async def mark(
        self, job: Job, *, status: str, error: str | None, next_try_ms: int, now_ms: int
    ) -> None:
        """Record an attempt's outcome for every recipient of ``job``."""

        def _mark(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE delivery SET status = ?, attempts = attempts + 1, last_error = ?, "
                "next_try_ms = ?, updated_ms = ? WHERE alert_id = ? AND transition = ? "
                "AND channel = ? AND recipient = ?",
                [
                    (status, error, next_try_ms, now_ms, a.id, job.transition, job.channel, r)
                    for a in job.alerts
                    for r in job.recipients
                ],
            )

        await self._db.call(_mark)

    async def save_engine(self, blob: bytes, now_ms: int) -> None:
        """Keep the rules engine's state (threshold timers, windows) for a restart."""

        def _save(conn: sqlite3.Connection) -> None:
            try:
                conn.execute("INSERT OR REPLACE INTO engine_state VALUES (1, ?, ?)", (now_ms, blob))
            except sqlite3.Error as exc:
                raise StoreError(f"alert store {self.path}: {exc}") from exc

        await self._db.call(_save)

    # -- reading ------------------------------------------------------------------------------

    def load_engine_sync(self) -> bytes | None:
        """The rules engine's saved state, if any."""
        row = self._db.call_sync(
            lambda conn: conn.execute("SELECT blob FROM engine_state WHERE id = 1").fetchone()
        )
        return bytes(row[0]) if row else None

    def load_state_sync(self) -> tuple[list[Alert], list[Silence], list[Flap]]:
        """Active alerts, live silences and flapping state, for a restart."""

        def _load(conn: sqlite3.Connection) -> tuple[list[Alert], list[Silence], list[Flap]]:
            alerts = [
                Alert.from_dict(orjson.loads(body))
                for (body,) in conn.execute(
                    "SELECT body FROM alert WHERE status != 'resolved' ORDER BY started_ms"
                )
            ]
            silences = [
                Silence.from_dict(orjson.loads(body))
                for (body,) in conn.execute("SELECT body FROM silence")
            ]
            flaps = [
                Flap.from_dict(orjson.loads(body))
                for (body,) in conn.execute("SELECT body FROM flap")
            ]
            return alerts, silences, flaps

        return self._db.call_sync(_load)

    def unsent_sync(self) -> list[Job]:
        """Deliveries queued or being retried when the hub stopped."""

        def _query(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                "SELECT d.dispatch_id, d.channel, d.recipient, d.attempts, d.next_try_ms, "
                "p.kind, p.transition, p.urgent, p.alerts, p.created_ms FROM delivery d "
                "JOIN dispatch p ON p.id = d.dispatch_id WHERE d.status IN ('queued', 'retrying') "
                "ORDER BY d.dispatch_id, d.channel"
            ).fetchall()
            grouped: dict[tuple[int, str], list[Any]] = {}
            for row in rows:
                grouped.setdefault((row[0], row[1]), []).append(row)
            jobs = []
            for (dispatch_id, channel), members in grouped.items():
                first = members[0]
                jobs.append(
                    Job(
                        dispatch_id=dispatch_id,
                        channel=channel,
                        kind=first[5],
                        transition=first[6],
                        urgent=bool(first[7]),
                        alerts=tuple(AlertRecord(**a) for a in orjson.loads(first[8])),
                        recipients=tuple(dict.fromkeys(m[2] for m in members)),
                        attempts=max(m[3] for m in members),
                        created_ms=first[9],
                        next_try_ms=min(m[4] for m in members),
                    )
                )
            return jobs

        return self._db.call_sync(_query)

    async def alerts(
        self, *, active_only: bool = False, grid: str | None = None, limit: int = 200
    ) -> list[Alert]:
        """Alerts, newest first."""
        where, args = ["1"], []
        if active_only:
            where.append("status != 'resolved'")
        if grid:
            where.append("grid = ?")
            args.append(grid)
        sql = (
            f"SELECT body FROM alert WHERE {' AND '.join(where)} "  # noqa: S608 - fixed fragments
            "ORDER BY started_ms DESC LIMIT ?"
        )

        def _query(conn: sqlite3.Connection) -> list[Alert]:
            return [
                Alert.from_dict(orjson.loads(body)) for (body,) in conn.execute(sql, (*args, limit))
            ]

        return await self._db.call(_query)

    async def alert(self, alert_ref: str) -> tuple[Alert, list[DeliveryRow]] | None:
        """One alert by id or unique prefix, with its deliveries."""

        def _query(conn: sqlite3.Connection) -> tuple[Alert, list[DeliveryRow]] | None:
            rows = conn.execute(
                "SELECT id, body FROM alert WHERE id LIKE ? || '%' LIMIT 2", (alert_ref,)
            ).fetchall()
            if len(rows) != 1:
                return None
            found_id, body = rows[0]
            deliveries = [
                DeliveryRow(*row)
                for row in conn.execute(
                    "SELECT transition, channel, recipient, status, attempts, last_error, "
                    "updated_ms FROM delivery WHERE alert_id = ? ORDER BY updated_ms, channel",
                    (found_id,),
                )
            ]
            return Alert.from_dict(orjson.loads(body)), deliveries

        return await self._db.call(_query)

    async def silences(self) -> list[Silence]:
        """Every silence, newest first."""

        def _query(conn: sqlite3.Connection) -> list[Silence]:
            return [
                Silence.from_dict(orjson.loads(body))
                for (body,) in conn.execute("SELECT body FROM silence ORDER BY rowid DESC")
            ]

        return await self._db.call(_query)

    async def delivery_counts(self) -> dict[str, int]:
        """Deliveries by status (failures are visible, not just logged)."""

        def _query(conn: sqlite3.Connection) -> dict[str, int]:
            return dict(conn.execute("SELECT status, count(*) FROM delivery GROUP BY status"))

        return await self._db.call(_query)

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def _write_state(conn: sqlite3.Connection, outcome: Outcome) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO alert VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                a.id,
                a.rule_id,
                a.subject,
                a.status.value,
                a.severity,
                a.labels.get("grid", ""),
                a.started_ms,
                a.updated_ms,
                a.to_json(),
            )
            for a in outcome.alerts.values()
        ],
    )
    conn.executemany(
        "INSERT OR REPLACE INTO silence VALUES (?, ?)",
        [(s.id, orjson.dumps(s.to_dict())) for s in outcome.silences.values()],
    )
    for (rule_id, subject), flap in outcome.flaps.items():
        if flap.flapping or flap.changes:
            conn.execute(
                "INSERT OR REPLACE INTO flap VALUES (?, ?, ?)",
                (rule_id, subject, orjson.dumps(flap.to_dict())),
            )
        else:
            conn.execute("DELETE FROM flap WHERE rule_id = ? AND subject = ?", (rule_id, subject))


def _queue(
    conn: sqlite3.Connection, dispatch: Dispatch, channels: Iterable[str], now_ms: int
) -> list[Job]:
    cursor = conn.execute(
        "INSERT INTO dispatch (created_ms, kind, transition, urgent, alerts) "
        "VALUES (?, ?, ?, ?, ?)",
        (
            now_ms,
            dispatch.kind,
            dispatch.transition,
            int(dispatch.urgent),
            orjson.dumps(dispatch.alerts),
        ),
    )
    dispatch_id = int(cursor.lastrowid or 0)

    def record(channel: str, recipient: str, status: str) -> bool:
        """Add the recipient's deliveries of this dispatch; whether any key was new."""
        new = 0
        for alert in dispatch.alerts:
            new += conn.execute(
                "INSERT OR IGNORE INTO delivery VALUES (?, ?, ?, ?, ?, ?, 0, NULL, ?, ?)",
                (
                    alert.id,
                    dispatch.transition,
                    channel,
                    recipient,
                    dispatch_id,
                    status,
                    now_ms,
                    now_ms,
                ),
            ).rowcount
        return new > 0

    jobs: list[Job] = []
    for channel in channels:
        fresh = [r for r in dispatch.recipients or (NOBODY,) if record(channel, r, "queued")]
        for recipient in dispatch.suppressed:
            record(channel, recipient, "rate-limited")
        if fresh:
            jobs.append(
                Job(
                    dispatch_id=dispatch_id,
                    channel=channel,
                    kind=dispatch.kind,
                    transition=dispatch.transition,
                    urgent=dispatch.urgent,
                    alerts=dispatch.alerts,
                    recipients=tuple(fresh),
                    attempts=0,
                    created_ms=now_ms,
                    next_try_ms=now_ms,
                )
            )
    return jobs
