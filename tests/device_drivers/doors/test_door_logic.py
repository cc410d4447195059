"""The door state machine on virtual time: forced, held open, exit requests, grants."""

from __future__ import annotations

import itertools
import random

import pytest

from device_drivers import DeviceEvent
from device_drivers.doors import DoorLogic, DoorSettings, DoorState
from wire import validate_event_data

T0 = 1_772_409_600_000
S = 1000  # one second in ms


def door(**settings) -> DoorLogic:
    settings.setdefault("door", "lobby")
    initial = settings.pop("initial", DoorState.CLOSED)
    return DoorLogic("lobby-reader", DoorSettings(**settings), initial=initial)


def kinds(events: list[DeviceEvent]) -> list[str]:
    return [e.kind for e in events]


def test_opening_without_a_grant_or_exit_request_is_forced():
    logic = door()
    events = logic.contact(T0, is_open=True)
    assert kinds(events) == ["door.contact", "door.forced"]
    assert events[0].data == {"open": True, "door": "lobby"}
    assert events[1].data == {"door": "lobby"}
    assert all(e.device == "lobby-reader" and e.ts_ms == T0 for e in events)
    assert logic.state is DoorState.OPEN


def test_a_grant_authorises_an_opening_within_the_window_only():
    logic = door(grant_window_s=10)
    assert logic.access(T0, granted=True) == []
    assert kinds(logic.contact(T0 + 10 * S, is_open=True)) == ["door.contact"]
    assert kinds(logic.contact(T0 + 15 * S, is_open=False)) == ["door.contact"]

    late = door(grant_window_s=10)
    late.access(T0, granted=True)
    assert kinds(late.contact(T0 + 10 * S + 1, is_open=True)) == ["door.contact", "door.forced"]


def test_a_denied_access_authorises_nothing():
    logic = door()
    assert logic.access(T0, granted=False) == []
    assert kinds(logic.contact(T0 + S, is_open=True)) == ["door.contact", "door.forced"]


def test_an_exit_request_is_reported_and_authorises_the_door():
    logic = door(grant_window_s=5)
    events = logic.exit_request(T0)
    assert kinds(events) == ["door.exit_request"]
    assert events[0].data == {"door": "lobby"}
    assert kinds(logic.contact(T0 + 3 * S, is_open=True)) == ["door.contact"]


def test_several_grants_extend_the_window():
    logic = door(grant_window_s=10)
    logic.access(T0, granted=True)
    logic.exit_request(T0 + 8 * S)
    assert logic.is_authorised(T0 + 17 * S)
    assert not logic.is_authorised(T0 + 18 * S + 1)


def test_held_open_is_reported_once_per_opening_at_the_instant_the_limit_was_reached():
    logic = door(held_open_s=30)
    logic.access(T0, granted=True)
    logic.contact(T0 + S, is_open=True)
    assert logic.next_due_ms() == T0 + 31 * S
    assert logic.tick(T0 + 30 * S) == []
    held = logic.tick(T0 + 45 * S)  # the tick came late: stamped when the limit was reached
    assert kinds(held) == ["door.held_open"]
    assert held[0].ts_ms == T0 + 31 * S
    assert held[0].data == {"open_s": 30.0, "door": "lobby"}
    assert logic.tick(T0 + 90 * S) == []
    assert logic.next_due_ms() is None
    assert kinds(logic.contact(T0 + 100 * S, is_open=False)) == ["door.contact"]
    # The next opening has a limit of its own.
    logic.contact(T0 + 200 * S, is_open=True)
    assert kinds(logic.tick(T0 + 230 * S)) == ["door.held_open"]


def test_a_missed_held_open_comes_before_the_closing_that_reveals_it():
    logic = door(held_open_s=30)
    logic.contact(T0, is_open=True)
    events = logic.contact(T0 + 40 * S, is_open=False)
    assert kinds(events) == ["door.held_open", "door.contact"]
    assert [e.ts_ms for e in events] == [T0 + 30 * S, T0 + 40 * S]


def test_a_door_closed_in_time_is_never_held_open():
    logic = door(held_open_s=30)
    logic.contact(T0, is_open=True)
    logic.contact(T0 + 29 * S, is_open=False)
    assert logic.tick(T0 + 3600 * S) == []
    assert logic.next_due_ms() is None


def test_held_open_can_be_switched_off():
    logic = door(held_open_s=None)
    logic.contact(T0, is_open=True)
    assert logic.next_due_ms() is None
    assert logic.tick(T0 + 86_400 * S) == []


