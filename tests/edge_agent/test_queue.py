"""The durable queue: seqs, priorities, budgets, group commits and restarts, on a real file."""

from __future__ import annotations

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
