"""The alert lifecycle on virtual time: escalation, grouping, overlays, restarts."""

from __future__ import annotations

import json

import pytest

from hub.lifecycle import (
    Alert,
    AlertBook,
    Dispatch,
    Flap,
    LifecycleError,
    RegistryDirectory,
    Silence,
    SystemTransition,
)
from hub.routing import AlertingSettings, MaintenanceWindow, Matcher
from rules import Schedule

MIN = 60_000
T0 = 1_800_000_000_000  # virtual epoch

DIRECTORY = RegistryDirectory(
    {"north": "wang-fang", "south": "zhao-lei"},
    {
        "street_block": ["li-qiang"],
        "community_office": ["chen-min"],
        "security": ["security-room"],
    },
)


def change(
    state: str,
    ts: int,
    *,
    rule: str = "door-forced",
    device: str = "east-gate",
    since: int | None = None,
    severity: str = "major",
    issue_class: str = "composite",
    grid: str = "south",
    **labels: str,
) -> SystemTransition:
    return SystemTransition(
        rule_id=rule,
        device=device,
        state=state,
        ts_ms=ts,
        since_ms=ts if since is None else since,
        severity=severity,
        issue_class=issue_class,
        summary=rule,
        message=f"{rule} at {device}",
        labels={"grid": grid, **labels},
    )


def book(**settings: object) -> AlertBook:
    return AlertBook(
        AlertingSettings.model_validate(settings),
        DIRECTORY,
        rule_kinds={"device-silent": "absence", "door-forced": "event"},
    )


class Clock:
    """Advances a book second by second and collects what it dispatches."""

    def __init__(self, alerts: AlertBook, start: int = T0) -> None:
        self.book = alerts
        self.now = start
        self.sent: list[tuple[int, Dispatch]] = []

    def take(self, dispatches: list[Dispatch]) -> None:
        self.sent += [(self.now, d) for d in dispatches]

    def feed(self, state: str, **kwargs: object) -> None:
        self.take(self.book.on_transition(change(state, self.now, **kwargs), self.now).dispatches)  # type: ignore[arg-type]

    def run_for(self, ms: int, step: int = 1000) -> None:
        end = self.now + ms
        while self.now < end:
            self.now = min(end, self.now + step)
            self.take(self.book.tick(self.now).dispatches)

    def log(self) -> list[tuple[int, str, tuple[str, ...]]]:
        return [((t - T0) // 1000, d.transition, d.recipients) for t, d in self.sent]


def test_life_safety_reaches_every_tier_at_once_and_everyone_hears_the_resolve() -> None:
    clock = Clock(book())
    clock.feed("firing", rule="smoke", device="b3-smoke", severity="critical", grid="north")
    everyone = ("wang-fang", "li-qiang", "chen-min", "security-room")
    assert clock.log() == [(0, "firing", everyone)]
    assert clock.sent[0][1].urgent
    clock.run_for(2 * MIN)
    clock.feed("resolved", rule="smoke", device="b3-smoke", severity="critical", grid="north")
    assert clock.log()[-1] == (120, "resolved", everyone)
    assert clock.sent[-1][1].kind == "resolved"


def test_composite_alert_waits_for_its_group_then_escalates_step_by_step() -> None:
    clock = Clock(book())
    clock.feed("firing")
    assert clock.sent == []  # the group wait
    clock.run_for(29_000)
    assert clock.sent == []
    clock.run_for(1000)
    assert clock.log() == [(30, "firing", ("zhao-lei",))]
    clock.run_for(10 * MIN)
    assert clock.log()[-1] == (630, "step:1", ("li-qiang",))
    clock.run_for(20 * MIN)
    assert clock.log()[-1] == (1830, "step:2", ("chen-min",))
    # After the last step, the whole chain is repeated up to the limit, then it stops.
    clock.run_for(5 * 60 * MIN)
    repeats = [entry for entry in clock.log() if entry[1].startswith("repeat")]
    assert [r[1] for r in repeats] == ["repeat:1", "repeat:2", "repeat:3"]
    assert repeats[0] == (1830 + 3600, "repeat:1", ("zhao-lei", "li-qiang", "chen-min"))
    assert clock.book.next_due_ms() is None


def test_acknowledgement_stops_escalation_and_times_out_into_a_retrigger() -> None:
    clock = Clock(book())
    clock.feed("firing")
    clock.run_for(MIN)
    alert = next(iter(clock.book.active.values()))
    clock.book.acknowledge(alert.id[:6], "zhao-lei", clock.now, "on my way")
    assert alert.status.value == "acknowledged"
    assert alert.comments[0].text == "on my way"
    clock.run_for(29 * MIN)
    assert [e[1] for e in clock.log()] == ["firing"]  # no escalation while acknowledged
    clock.run_for(MIN)
    assert clock.log()[-1] == (60 + 30 * 60, "retrigger:1", ("zhao-lei",))
    assert alert.status.value == "firing"
    clock.run_for(10 * MIN)
    assert clock.log()[-1][1:] == ("step:1", ("li-qiang",))
    # A manual resolve tells everyone who was told of the firing.
    out = clock.book.resolve(alert.id, "li-qiang", clock.now, "gate closed, nobody inside")
    assert out.dispatches[0].recipients == ("zhao-lei", "li-qiang")
    assert alert.resolved_by == "li-qiang"
    with pytest.raises(LifecycleError, match="no active alert"):
        clock.book.acknowledge(alert.id, "x", clock.now)


def test_alerts_of_one_grid_and_rule_go_out_as_one_group_and_later_ones_wait() -> None:
    clock = Clock(book())
    clock.feed("firing", device="gate-a")
    clock.run_for(10_000)
    clock.feed("firing", device="gate-b")
    clock.feed("firing", device="north-door", grid="north")  # another grid: its own group
    clock.run_for(20_000)
    first = [d for _, d in clock.sent]
    assert len(first) == 1
    assert {a.device for a in first[0].alerts} == {"gate-a", "gate-b"}
    clock.run_for(10_000)
    assert [a.device for a in clock.sent[-1][1].alerts] == ["north-door"]
    # A member joining after the flush waits for the group interval (5 min from the flush).
    clock.run_for(MIN)
    clock.feed("firing", device="gate-c")
    clock.run_for(3 * MIN)
    assert all(a.device != "gate-c" for _, d in clock.sent for a in d.alerts)
    clock.run_for(MIN)
    assert [a.device for a in clock.sent[-1][1].alerts] == ["gate-c"]
    assert (clock.sent[-1][0] - T0) // 1000 == 30 + 300


def test_a_pending_alert_that_clears_is_never_notified() -> None:
    clock = Clock(book())
    clock.feed("pending", rule="co2-high", device="lobby", issue_class="ordinary")
    clock.run_for(MIN)
    clock.feed("resolved", rule="co2-high", device="lobby", issue_class="ordinary")
    clock.run_for(10 * MIN)
    assert clock.sent == []
    assert clock.book.active == {}


def test_resolve_during_the_group_wait_sends_nothing() -> None:
    clock = Clock(book())
    clock.feed("firing")
    clock.run_for(10_000)
    clock.feed("resolved")
    clock.run_for(MIN)
    assert clock.sent == []


def test_silence_until_resolved_holds_escalation_but_the_resolve_reaches_the_notified() -> None:
    clock = Clock(book())
    clock.feed("firing")
    clock.run_for(MIN)
    alert = next(iter(clock.book.active.values()))
    clock.book.add_silence(by="security-room", now_ms=clock.now, alert_ref=alert.id)
    clock.run_for(60 * MIN)
    assert [e[1] for e in clock.log()] == ["firing"]
    assert alert.held is not None
    assert alert.held.startswith("silenced:")
    clock.feed("resolved")
    assert clock.log()[-1] == (3660, "resolved", ("zhao-lei",))
    assert all(s.expired_ms is not None for s in clock.book.silences.values())


def test_a_silence_that_ends_lets_the_held_notification_out() -> None:
    clock = Clock(book())
    clock.book.add_silence(
        by="office",
        now_ms=clock.now,
        match={"grid": ["south"]},
        ends_ms=clock.now + 10 * MIN,
    )
    clock.feed("firing")
    clock.run_for(9 * MIN)
    assert clock.sent == []
    clock.run_for(MIN)
    assert clock.log() == [(600, "firing", ("zhao-lei",))]
    with pytest.raises(LifecycleError, match="needs an end"):
        clock.book.add_silence(by="x", now_ms=clock.now, match={"grid": ["south"]})


def test_maintenance_window_silences_by_schedule() -> None:
    window = MaintenanceWindow(
        name="pump-service",
        match=Matcher(labels={"area": ("Pump room",)}),
        schedule=Schedule(timezone="UTC", between=("00:00", "01:00")),
    )
    start = 1_799_971_200_000  # 2027-01-15 00:00 UTC
    clock = Clock(book(maintenance=[window]), start=start)
    clock.feed("firing", rule="leak", device="pump-leak", area="Pump room", issue_class="ordinary")
    clock.feed("firing", rule="leak", device="hall-leak", area="Hall", issue_class="ordinary")
    clock.run_for(MIN)
    assert [a.device for _, d in clock.sent for a in d.alerts] == ["hall-leak"]
    clock.run_for(60 * MIN)
    assert [a.device for _, d in clock.sent for a in d.alerts][-1] == "pump-leak"


def test_a_dead_gateway_inhibits_its_devices_absence_alerts_until_it_returns() -> None:
    clock = Clock(book())
    offline = {
        "rule": "gateway-offline",
        "device": "gateway:gw-south",
        "grid": "",
        "issue_class": "ordinary",
    }
    clock.feed("firing", **offline, gateway="gw-south")
    clock.feed(
        "firing", rule="device-silent", device="b5-th", issue_class="ordinary", gateway="gw-south"
    )
    clock.feed(
        "firing",
        rule="device-silent",
        device="b1-th",
        issue_class="ordinary",
        gateway="gw-north",
        grid="north",
    )
    clock.run_for(MIN)
    devices = [a.device for _, d in clock.sent for a in d.alerts]
    assert "b5-th" not in devices
    assert "b1-th" in devices  # another gateway's device is not inhibited
    # The gateway-offline alert has no grid: its grid step is skipped, security hears of it.
    gateway_notice = next(d for _, d in clock.sent if d.alerts[0].device == "gateway:gw-south")
    assert gateway_notice.recipients == ("security-room",)
    held = clock.book.active[("device-silent", "b5-th")]
    assert held.held is not None
    assert held.held.startswith("inhibited:")
    clock.feed("resolved", **offline, gateway="gw-south")
    clock.run_for(1000)
    assert [a.device for a in clock.sent[-1][1].alerts] == ["b5-th"]


def test_flapping_is_notified_once_when_it_starts_and_once_when_it_stops() -> None:
    clock = Clock(book(group_wait=0, group_interval=0))
    for _ in range(4):
        clock.feed("firing", since=clock.now)
        clock.run_for(30_000)
        clock.feed("resolved")
        clock.run_for(30_000)
    transitions = [e[1] for e in clock.log()]
    assert transitions.count("flapping") == 1
    # Before flapping: firing and resolve pairs; once flapping, nothing until it ends.
    assert transitions[: transitions.index("flapping")] == ["firing", "resolved"] * 2 + ["firing"]
    after = transitions[transitions.index("flapping") + 1 :]
    assert "firing" not in after
    clock.feed("firing", since=clock.now)
    clock.run_for(11 * MIN)
    assert "flapping-end" in [e[1] for e in clock.log()]
    # The alert that was held while flapping goes out after the end notice.
    assert clock.log()[-1][1] == "firing"


def test_rate_limit_per_recipient_spares_life_safety() -> None:
    clock = Clock(book(group_wait=0, rate_limit={"max": 2, "per": "1h"}))
    for n in range(4):
        clock.feed("firing", rule=f"r{n}", issue_class="ordinary")
        clock.run_for(1000)
    sent = [d for _, d in clock.sent]
    assert [d.recipients for d in sent] == [("zhao-lei",), ("zhao-lei",), (), ()]
    assert sent[2].suppressed == ("zhao-lei",)
    clock.feed("firing", rule="gas", severity="critical")
    assert "zhao-lei" in clock.sent[-1][1].recipients


def test_state_survives_a_restart_and_the_next_step_fires_once_on_time() -> None:
    clock = Clock(book())
    clock.feed("firing")
    clock.run_for(MIN)
    # Persist as the hub does (JSON), then rebuild a new book from it.
    alerts = [json.loads(json.dumps(a.to_dict())) for a in clock.book.active.values()]
    restored = book()
    restored.load([Alert.from_dict(a) for a in alerts], [], [])
    later = Clock(restored, start=clock.now)
    later.run_for(9 * MIN + 29_000)
    assert later.sent == []
    later.run_for(1000)
    assert later.log() == [(630, "step:1", ("li-qiang",))]
    assert (
        Silence.from_dict(Silence(id="s", created_by="x", comment="", starts_ms=0).to_dict()).id
        == "s"
    )
    assert Flap.from_dict(Flap(rule_id="r", subject="d").to_dict()).rule_id == "r"


def test_a_system_alert_fires_when_its_pending_time_is_up() -> None:
    clock = Clock(book(group_wait=0))
    pending = SystemTransition(
        rule_id="gateway-offline",
        device="gateway:gw-gate",
        state="pending",
        ts_ms=clock.now,
        since_ms=clock.now,
        severity="major",
        issue_class="ordinary",
        summary="Gateway offline",
        message="gw-gate offline",
        labels={"gateway": "gw-gate"},
        fire_at_ms=clock.now + 2 * MIN,
    )
    clock.book.on_transition(pending, clock.now)
    clock.run_for(2 * MIN - 1000)
    assert clock.sent == []
    clock.run_for(2000)
    assert clock.log()[0][1:] == ("step:1", ("security-room",))  # nobody at the grid step


def test_operator_errors_say_what_is_wrong() -> None:
    clock = Clock(book())
    clock.feed("pending", rule="co2-high", device="lobby")
    alert = next(iter(clock.book.active.values()))
    with pytest.raises(LifecycleError, match="only a firing alert"):
        clock.book.acknowledge(alert.id, "x", clock.now)
    with pytest.raises(LifecycleError, match="no active alert"):
        clock.book.assign("ffff", "x", "y", clock.now)
    clock.book.assign(alert.id, "zhao-lei", "security-room", clock.now)
    assert alert.assignee == "zhao-lei"
    assert alert.history[-1][1] == "assigned"


def test_a_building_power_alarm_inhibits_that_buildings_deadman_alerts_only() -> None:
    clock = Clock(book(group_wait=0))
    power = {"rule": "building-power-lost", "device": "b3-power", "issue_class": "hard"}
    clock.feed("firing", **power, grid="north", building="3")
    silent = {"rule": "device-silent", "issue_class": "ordinary", "grid": "north"}
    clock.feed("firing", device="b3-th", building="3", **silent)
    clock.feed("firing", device="b1-th", building="1", **silent)
    clock.run_for(1000)
    told = [a.device for _, d in clock.sent for a in d.alerts]
    assert "b3-th" not in told
    assert "b1-th" in told
    inhibited = clock.book.active[("device-silent", "b3-th")]
    assert (
        inhibited.held == f"inhibited:{clock.book.active[('building-power-lost', 'b3-power')].id}"
    )


def test_a_life_safety_alert_is_never_held_as_flapping() -> None:
    clock = Clock(book())
    smoke = {"rule": "smoke", "device": "b3-smoke", "severity": "critical", "grid": "north"}
    for _ in range(8):
        clock.feed("firing", since=clock.now, **smoke)
        clock.run_for(10_000)
        clock.feed("resolved", **smoke)
        clock.run_for(10_000)
    transitions = [e[1] for e in clock.log()]
    assert transitions == ["firing", "resolved"] * 8
