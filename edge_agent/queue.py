"""The durable store-and-forward queue between drivers and the broker.

Every message gets its ``seq`` when it enters the queue and stays on the gateway's disk until
the hub acknowledges it end to end.  SQLite in WAL mode, with group commits (at most every
``commit_interval_s``) so an SD card is spared; life-safety events are committed at once.

Only committed messages are ever handed out for publishing.  A crash loses at most the last
uncommitted group, and those seqs never left the process, so reusing them after a restart is
harmless: no seq that anyone has seen is ever used twice.

When the byte budget is exceeded, the oldest telemetry goes first, then the oldest ordinary
events; a life-safety event is dropped only when nothing else is left.  Messages older than the
age budget are dropped the same way.  Every drop is counted by class, across restarts.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import heapq
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from wire import Ack, Channel

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, priority INTEGER NOT NULL,
    created_ms INTEGER NOT NULL, size INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

# Seen on a clock that moved this far away from the monotonic clock, age limits pause: a
# gateway whose clock jumps a week ahead must not throw its backlog away.
_CLOCK_JUMP_TOLERANCE_MS = 60_000


class Priority(enum.IntEnum):
    """Lower is sent first and dropped last."""

    LIFE_SAFETY = 0
    EVENT = 1
    TELEMETRY = 2


@dataclasses.dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One encoded message waiting for the hub's acknowledgement."""

    seq: int
    channel: Channel
    priority: Priority
    payload: bytes
    created_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class QueueStats:
    """A snapshot of the queue for the health topic."""

    depth: int
    bytes: int
    unsent: int
    uncommitted: int
    oldest_created_ms: int | None
    dropped: dict[str, int]
    last_seq: int


@dataclasses.dataclass(slots=True)
class _Meta:
    channel: Channel
    priority: Priority
    created_ms: int
    size: int
    committed: bool = False
    sent_at: float | None = None  # monotonic seconds


class DurableQueue:
    """The gateway's outbound queue, on disk."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        max_age_s: float = 7 * 86_400,
        commit_interval_s: float = 0.25,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._max_bytes = max_bytes
        self._max_age_ms = int(max_age_s * 1000)
        self._commit_interval = commit_interval_s
        self._wall_ms = wall_ms
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed message survives power loss, not only a crash of the agent.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._messages: dict[Priority, collections.OrderedDict[int, _Meta]] = {
            p: collections.OrderedDict() for p in Priority
        }
        self._unsent: dict[Priority, collections.deque[int]] = {
            p: collections.deque() for p in Priority
        }
        self._uncommitted: list[int] = []
        self._in_transaction = False
        self._last_commit = time.monotonic()
        self._bytes = 0
        self._wall_start = wall_ms()
        self._mono_start = time.monotonic()
        self.dropped: collections.Counter[str] = collections.Counter()
        self._load()

    def _load(self) -> None:
        rows = self._conn.execute(
            "SELECT seq, channel, priority, created_ms, size FROM message ORDER BY seq"
        )
        for seq, channel, priority, created_ms, size in rows:
            meta = _Meta(Channel(channel), Priority(priority), created_ms, size, committed=True)
            self._messages[meta.priority][seq] = meta
            self._unsent[meta.priority].append(seq)
            self._bytes += size
        for name, value in self._conn.execute("SELECT name, value FROM counter"):
            self.dropped[name] = value
        row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'message'")
        found = row.fetchone()
        self._last_seq = int(found[0]) if found else 0
        if self.depth:
            logger.info("queue %s holds %d messages from before the restart", self.path, self.depth)

    # -- writing ---------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Messages held (committed or not)."""
        return sum(len(m) for m in self._messages.values())

    @property
    def last_seq(self) -> int:
        """The newest seq handed out."""
        return self._last_seq

    def append(
        self, channel: Channel, priority: Priority, build: Callable[[int], bytes], now_ms: int
    ) -> int:
        """Assign the next seq, build the payload with it, and store it.

        Life-safety messages are committed before this returns; others within the group
        commit interval (see :meth:`maybe_commit`).
        """
        seq = self._last_seq + 1
        payload = build(seq)
        self._begin()
        self._conn.execute(
            "INSERT INTO message (seq, channel, priority, created_ms, size, payload) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (seq, channel.value, int(priority), now_ms, len(payload), payload),
        )
        self._last_seq = seq
        self._messages[priority][seq] = _Meta(channel, priority, now_ms, len(payload))
        self._uncommitted.append(seq)
        self._bytes += len(payload)
        self._enforce_bytes()
        if priority is Priority.LIFE_SAFETY:
            self.commit()
        return seq

    def maybe_commit(self) -> bool:
        """Commit if the group commit interval has passed; return whether anything was."""
        if self._in_transaction and time.monotonic() - self._last_commit >= self._commit_interval:
            self.commit()
            return True
        return False

    def commit(self) -> None:
        """Make every appended message durable and available for sending."""
        if self._in_transaction:
            self._conn.execute("COMMIT")
            self._in_transaction = False
        self._last_commit = time.monotonic()
        for seq in self._uncommitted:
            meta = self._find(seq)
            if meta is not None:
                meta.committed = True
                self._unsent[meta.priority].append(seq)
        self._uncommitted.clear()

    def _begin(self) -> None:
        if not self._in_transaction:
            self._conn.execute("BEGIN")
            self._in_transaction = True

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        # Deletes and counters join the group transaction: one fsync per group, not per row.
        # A delete lost in a crash only brings back a message the hub will deduplicate.
        self._begin()
        self._conn.execute(sql, args)

    def _find(self, seq: int) -> _Meta | None:
        for messages in self._messages.values():
            meta = messages.get(seq)
            if meta is not None:
                return meta
        return None

    # -- budgets ---------------------------------------------------------------------------

    def _enforce_bytes(self) -> None:
        while self._bytes > self._max_bytes and self.depth > 1:
            self._drop_oldest(reason="bytes")

    def _drop_oldest(self, *, reason: str, only: Priority | None = None) -> bool:
        for priority in sorted(Priority, reverse=True):
            if only is not None and priority is not only:
                continue
            messages = self._messages[priority]
            if messages:
                seq, meta = next(iter(messages.items()))
                self._remove(seq, meta)
                self._count_drop(priority, reason)
                return True
        return False

    def _remove(self, seq: int, meta: _Meta) -> None:
        del self._messages[meta.priority][seq]
        self._bytes -= meta.size
        self._write("DELETE FROM message WHERE seq = ?", (seq,))

    def _count_drop(self, priority: Priority, reason: str) -> None:
        name = f"{priority.name.lower()}"
        self.dropped[name] += 1
        self._write(
            "INSERT INTO counter VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET value = value + 1",
            (name,),
        )
        logger.warning("queue full (%s): dropped the oldest %s message", reason, name)

    def expire(self) -> int:
        """Drop telemetry and ordinary events older than the age budget; return how many."""
        now = self._wall_ms()
        drift = (now - self._wall_start) - (time.monotonic() - self._mono_start) * 1000
        if abs(drift) > _CLOCK_JUMP_TOLERANCE_MS:
            return 0  # the wall clock jumped: ages are not trustworthy now
        cutoff = now - self._max_age_ms
        dropped = 0
        for priority in (Priority.TELEMETRY, Priority.EVENT):
            messages = self._messages[priority]
            while messages:
                seq, meta = next(iter(messages.items()))
                if meta.created_ms >= cutoff:
                    break
                self._remove(seq, meta)
                self._count_drop(priority, "age")
                dropped += 1
        return dropped

    # -- sending ---------------------------------------------------------------------------

    def _load_payloads(self, seqs: list[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT seq, payload FROM message WHERE seq IN ({marks})",  # noqa: S608
                chunk,
            )
            found.update((int(seq), bytes(payload)) for seq, payload in rows)
        return found

    def _hand_out(self, seqs: list[int]) -> list[QueuedMessage]:
        payloads = self._load_payloads(seqs)
        now = time.monotonic()
        out = []
        for seq in seqs:
            meta = self._find(seq)
            if meta is None or seq not in payloads:
                continue
            meta.sent_at = now
            out.append(
                QueuedMessage(seq, meta.channel, meta.priority, payloads[seq], meta.created_ms)
            )
        return out

    def _head(self, priority: Priority) -> int | None:
        """The oldest unsent seq of a priority, dropping stale entries on the way."""
        pending = self._unsent[priority]
        while pending:
            meta = self._messages[priority].get(pending[0])
            if meta is not None and meta.sent_at is None:
                return pending[0]
            pending.popleft()
        return None

    def _pop_unsent(self, priority: Priority, *, newest: bool) -> int | None:
        pending = self._unsent[priority]
        while pending:
            seq = pending.pop() if newest else pending.popleft()
            meta = self._messages[priority].get(seq)
            if meta is not None and meta.sent_at is None:
                return seq
        return None

    def take_live(self, after_seq: int, limit: int) -> list[QueuedMessage]:
        """Unsent messages: every life-safety one first, then those newer than ``after_seq``.

        ``after_seq`` is the newest seq when the connection came up; anything older is the
        backlog and comes from :meth:`take_backlog` instead.
        """
        seqs: list[int] = []
        while len(seqs) < limit:
            seq = self._pop_unsent(Priority.LIFE_SAFETY, newest=False)
            if seq is None:
                break
            seqs.append(seq)
        for priority in (Priority.EVENT, Priority.TELEMETRY):
            pending = self._unsent[priority]
            live: list[int] = []
            while pending and pending[-1] > after_seq and len(seqs) + len(live) < limit:
                seq = self._pop_unsent(priority, newest=True)
                if seq is None:
                    break
                if seq <= after_seq:  # belongs to the backlog: put it back
                    pending.append(seq)
                    break
                live.append(seq)
            seqs.extend(reversed(live))
        return self._hand_out(seqs)

    def take_backlog(self, upto_seq: int, limit: int) -> list[QueuedMessage]:
        """Up to ``limit`` unsent messages with seq at most ``upto_seq``, oldest first."""
        seqs: list[int] = []
        while len(seqs) < limit:
            heads = [
                (head, priority)
                for priority in Priority
                if (head := self._head(priority)) is not None and head <= upto_seq
            ]
            if not heads:
                break
            seq, priority = min(heads)
            self._unsent[priority].popleft()
            seqs.append(seq)
        return self._hand_out(seqs)

    def backlog_size(self, upto_seq: int) -> int:
        """Unsent messages at or below ``upto_seq`` (replay progress)."""
        return sum(1 for pending in self._unsent.values() for seq in pending if seq <= upto_seq)

    def ack(self, ack: Ack) -> int:
        """Forget what the hub acknowledged; return how many messages that was."""
        removed = 0
        for priority in Priority:
            messages = self._messages[priority]
            for seq in [s for s in messages if ack.covers(s)]:
                self._remove(seq, messages[seq])
                removed += 1
        return removed

    def resend_unacked(self, min_age_s: float | None = None) -> int:
        """Offer sent-but-unacknowledged messages again (all, or those sent that long ago)."""
        now = time.monotonic()
        again = 0
        for priority, messages in self._messages.items():
            stale = [
                seq
                for seq, meta in messages.items()
                if meta.sent_at is not None
                and (min_age_s is None or now - meta.sent_at >= min_age_s)
            ]
            if not stale:
                continue
            for seq in stale:
                messages[seq].sent_at = None
            # Back in line in seq order.  Each line must stay sorted: a resent live message
            # put ahead of a backlog still waiting would block that backlog (take_backlog
            # stops at the first seq beyond it, take_live at the first seq within it).
            self._unsent[priority] = collections.deque(heapq.merge(stale, self._unsent[priority]))
            again += len(stale)
        return again

    def oldest_unacked_sent_s(self) -> float | None:
        """How long ago the oldest unacknowledged message was sent (for the watchdog)."""
        sent = [m.sent_at for ms in self._messages.values() for m in ms.values() if m.sent_at]
        return time.monotonic() - min(sent) if sent else None

    def stats(self) -> QueueStats:
        """A snapshot for the health topic."""
        oldest = min(
            (next(iter(m.values())).created_ms for m in self._messages.values() if m),
            default=None,
        )
        unsent = sum(
            1
            for priority, pending in self._unsent.items()
            for seq in pending
            if seq in self._messages[priority]
        )
        return QueueStats(
            depth=self.depth,
            bytes=self._bytes,
            unsent=unsent,
            uncommitted=len(self._uncommitted),
            oldest_created_ms=oldest,
            dropped=dict(self.dropped),
            last_seq=self._last_seq,
        )

    def close(self) -> None:
        """Commit what is pending and close the file."""
        self.commit()
        self._conn.close()
