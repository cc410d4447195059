"""Fault injection with real processes: every seq the gateway commits is stored exactly once.

Edge agent and hub run as ``anju`` subprocesses against a real Mosquitto (no persistence) and a
real VictoriaMetrics; a tap on the broker and the gateway's queue file say what was committed,
and :func:`tests.faults.harness.account` checks each seq against the hub's database and the
time-series store (see the harness for the rules).  Each test prints its figures on a
``[faults]`` line (``pytest -s`` shows them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import (
    LIFE_SAFETY_KINDS,
    Rig,
    deduplicated_samples,
    device_specs,
    incidents,
    read_hub,
    read_queue,
    read_spool,
    wait_until,
)
from tests.servers import Mosquitto, VictoriaMetrics

pytestmark = [pytest.mark.integration, pytest.mark.scenario]


@pytest.mark.timeout(120)
def test_kill_9_of_the_edge_agent_while_it_publishes(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    """SIGKILL mid-stream, restart, SIGKILL again right after the restart, restart again.

    What was committed is published after the restart; the last uncommitted group dies with
    the process, and its seqs are handed out again (legitimately: none of them left it).  The
    readings of that group and of the open batch are lost by design (at most the batch delay
    plus the group commit interval); the figures report that window for each kill.
    """
    with Rig(tmp_path, mosquitto, victoria, scenario=incidents(2, 3.5, 5, 6.5, 9, 11)) as rig:
        rig.start_hub()
        rig.start_agent()
        rig.wait_acks(5)
        rig.run(4)
        kills: list[dict[str, Any]] = []
        for pause in (1.0, 0.6):
            published = rig.tap.last_seq()
            killed_at = time.time()
            rig.agent.kill()
            committed = read_queue(rig.edge_dir)
            kills.append(
                {
                    "published": published,
                    "committed": committed.last_seq,
                    "held": committed.depth,
                    "killed_at_ms": int(killed_at * 1000),
                }
            )
            time.sleep(pause)
            rig.start_agent()
            # The second kill comes just after its first acknowledgements.
            rig.wait_acks(2)
            rig.run(0.3)
        rig.run(5)
        ledger = rig.account()
        sightings = rig.tap.snapshot()
        for kill in kills:
            # What died uncommitted with the process: readings taken after the last committed
            # one (the open batch and the open group commit), never seen by anyone.
            newest = max(
                reading["ts"]
                for seq, found in sightings.items()
                if seq <= kill["committed"] and found[0].channel == "data"
                for reading in found[0].body["readings"]
            )
            kill["uncommitted_window_ms"] = kill.pop("killed_at_ms") - newest
        ledger.extra["kills"] = kills
        ledger.extra["agent_starts"] = rig.agent.starts
        print(ledger.line("kill -9 edge agent"))


def _more_acks(rig: Rig, count: int) -> Callable[[], bool]:
    return lambda: rig.tap.ack_count() > count


@pytest.mark.timeout(120)
def test_mosquitto_restart_without_persistence_mid_stream(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    """The broker restarts twice and forgets every session and queued message.

    Whatever was in flight, or published before the hub had subscribed again, is lost on the
    broker: the gateway has it still, unacknowledged, and sends it again.
    """
    assert not mosquitto.persistence
    with Rig(tmp_path, mosquitto, victoria, scenario=incidents(3, 6, 9, 12, 15)) as rig:
        rig.start_hub()
        rig.start_agent()
        rig.wait_acks(5)
        rig.run(3)
        outages: list[dict[str, Any]] = []
        for _ in range(2):
            before = rig.tap.ack_count()
            stopped = time.monotonic()
            mosquitto.restart()
            restarted = time.monotonic() - stopped
            took = wait_until(
                _more_acks(rig, before + 3),
                30,
                "acknowledgements after the broker restart",
                watch=rig.daemons,
            )
            outages.append({"broker_down_s": round(restarted, 3), "acks_again_s": round(took, 3)})
            rig.run(4)
        ledger = rig.account()
        ledger.extra["outages"] = outages
        ledger.extra["tap_connects"] = rig.tap.connects
        print(ledger.line("mosquitto restart"))


@pytest.mark.timeout(240)
def test_time_series_store_down_for_60_s(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    """VictoriaMetrics stops for 60 s and starts again on the same port and data.

    Spool-first: the hub keeps acknowledging from its own database meanwhile, so the gateway's
    queue stays small; afterwards the spool drains oldest first (its waiting batches are always
    one run of ids) and everything is in the store exactly once.
    """
    with Rig(tmp_path, mosquitto, victoria, scenario=incidents(5, 20, 35, 50, 65)) as rig:
        rig.start_hub()
        rig.start_agent()
        rig.wait_acks(5)
        rig.run(2)
        victoria.stop()
        down_at = time.monotonic()
        acks_before = rig.tap.ack_count()
        depths: list[int] = []
        spool = []
        while time.monotonic() - down_at < 60:
            rig.run(0.5)
            depths.append(read_queue(rig.edge_dir).depth)
            spool.append(read_spool(rig.hub_dir))
        acks_during = rig.tap.ack_count() - acks_before
        victoria.start()
        up_at = time.monotonic()
        backlog = read_spool(rig.hub_dir)
        drain_polls = []

        def drained() -> bool:
            state = read_spool(rig.hub_dir)
            drain_polls.append(state)
            # Live batches keep arriving; the backlog is gone once its last id is.
            return state.first_id is None or state.first_id > (backlog.last_id or 0)

        drain_s = wait_until(drained, 60, "the spool backlog to drain", watch=rig.daemons)
        rig.run(2)
        ledger = rig.account()
        ledger.extra.update(
            acks_during_outage=acks_during,
            max_gateway_queue_depth=max(depths),
            spool_at_restart={"batches": backlog.batches, "points": backlog.points},
            drain_s=round(drain_s, 2),
            drain_polls=len(drain_polls),
            outage_s=round(up_at - down_at, 1),
        )
        print(ledger.line("time-series store down 60 s"))
        # The hub acknowledged throughout (about five flushes a second) ...
        assert acks_during > 100
        # ... so the gateway held only what was in flight, never the outage's backlog.
        assert max(depths) <= 20, depths
        # The spool grew with the outage and was only ever drained from its oldest end.
        assert backlog.batches > 100
        assert all(s.contiguous for s in spool + drain_polls)
        assert [s.batches for s in spool] == sorted(s.batches for s in spool)


@pytest.mark.timeout(150)
def test_kill_9_of_the_hub_mid_stream(
    tmp_path: Path,
    mosquitto: Mosquitto,
    victoria_factory: Callable[..., VictoriaMetrics],
) -> None:
    """SIGKILL the hub twice, restarting it with the same data and MQTT client id.

    The first crash comes mid-stream; the broker queues the gateway's messages for the hub's
    persistent session meanwhile.  The second comes while the hub drains a spool backlog into
    the store (VictoriaMetrics was down for a few seconds): a relay between the hub and the store
    kills it once the store has taken a write, before the hub hears so and unspools it.  A crash between a write to the store and the removal of its messages
    from the spool writes them again after the restart: the same points (series and
    timestamp).  InfluxDB overwrites such points; VictoriaMetrics keeps both unless run with
    ``-dedup.minScrapeInterval``, as here: this is the only test that runs it so, and the
    duplicates it removed are reported from its own metrics.
    """
    victoria = victoria_factory(extra_flags=["-dedup.minScrapeInterval=1ms"])
    with Rig(
        tmp_path,
        mosquitto,
        victoria,
        scenario=incidents(3, 5, 7, 9, 11, 13, 15),
        store_proxy=True,
    ) as rig:
        rig.start_hub()
        rig.start_agent()
        rig.wait_acks(5)
        rig.run(3)
        crashes: list[dict[str, Any]] = []

        # 1. Mid-stream.
        rig.hub.kill()
        crashes.append({"spool_at_kill": read_spool(rig.hub_dir).batches, "down_s": 3})
        time.sleep(3)
        crashes[-1]["restart_s"] = round(rig.start_hub(), 2)
        rig.wait_acks(5)
        rig.run(2)

        # 2. While it writes a spooled backlog into the store, before it unspools it.
        victoria.stop()
        rig.run(6)
        backlog = read_spool(rig.hub_dir)
        assert rig.proxy is not None
        rig.proxy.kill_after_write(rig.hub)
        victoria.start()
        killed_after = wait_until(rig.proxy.killed.is_set, 30, "the hub killed after a write")
        left = read_spool(rig.hub_dir)
        crashes.append(
            {
                "spool_backlog": backlog.batches,
                "spool_at_kill": left.batches,
                "points_at_kill": left.points,
                "killed_after_s": round(killed_after, 2),
                "down_s": 1,
            }
        )
        time.sleep(1)
        crashes[-1]["restart_s"] = round(rig.start_hub(), 2)
        rig.wait_acks(5)
        rig.run(3)
        ledger = rig.account(vm_dedup=True)
        ledger.extra["crashes"] = crashes
        ledger.extra["vm_deduplicated"] = deduplicated_samples(victoria)
        print(ledger.line("kill -9 hub"))
        assert backlog.batches > 10
        # The crash did land between a write and its unspooling: points were written twice,
        # and the store counted each of them once (the ledger above).
        ledger.extra["written_twice"] = rig.proxy.written_twice()
        assert ledger.extra["written_twice"] > 0, f"nothing was written twice: {crashes}"


LIFE_SAFETY_PER_INCIDENT = {"smoke": 2, "emergency_button": 1, "water_leak": 2, "door_forced": 1}


@pytest.mark.timeout(150)
def test_queue_budget_reached_only_counted_telemetry_is_lost(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    """Hub and broker down until the gateway's 64 KiB queue overflows, then both come back.

    The hub stops gracefully first (what it stored is acknowledged) and the broker, without
    persistence, after it: so nothing the gateway drops can reach the hub later.  The broker
    returns before the hub does, by more than ``resend_after_s``: the gateway replays its
    backlog into a broker nobody listens to and must send it all again.

    Only the oldest telemetry is missing, as many messages as the gateway counted; every
    life-safety event of the outage is stored.
    """
    devices = device_specs(temp_humidity=120, co2=8)
    scenario = incidents(8, 9, 10, 11, 12, 13, 14, 15)
    with Rig(
        tmp_path,
        mosquitto,
        victoria,
        devices=devices,
        scenario=scenario,
        queue={"max_bytes": 64 * 1024},
        replay_rate=5,
    ) as rig:
        rig.start_hub()
        rig.start_agent()
        rig.wait_acks(5)
        rig.run(2)
        assert rig.hub.terminate() == 0
        mosquitto.stop()
        down_at = time.time()
        start = read_queue(rig.edge_dir)

        def dropped() -> int:
            # Nothing is acknowledged now: what was committed and left the file was dropped.
            now = read_queue(rig.edge_dir)
            return (now.last_seq - start.last_seq) - (now.depth - start.depth)

        wait_until(lambda: dropped() >= 60, 60, "the queue budget to drop", watch=[rig.agent])
        rig.run(3)  # drops go on; the incidents fall into the outage
        outage = read_queue(rig.edge_dir)
        mosquitto.start()
        rig.run(5)
        up_at = time.time()
        rig.start_hub()
        rig.wait_acks(5)
        rig.run(2)
        ledger = rig.account(victims=True)
        ledger.extra.update(
            outage_s=round(up_at - down_at, 1),
            queue_at_outage_end={"depth": outage.depth, "dropped": outage.dropped},
            caught_up_s=round(rig.caught_up_s, 2),
        )
        print(ledger.line("queue budget"))
        hub = read_hub(rig.hub_dir).events
        assert ledger.dropped.get("telemetry", 0) >= 60
        assert ledger.dropped.get("event", 0) == 0
        # The victims are the oldest telemetry: one run of seqs, broken only by events.
        missing = set(ledger.missing)
        events = {seq for seq, *_ in hub}
        span = range(min(missing), max(missing) + 1)
        assert all(seq in missing or seq in events for seq in span)
        # Every incident's life-safety events are stored, those of the outage included.
        expected = sum(LIFE_SAFETY_PER_INCIDENT[i["do"]] for i in scenario)
        assert ledger.life_safety_events == expected
        during = [e for e in hub if e[3] in LIFE_SAFETY_KINDS and down_at * 1000 <= e[1]]
        assert len(during) >= expected // 2, during


def _readings_between(rig: Rig, low_ms: int, high_ms: int) -> int:
    return sum(
        1
        for found in rig.tap.snapshot().values()
        if found[0].channel == "data"
        for reading in found[0].body["readings"]
        if low_ms <= reading["ts"] <= high_ms
    )


@pytest.mark.timeout(150)
def test_gateway_clock_jumps_forwards_and_backwards(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    """The agent's wall clock (libfaketime; monotonic time stays real) jumps while it runs.

    1. +4 min: the simulated devices catch up on their schedule at once (a burst stamped up to
       4 min ahead, inside the hub's 5 min future-skew limit), then stream 4 min ahead.
    2. -1 h (to 56 min behind): the simulator waits for its schedule, so it falls silent, while
       the agent's own stamps (state, health, queue) go back an hour.  The gateway is then
       restarted, as a gateway that boots with a wrong clock, and streams 56 min in the past.
    3. +46 min (to 10 min behind): the devices catch up 46 minutes at once.

    Neither the queue nor the hub orders or deduplicates by time, so every seq is stored once.
    """
    clock = tmp_path / "faketime"
    clock.write_text("+0\n")
    devices = device_specs(temp_humidity=6, co2=2)
    with Rig(
        tmp_path,
        mosquitto,
        victoria,
        devices=devices,
        scenario=incidents(2, 4, 6, 8, 30, 60, 120, 200),
        faketime_file=clock,
    ) as rig:
        rig.start_hub()
        rig.start_agent()
        rig.wait_acks(5)
        rig.run(2)
        phases: dict[str, Any] = {}

        # 1. Four minutes forward.
        clock.write_text("+240\n")
        now_ms = int(time.time() * 1000)
        wait_until(
            lambda: _readings_between(rig, now_ms + 230_000, now_ms + 300_000) > 0,
            20,
            "readings stamped four minutes ahead",
            watch=rig.daemons,
        )
        rig.run(3)
        phases["ahead"] = _readings_between(rig, now_ms + 1000, now_ms + 300_000)

        # 2. An hour back: silence from the simulator, then a restart on the wrong clock.
        clock.write_text("-3360\n")
        last = rig.tap.last_seq()
        rig.run(3)
        health = rig.tap.health[-1][1]
        assert health["ts"] < time.time() * 1000 - 3_000_000, "the clock did not jump back"
        phases["silent_seqs"] = rig.tap.last_seq() - last
        assert rig.agent.terminate() == 0
        rig.start_agent()
        rig.wait_acks(5)
        rig.run(3)
        now_ms = int(time.time() * 1000)
        phases["behind"] = _readings_between(rig, now_ms - 3_400_000, now_ms - 3_300_000)

        # 3. Forward again by 46 min, as NTP would step it (not to the true time: the catch-up
        # would then stamp readings at times of the first phase, and a device may read at
        # the same millisecond twice: one series, one timestamp, two values).
        clock.write_text("-600\n")
        target_ms = int(time.time() * 1000) - 600_000
        caught_up = wait_until(
            lambda: _readings_between(rig, target_ms - 5_000, target_ms + 60_000) > 0,
            60,
            "the simulator to catch up 46 minutes",
            watch=rig.daemons,
        )
        phases["catch_up_s"] = round(caught_up, 1)
        rig.run(2)
        ledger = rig.account()
        ledger.extra.update(phases)
        print(ledger.line("clock jumps"))
        assert phases["ahead"] > 0
        assert phases["behind"] > 0
