"""The durable store-and-forward queue between drivers and the broker.

Every message gets its ``seq`` when it enters the queue and stays on the gateway's disk until
the hub acknowledges it end to end.  SQLite in WAL mode with ``synchronous=FULL``, with group
commits (every ``commit_interval_s``) so an SD card is spared; life-safety events are committed
at once.  Between commits, appends, acknowledgements and drops touch memory only; a group is
written in one transaction (rows inserted, acknowledged seqs deleted as ranges), on a thread of
its own when :meth:`DurableQueue.commit_async` writes it, so the event loop never waits for an
fsync except for a life-safety event.

Only committed messages are ever handed out for publishing.  A crash loses at most the last
uncommitted group, and those seqs never left the process, so reusing them after a restart is
harmless: no seq that anyone has seen is ever used twice.

When the byte budget is exceeded, the oldest telemetry goes first, then the oldest ordinary
events; a life-safety event is dropped only when nothing else is left.  Messages older than the
age budget are dropped the same way.  Every drop is counted by class, across restarts.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import concurrent.futures
import dataclasses
import enum
import heapq
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
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


_Row = tuple[int, str, int, int, int, bytes]  # seq, channel, priority, created_ms, size, payload
# Page caches of the two connections: the queue reads back little, and a Pi has little memory.
_WRITER_CACHE_KIB = 256
_READER_CACHE_KIB = 128


@dataclasses.dataclass(slots=True)
class _Group:
    """What one transaction writes: new rows, deleted seq ranges, counter increments."""

    rows: list[_Row]
    deletes: list[tuple[int, int]]
    counters: dict[str, int]


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
        self._conn.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")
        self._conn.executescript(SCHEMA)
        # Payloads are read back on a connection of their own, so a read never waits for (or
        # joins) a group being written on the commit thread.
        self._reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._reader.execute(f"PRAGMA cache_size=-{_READER_CACHE_KIB}")
        self._reader.execute("PRAGMA query_only=ON")
        self._messages: dict[Priority, collections.OrderedDict[int, _Meta]] = {
            p: collections.OrderedDict() for p in Priority
        }
        self._unsent: dict[Priority, collections.deque[int]] = {
            p: collections.deque() for p in Priority
        }
        # Every seq held, in order: an acknowledged range is found by bisection.
        self._held: list[int] = []
        # Sent and not acknowledged, in the order they were sent (for resends and the watchdog).
        self._in_flight: collections.OrderedDict[int, float] = collections.OrderedDict()
        self._unsent_count = 0
        # The next group: rows not yet written, seq ranges to delete, counter increments.
        self._pending_rows: dict[int, _Row] = {}
        self._pending_deletes: list[tuple[int, int]] = []
        self._pending_counters: collections.Counter[str] = collections.Counter()
        # A group being written on the commit thread, and its future.
        self._writing: tuple[_Group, concurrent.futures.Future[None]] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._write_lock = threading.Lock()
        self._last_commit = time.monotonic()
        self._bytes = 0
        self._wall_start = wall_ms()
        self._mono_start = time.monotonic()
        self.dropped: collections.Counter[str] = collections.Counter()
        #: Called whenever the next group gains work, so a committer can wake up for it.
        self.on_pending: Callable[[], None] | None = None
        self._load()

    def _load(self) -> None:
        rows = self._conn.execute(
            "SELECT seq, channel, priority, created_ms, size FROM message ORDER BY seq"
        )
        for seq, channel, priority, created_ms, size in rows:
            meta = _Meta(Channel(channel), Priority(priority), created_ms, size, committed=True)
            self._messages[meta.priority][seq] = meta
            self._unsent[meta.priority].append(seq)
            self._held.append(seq)
            self._bytes += size
        self._unsent_count = len(self._held)
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
        return len(self._held)

    @property
    def last_seq(self) -> int:
        """The newest seq handed out."""
        return self._last_seq

    def append(
        self, channel: Channel, priority: Priority, build: Callable[[int], bytes], now_ms: int
    ) -> int:
        """Assign the next seq, build the payload with it, and store it.

        Life-safety messages are committed before this returns; others with the next group
        (see :meth:`commit_async` and :meth:`maybe_commit`).
        """
        seq = self._last_seq + 1
        payload = build(seq)
        self._pending_rows[seq] = (seq, channel.value, int(priority), now_ms, len(payload), payload)
        self._last_seq = seq
        self._messages[priority][seq] = _Meta(channel, priority, now_ms, len(payload))
        self._held.append(seq)
        self._bytes += len(payload)
        self._enforce_bytes()
        if priority is Priority.LIFE_SAFETY:
            self.commit()
        else:
            self._pending()
        return seq

    def _pending(self) -> None:
        if self.on_pending is not None:
            self.on_pending()

    @property
    def has_pending(self) -> bool:
        """Whether anything waits for the next group commit."""
        return bool(self._pending_rows or self._pending_deletes or self._pending_counters)

    def commit_wait_s(self) -> float:
        """How long the next group commit should wait: groups are at least an interval apart."""
        return max(0.0, self._last_commit + self._commit_interval - time.monotonic())

    def maybe_commit(self) -> bool:
        """Commit if the group commit interval has passed; return whether anything was."""
        if self.has_pending and time.monotonic() - self._last_commit >= self._commit_interval:
            self.commit()
            return True
        return False

    def commit(self) -> None:
        """Make every appended message durable and available for sending, before returning."""
        self._finish_writing()
        group = self._take_group()
        if group is not None:
            try:
                self._write(group)
            except BaseException:
                self._restore(group)
                raise
            self._mark_committed(group)
        self._last_commit = time.monotonic()

    async def commit_async(self) -> bool:
        """Write the next group on the commit thread; return whether there was one.

        The messages become available for sending once their transaction is committed.  If the
        caller is cancelled meanwhile, the write still completes, and :meth:`commit` or
        :meth:`close` takes it into account.
        """
        if self._writing is not None:
            await asyncio.wait([asyncio.wrap_future(self._writing[1])])
            self._finish_writing()
        group = self._take_group()
        if group is None:
            return False
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="queue-commit"
            )
        future = self._executor.submit(self._write, group)
        self._writing = (group, future)
        # A failed write is raised by _finish_writing, which also puts the group back.
        await asyncio.wait([asyncio.wrap_future(future)])
        self._finish_writing()
        self._last_commit = time.monotonic()
        return True

    def _finish_writing(self) -> None:
        """Wait for the group on the commit thread, then make it available (or put it back)."""
        writing, self._writing = self._writing, None
        if writing is None:
            return
        group, future = writing
        try:
            future.result()
        except BaseException:
            self._restore(group)
            raise
        self._mark_committed(group)

    def _take_group(self) -> _Group | None:
        if not self.has_pending:
            return None
        group = _Group(
            list(self._pending_rows.values()),
            _merge_ranges(self._pending_deletes),
            dict(self._pending_counters),
        )
        self._pending_rows = {}
        self._pending_deletes = []
        self._pending_counters = collections.Counter()
        return group

    def _write(self, group: _Group) -> None:
        """One transaction; rows go in before deletes, so a row dropped meanwhile goes too."""
        with self._write_lock:
            conn = self._conn
            conn.execute("BEGIN")
            try:
                if group.rows:
                    conn.executemany(
                        "INSERT INTO message (seq, channel, priority, created_ms, size, payload) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        group.rows,
                    )
                if group.deletes:
                    conn.executemany("DELETE FROM message WHERE seq BETWEEN ? AND ?", group.deletes)
                if group.counters:
                    conn.executemany(
                        "INSERT INTO counter VALUES (?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                        list(group.counters.items()),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _restore(self, group: _Group) -> None:
        """Put back a group whose transaction failed, for the next commit to try again."""
        for row in group.rows:
            if self._find(row[0]) is not None:
                self._pending_rows.setdefault(row[0], row)
        self._pending_deletes.extend(group.deletes)
        self._pending_counters.update(group.counters)

    def _mark_committed(self, group: _Group) -> None:
        committed: dict[Priority, list[int]] = {}
        for row in group.rows:
            meta = self._find(row[0])
            if meta is not None and not meta.committed:
                meta.committed = True
                committed.setdefault(meta.priority, []).append(row[0])
        for priority, seqs in committed.items():
            self._unsent_count += len(seqs)
            pending = self._unsent[priority]
            if not pending or seqs[0] > pending[-1]:
                pending.extend(seqs)
            else:
                # A life-safety commit overtook the group on the thread: keep each line sorted.
                self._unsent[priority] = collections.deque(heapq.merge(pending, seqs))

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

    def _forget(self, seq: int, meta: _Meta) -> bool:
        """Drop a message from memory; whether it was written (and so needs a DELETE)."""
        del self._messages[meta.priority][seq]
        self._bytes -= meta.size
        if meta.committed and meta.sent_at is None:
            self._unsent_count -= 1
        self._in_flight.pop(seq, None)
        # A row not written yet never reaches the disk; one being written is deleted after it.
        return self._pending_rows.pop(seq, None) is None

    def _remove(self, seq: int, meta: _Meta) -> None:
        index = bisect.bisect_left(self._held, seq)
        del self._held[index]
        if self._forget(seq, meta):
            # Deletes and counters join the next group: one fsync per group, not per row.  A
            # delete lost in a crash only brings back a message the hub will deduplicate.
            self._pending_deletes.append((seq, seq))
        self._pending()

    def _count_drop(self, priority: Priority, reason: str) -> None:
        name = f"{priority.name.lower()}"
        self.dropped[name] += 1
        self._pending_counters[name] += 1
        self._pending()
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
            rows = self._reader.execute(
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
            self._unsent_count -= 1
            self._in_flight[seq] = now
            self._in_flight.move_to_end(seq)
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
        """Unsent messages at or below ``upto_seq`` (replay progress; a scan, for health)."""
        return sum(
            1
            for priority, pending in self._unsent.items()
            for seq in pending
            if seq <= upto_seq
            and (meta := self._messages[priority].get(seq)) is not None
            and meta.sent_at is None
        )

    def has_backlog(self, upto_seq: int) -> bool:
        """Whether any unsent message is at or below ``upto_seq`` (cheap: looks at heads)."""
        return any(
            (head := self._head(priority)) is not None and head <= upto_seq for priority in Priority
        )

    def ack(self, ack: Ack) -> int:
        """Forget what the hub acknowledged; return how many messages that was.

        Each acknowledged range is found by bisection among the seqs held and deleted with one
        range DELETE, so an ack costs O(ranges x log(depth)) plus the messages it removes.
        """
        ranges: Iterable[list[int]] = ack.ranges if ack.ranges is not None else [[0, ack.seq]]
        held = self._held
        removed = 0
        for first, last in ranges:
            low = bisect.bisect_left(held, first)
            high = bisect.bisect_right(held, last)
            if low >= high:
                continue
            seqs = held[low:high]
            del held[low:high]
            written = [seq for seq in seqs if self._forget_held(seq)]
            if written:
                # Every row in the span is acknowledged: the seqs between held ones are gone.
                self._pending_deletes.append((written[0], written[-1]))
            removed += len(seqs)
        if removed:
            self._pending()
        return removed

    def _forget_held(self, seq: int) -> bool:
        meta = self._find(seq)
        return meta is not None and self._forget(seq, meta)

    def resend_unacked(self, min_age_s: float | None = None) -> int:
        """Offer sent-but-unacknowledged messages again (all, or those sent that long ago)."""
        now = time.monotonic()
        stale: dict[Priority, list[int]] = {}
        in_flight = self._in_flight
        while in_flight:
            seq, sent_at = next(iter(in_flight.items()))
            if min_age_s is not None and now - sent_at < min_age_s:
                break  # sent in order: the rest is younger
            del in_flight[seq]
            meta = self._find(seq)
            if meta is None:
                continue
            meta.sent_at = None
            stale.setdefault(meta.priority, []).append(seq)
        again = 0
        for priority, seqs in stale.items():
            seqs.sort()
            # Back in line in seq order.  Each line must stay sorted: a resent live message
            # put ahead of a backlog still waiting would block that backlog (take_backlog
            # stops at the first seq beyond it, take_live at the first seq within it).
            self._unsent[priority] = collections.deque(heapq.merge(seqs, self._unsent[priority]))
            again += len(seqs)
        self._unsent_count += again
        return again

    def oldest_unacked_sent_s(self) -> float | None:
        """How long ago the oldest unacknowledged message was sent (for the watchdog)."""
        if not self._in_flight:
            return None
        return time.monotonic() - next(iter(self._in_flight.values()))

    def stats(self) -> QueueStats:
        """A snapshot for the health topic, from counters kept as the queue changes."""
        oldest = min(
            (next(iter(m.values())).created_ms for m in self._messages.values() if m),
            default=None,
        )
        written = len(self._writing[0].rows) if self._writing is not None else 0
        return QueueStats(
            depth=self.depth,
            bytes=self._bytes,
            unsent=self._unsent_count,
            uncommitted=len(self._pending_rows) + written,
            oldest_created_ms=oldest,
            dropped=dict(self.dropped),
            last_seq=self._last_seq,
        )

    def close(self) -> None:
        """Commit what is pending and close the file."""
        try:
            self.commit()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            self._reader.close()
            self._conn.close()


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges: fewer DELETE statements for the same rows."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged
