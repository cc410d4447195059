"""Fast, deterministic twin of what the queue-budget scenario found (no processes, no servers).

A live message resent while the backlog before it was still being replayed was put back ahead
of that backlog; the backlog then never left the gateway (until a reconnect), and neither did
the resent message.  The fault scenario shows it end to end; this pins the queue's part.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from edge_agent import DurableQueue, Priority
from wire import Channel


def _put(queue: DurableQueue, tag: str) -> int:
    return queue.append(
        Channel.DATA, Priority.TELEMETRY, lambda seq: orjson.dumps({"seq": seq, "t": tag}), 0
    )


def test_a_resent_live_message_does_not_block_the_backlog_behind_it(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path / "queue.sqlite3")
    backlog = [_put(queue, f"backlog {i}") for i in range(6)]
    queue.commit()
    boundary = queue.last_seq  # the connection comes up: all of the above is the backlog

    replayed = [m.seq for m in queue.take_backlog(boundary, 2)]  # rate-limited replay
    live = _put(queue, "live")
    queue.commit()
    assert [m.seq for m in queue.take_live(boundary, 10)] == [live]
    # Nobody acknowledges (the hub is not back yet): everything sent is offered again.
    assert queue.resend_unacked(min_age_s=0) == 3

    sent = [m.seq for m in queue.take_live(boundary, 10)]
    while queue.backlog_size(boundary):
        batch = [m.seq for m in queue.take_backlog(boundary, 2)]
        assert batch, "the backlog is stuck behind the resent live message"
        sent += batch
    assert sorted(sent) == sorted([*replayed, *backlog[2:], live])
    queue.close()
