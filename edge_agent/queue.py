"""The outbound queue between drivers and the broker.

Every message gets its ``seq`` when it enters the queue and stays until the hub acknowledges it
end to end.  :class:`OutboundQueue` is the interface; :class:`MemoryQueue` keeps messages in
memory (lost on restart).  A durable implementation replaces it without touching the agent.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import time
from collections.abc import Callable
from typing import Protocol

from wire import Channel


class Priority(enum.IntEnum):
    """Lower sends first and is dropped last."""

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
    unsent: int
    oldest_created_ms: int | None
    dropped: dict[str, int]
    last_seq: int


class OutboundQueue(Protocol):
    """What the agent needs from a queue."""

    def append(
        self, channel: Channel, priority: Priority, build: Callable[[int], bytes], now_ms: int
    ) -> int:
        """Assign the next seq, build the payload with it, keep it; return the seq."""
        ...

    def take_unsent(self, limit: int) -> list[QueuedMessage]:
        """Up to ``limit`` unsent messages, highest priority first, oldest first within one.

        They count as sent from now on, until :meth:`resend_unacked`.
        """
        ...

    def ack(self, seq: int) -> int:
        """Forget every message up to ``seq``; return how many were removed."""
        ...

    def resend_unacked(self, min_age_ms: int | None = None) -> int:
        """Mark sent-but-unacknowledged messages unsent again (all, or those sent that long ago)."""
        ...

    def stats(self) -> QueueStats:
        """Depth, age and drop counters."""
        ...


class MemoryQueue:
    """An in-memory :class:`OutboundQueue` bounded by message count.

    ``seq`` starts from the wall clock in microseconds, so a restarted agent never reuses a seq
    the hub has seen (as long as the clock does not go back), even though the queue itself is
    lost on restart.
    """

    def __init__(self, max_messages: int = 100_000) -> None:
        self._max = max_messages
        self._messages: collections.OrderedDict[int, QueuedMessage] = collections.OrderedDict()
        self._unsent: dict[Priority, collections.deque[int]] = {
            p: collections.deque() for p in Priority
        }
        self._sent_at: dict[int, int] = {}
        self._next_seq = time.time_ns() // 1000
        self._dropped: collections.Counter[str] = collections.Counter()

    def append(
        self, channel: Channel, priority: Priority, build: Callable[[int], bytes], now_ms: int
    ) -> int:
        """Assign the next seq and keep the message."""
        if len(self._messages) >= self._max:
            self._drop_one(priority)
        seq = self._next_seq
        self._next_seq += 1
        self._messages[seq] = QueuedMessage(seq, channel, priority, build(seq), now_ms)
        self._unsent[priority].append(seq)
        return seq

    def _drop_one(self, incoming: Priority) -> None:
        # The oldest message of the lowest priority present goes first.
        for priority in sorted(Priority, reverse=True):
            if priority < incoming:
                break
            for seq, msg in self._messages.items():
                if msg.priority is priority:
                    del self._messages[seq]
                    self._sent_at.pop(seq, None)
                    self._dropped[priority.name.lower()] += 1
                    return
        self._dropped[incoming.name.lower()] += 1

    def take_unsent(self, limit: int) -> list[QueuedMessage]:
        """Unsent messages by priority, oldest first."""
        out: list[QueuedMessage] = []
        now = time.monotonic_ns() // 1_000_000
        for priority in Priority:
            pending = self._unsent[priority]
            while pending and len(out) < limit:
                seq = pending.popleft()
                msg = self._messages.get(seq)
                if msg is None:  # acknowledged or dropped meanwhile
                    continue
                self._sent_at[seq] = now
                out.append(msg)
        return out

    def ack(self, seq: int) -> int:
        """Forget messages up to ``seq``."""
        removed = 0
        while self._messages:
            first = next(iter(self._messages))
            if first > seq:
                break
            del self._messages[first]
            self._sent_at.pop(first, None)
            removed += 1
        return removed

    def resend_unacked(self, min_age_ms: int | None = None) -> int:
        """Put sent messages back in line, oldest first."""
        cutoff = None if min_age_ms is None else time.monotonic_ns() // 1_000_000 - min_age_ms
        again = sorted(seq for seq, at in self._sent_at.items() if cutoff is None or at <= cutoff)
        for seq in reversed(again):
            del self._sent_at[seq]
            self._unsent[self._messages[seq].priority].appendleft(seq)
        return len(again)

    def stats(self) -> QueueStats:
        """A snapshot for the health topic."""
        oldest = next(iter(self._messages.values())).created_ms if self._messages else None
        unsent = sum(len(d) for d in self._unsent.values())
        return QueueStats(
            depth=len(self._messages),
            unsent=unsent,
            oldest_created_ms=oldest,
            dropped=dict(self._dropped),
            last_seq=self._next_seq - 1,
        )