def test_the_strike_relocks_after_an_authorised_opening_closes():
    logic = door(grant_window_s=10, relock_s=1)
    logic.access(T0, granted=True)
    logic.contact(T0 + 1 * S, is_open=True)
    logic.contact(T0 + 3 * S, is_open=False)
    # The door swings back open half a second later: the same opening, not forced.
    assert kinds(logic.contact(T0 + 3500, is_open=True)) == ["door.contact"]
    logic.contact(T0 + 4 * S, is_open=False)
    # A second person on the same grant a few seconds later is a forced entry.
    assert kinds(logic.contact(T0 + 7 * S, is_open=True)) == ["door.contact", "door.forced"]


def test_a_forced_door_closing_does_not_shorten_a_later_grant():
    logic = door(grant_window_s=10)
    logic.contact(T0, is_open=True)
    logic.access(T0 + 1 * S, granted=True)  # someone badges while the door is forced open
    logic.contact(T0 + 2 * S, is_open=False)
    assert kinds(logic.contact(T0 + 5 * S, is_open=True)) == ["door.contact"]


def test_an_unknown_door_learns_its_state_without_raising_forced():
    logic = door(initial=DoorState.UNKNOWN, held_open_s=30)
    events = logic.contact(T0, is_open=True)
    assert kinds(events) == ["door.contact"]
    assert kinds(logic.tick(T0 + 30 * S)) == ["door.held_open"]

    closed = door(initial=DoorState.UNKNOWN)
    assert [e.data for e in closed.contact(T0, is_open=False)] == [{"open": False, "door": "lobby"}]
    assert kinds(closed.contact(T0 + S, is_open=True)) == ["door.contact", "door.forced"]


def test_repeated_reports_of_the_same_state_say_nothing():
    logic = door()
    logic.contact(T0, is_open=True)
    assert logic.contact(T0 + S, is_open=True) == []
    assert logic.contact(T0 + 2 * S, is_open=False) != []
    assert logic.contact(T0 + 3 * S, is_open=False) == []


def test_a_door_without_a_name_leaves_it_out():
    logic = DoorLogic("gate-reader", DoorSettings(), initial=DoorState.CLOSED)
    events = logic.contact(T0, is_open=True)
    assert [e.data for e in events] == [{"open": True}, {}]


@pytest.mark.parametrize(
    "settings",
    [{"grant_window_s": 0}, {"held_open_s": 0}, {"held_open_s": -1}, {"relock_s": -0.1}],
)
def test_nonsensical_settings_are_refused(settings):
    with pytest.raises(ValueError, match="must"):
        DoorSettings(**settings)


def test_every_event_is_valid_on_the_wire():
    logic = door(held_open_s=5)
    events = logic.exit_request(T0)
    events += logic.contact(T0 + S, is_open=True)
    events += logic.tick(T0 + 10 * S)
    events += logic.contact(T0 + 11 * S, is_open=False)
    events += logic.contact(T0 + 30 * S, is_open=True)
    assert kinds(events) == [
        "door.exit_request",
        "door.contact",
        "door.held_open",
        "door.contact",
        "door.contact",
        "door.forced",
    ]
    for event in events:
        validate_event_data(event.kind, dict(event.data))


@pytest.mark.parametrize("seed", range(20))
def test_random_input_sequences_keep_the_invariants(seed):
    rng = random.Random(seed)
    logic = door(
        initial=rng.choice(list(DoorState)),
        grant_window_s=rng.choice([1, 5, 10]),
        held_open_s=rng.choice([None, 2, 30]),
        relock_s=rng.choice([0, 1]),
    )
    now = T0
    events: list[DeviceEvent] = []
    authorised_openings = 0
    for _ in range(300):
        now += rng.randrange(0, 4 * S)
        action = rng.random()
        if action < 0.4:
            is_open = rng.random() < 0.5
            was_authorised = logic.is_authorised(now)
            before = logic.state
            new = logic.contact(now, is_open=is_open)
            if is_open and before is DoorState.CLOSED and "door.forced" not in kinds(new):
                assert was_authorised
                authorised_openings += 1
            if is_open and before is DoorState.CLOSED and not was_authorised:
                assert "door.forced" in kinds(new)
            events += new
        elif action < 0.55:
            events += logic.access(now, granted=rng.random() < 0.7)
        elif action < 0.65:
            events += logic.exit_request(now)
        else:
            events += logic.tick(now)
    # Timestamps never go backwards, contact reports alternate, held_open once per opening.
    assert [e.ts_ms for e in events] == sorted(e.ts_ms for e in events)
    contacts = [e.data["open"] for e in events if e.kind == "door.contact"]
    assert all(a != b for a, b in itertools.pairwise(contacts))
    held_since_open = 0
    for event in events:
        if event.kind == "door.contact":
            held_since_open = 0
        elif event.kind == "door.held_open":
            held_since_open += 1
            assert held_since_open == 1
        validate_event_data(event.kind, dict(event.data))
