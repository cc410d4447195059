"""The durable queue: seqs, priorities, budgets, group commits and restarts, on a real file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import orjson
import pytest

from edge_agent import DurableQueue, Priority
from wire import Ack, Channel, seq_ranges


def put(queue: DurableQueue, priority: Priority, tag: str, size: int = 10) -> int:
    return queue.append(
        Channel.EVENT,
        priority,
        lambda seq: orjson.dumps({"seq": seq, "tag": tag, "pad": "x" * size}),
        0,
    )


def seqs_of(messages) -> list[int]:
    return [m.seq for m in messages]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "queue.sqlite3"


def test_seqs_increase_and_survive_a_restart_without_reuse(path):
    queue = DurableQueue(path)
    first = [put(queue, Priority.TELEMETRY, str(i)) for i in range(3)]
    queue.commit()
    queue.ack(Ack(session="s", seq=first[-1], ranges=seq_ranges(first)))
    queue.close()

    again = DurableQueue(path)
    assert put(again, Priority.TELEMETRY, "after restart") == first[-1] + 1
    again.close()


def test_unacknowledged_messages_survive_a_restart(path):
    queue = DurableQueue(path)
    seqs = [put(queue, Priority.TELEMETRY, str(i)) for i in range(5)]
    queue.commit()
    queue.take_backlog(10**9, 10)  # sent, never acknowledged
    queue._conn.close()  # a crash: no orderly close

    again = DurableQueue(path)
    assert seqs_of(again.take_backlog(10**9, 10)) == seqs
    again.close()


def test_uncommitted_messages_are_never_handed_out(path):
    queue = DurableQueue(path, commit_interval_s=3600)
    put(queue, Priority.TELEMETRY, "waits for the group commit")
    assert queue.take_live(0, 10) == []
    assert queue.stats().uncommitted == 1
    queue.commit()
    assert len(queue.take_live(0, 10)) == 1


def test_life_safety_is_committed_at_once_and_sent_first(path):
    queue = DurableQueue(path, commit_interval_s=3600)
    telemetry = put(queue, Priority.TELEMETRY, "t")
    smoke = put(queue, Priority.LIFE_SAFETY, "smoke")  # commits everything so far
    door = put(queue, Priority.EVENT, "door")
    queue.commit()
    with sqlite3.connect(path) as other:  # durable: another connection sees it
        assert other.execute("SELECT COUNT(*) FROM message").fetchone()[0] == 3
    assert seqs_of(queue.take_live(0, 10)) == [smoke, door, telemetry]


def test_live_first_then_backlog_oldest_first(path):
    queue = DurableQueue(path)
    backlog = [put(queue, Priority.TELEMETRY, f"old{i}") for i in range(3)]
    old_event = put(queue, Priority.EVENT, "old door")
    queue.commit()
    boundary = queue.last_seq
    live = put(queue, Priority.TELEMETRY, "new")
    alarm = put(queue, Priority.LIFE_SAFETY, "new smoke")
    queue.commit()
    assert seqs_of(queue.take_live(boundary, 10)) == [alarm, live]
    assert seqs_of(queue.take_backlog(boundary, 2)) == backlog[:2]
    assert seqs_of(queue.take_backlog(boundary, 10)) == [backlog[2], old_event]
    assert queue.backlog_size(boundary) == 0


def test_ack_by_ranges_forgets_exactly_those(path):
    queue = DurableQueue(path)
    seqs = [put(queue, Priority.TELEMETRY, str(i)) for i in range(6)]
    queue.commit()
    queue.take_backlog(10**9, 10)
    # The hub acknowledges a live alarm that overtook a backlog it has not seen yet.
    assert (
        queue.ack(Ack(session="s", seq=seqs[5], ranges=[[seqs[5], seqs[5]], [seqs[0], seqs[1]]]))
        == 3
    )
    assert queue.resend_unacked() == 3
    assert seqs_of(queue.take_backlog(10**9, 10)) == seqs[2:5]


def test_byte_budget_drops_oldest_telemetry_then_events_never_life_safety(path):
    queue = DurableQueue(path, max_bytes=64 * 1024)
    smoke = put(queue, Priority.LIFE_SAFETY, "smoke", size=20_000)
    door = put(queue, Priority.EVENT, "door", size=20_000)
    t1 = put(queue, Priority.TELEMETRY, "t1", size=20_000)
    t2 = put(queue, Priority.TELEMETRY, "t2", size=20_000)  # over budget: t1 goes
    assert queue.dropped == {"telemetry": 1}
    gas = put(queue, Priority.LIFE_SAFETY, "gas", size=20_000)  # t2 goes
    button = put(queue, Priority.LIFE_SAFETY, "button", size=20_000)  # then the door
    queue.commit()
    assert queue.dropped == {"telemetry": 2, "event": 1}
    left = seqs_of(queue.take_live(0, 10))
    assert left == [smoke, gas, button]
    assert {t1, t2, door}.isdisjoint(left)
    queue.close()
    assert DurableQueue(path).dropped == {"telemetry": 2, "event": 1}  # counted across restarts


def test_age_budget_drops_old_telemetry_but_keeps_life_safety(path):
    now = [1_800_000_000_000]
    queue = DurableQueue(path, max_age_s=60, wall_ms=lambda: now[0])
    queue.append(Channel.DATA, Priority.TELEMETRY, lambda _seq: b'{"old":1}', now[0] - 120_000)
    keep = queue.append(
        Channel.EVENT, Priority.LIFE_SAFETY, lambda _seq: b'{"smoke":1}', now[0] - 120_000
    )
    fresh = queue.append(Channel.DATA, Priority.TELEMETRY, lambda _seq: b'{"new":1}', now[0])
    queue.commit()
    assert queue.expire() == 1
    assert seqs_of(queue.take_live(0, 10)) == [keep, fresh]


def test_age_budget_pauses_when_the_wall_clock_jumps(path):
    now = [1_800_000_000_000]
    queue = DurableQueue(path, max_age_s=60, wall_ms=lambda: now[0])
    queue.append(Channel.DATA, Priority.TELEMETRY, lambda _seq: b"{}", now[0])
    queue.commit()
    now[0] += 30 * 86_400_000  # the clock leaps a month ahead
    assert queue.expire() == 0
    assert queue.depth == 1


def on_disk(path: Path) -> list[int]:
    with sqlite3.connect(path) as other:
        return [int(r[0]) for r in other.execute("SELECT seq FROM message ORDER BY seq")]


def test_ack_of_ranges_deletes_exactly_those_seqs_on_disk(path):
    queue = DurableQueue(path)
    seqs = [put(queue, Priority.TELEMETRY if i % 3 else Priority.EVENT, str(i)) for i in range(10)]
    queue.commit()
    queue.take_live(0, 100)
    acked = [[seqs[1], seqs[3]], [seqs[6], seqs[6]], [seqs[9] + 5, seqs[9] + 9]]

    assert queue.ack(Ack(session="s", seq=seqs[6], ranges=acked)) == 4
    queue.commit()

    left = [s for i, s in enumerate(seqs) if i not in {1, 2, 3, 6}]
    assert on_disk(path) == left
    assert queue.depth == len(left)
    assert queue.ack(Ack(session="s", seq=seqs[6], ranges=acked)) == 0  # a repeat is a no-op
    assert queue.ack(Ack(session="s", seq=seqs[4])) == 2  # no ranges: everything up to seq
    queue.commit()
    assert on_disk(path) == left[2:]
    queue.close()
    assert on_disk(path) == left[2:]


def test_counters_match_a_recount_through_appends_sends_acks_drops_and_resends(path):
    queue = DurableQueue(path, max_bytes=64 * 1024, commit_interval_s=3600)
    seqs = [put(queue, Priority.TELEMETRY, str(i), size=3_000) for i in range(30)]  # some drop
    assert queue.stats().uncommitted == queue.depth
    queue.commit()
    sent = queue.take_live(0, 5)
    queue.ack(Ack(session="s", seq=sent[1].seq, ranges=[[sent[0].seq, sent[1].seq]]))
    put(queue, Priority.LIFE_SAFETY, "smoke")

    def recount() -> tuple[int, int]:
        metas = [m for ms in queue._messages.values() for m in ms.values()]
        unsent = sum(1 for m in metas if m.committed and m.sent_at is None)
        return len(metas), unsent

    stats = queue.stats()
    assert (stats.depth, stats.unsent) == recount()
    assert stats.uncommitted == 0
    assert stats.bytes == sum(m.size for ms in queue._messages.values() for m in ms.values())
    assert queue.oldest_unacked_sent_s() is not None
    assert queue.resend_unacked() == 3
    assert queue.oldest_unacked_sent_s() is None
    assert (queue.stats().depth, queue.stats().unsent) == recount()
    assert queue.dropped["telemetry"] > 0
    assert seqs[-1] in queue._messages[Priority.TELEMETRY]
    queue.close()


async def test_a_group_written_on_the_commit_thread_is_sent_only_once_durable(path):
    queue = DurableQueue(path, commit_interval_s=3600)
    first = put(queue, Priority.TELEMETRY, "a")
    assert queue.has_pending

    assert await queue.commit_async()

    assert on_disk(path) == [first]
    assert seqs_of(queue.take_live(0, 10)) == [first]
    assert not await queue.commit_async()  # nothing pending
    queue.close()


async def test_a_commit_cancelled_while_writing_still_lands_and_close_waits_for_it(path):
    queue = DurableQueue(path, commit_interval_s=3600)
    seqs = [put(queue, Priority.TELEMETRY, str(i)) for i in range(50)]
    task = asyncio.ensure_future(queue.commit_async())
    await asyncio.sleep(0)  # the group is on the thread now
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    later = put(queue, Priority.TELEMETRY, "after")
    queue.close()
    assert on_disk(path) == [*seqs, later]


async def test_a_life_safety_commit_during_a_background_write_keeps_every_line_sorted(path):
    queue = DurableQueue(path, commit_interval_s=3600)
    telemetry = [put(queue, Priority.TELEMETRY, str(i)) for i in range(20)]
    task = asyncio.ensure_future(queue.commit_async())
    await asyncio.sleep(0)
    more = put(queue, Priority.TELEMETRY, "more")
    smoke = put(queue, Priority.LIFE_SAFETY, "smoke")  # commits at once, before the task ends
    await task
    assert seqs_of(queue.take_live(0, 100)) == [smoke, *telemetry, more]
    assert on_disk(path) == [*telemetry, more, smoke]
    queue.close()
