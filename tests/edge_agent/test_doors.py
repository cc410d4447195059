"""Doors assembled from devices of several drivers: forced and held-open doors."""

from __future__ import annotations

from pathlib import Path

import orjson

from device_drivers import DeviceEvent
from edge_agent import DoorConfig, EdgeAgent, parse_gateway_config
from edge_agent.doors import Doors
from tests.servers import free_port

GATE = DoorConfig(
    name="east-gate",
    contact="gate-contact",
    exit_buttons=("gate-rex",),
    readers=("gate-reader",),
    grant_window_s=10,
    held_open_s=60,
)
T0 = 1_800_000_000_000


def contact(ts: int, *, is_open: bool) -> DeviceEvent:
    return DeviceEvent("gate-contact", ts, "door.contact", {"open": is_open, "door": "east-gate"})


def kinds(events: list[DeviceEvent]) -> list[str]:
    return [e.kind for e in events]


def test_opening_without_grant_or_exit_request_is_forced() -> None:
    doors = Doors([GATE])
    assert doors.observe(contact(T0, is_open=False)) == []  # learns the initial state
    forced = doors.observe(contact(T0 + 1000, is_open=True))
    assert kinds(forced) == ["door.forced"]
    assert forced[0].device == "gate-contact"
    assert forced[0].data == {"door": "east-gate"}


def test_a_grant_from_another_driver_authorises_the_opening() -> None:
    doors = Doors([GATE])
    doors.observe(contact(T0, is_open=False))
    grant = DeviceEvent(
        "gate-reader",
        T0 + 1000,
        "door.access",
        {"credential": "h1:" + "0" * 32, "format": "wiegand26", "granted": True},
    )
    assert doors.observe(grant) == []
    assert doors.observe(contact(T0 + 3000, is_open=True)) == []
    assert doors.observe(contact(T0 + 6000, is_open=False)) == []


def test_an_exit_request_authorises_and_a_denied_card_does_not() -> None:
    doors = Doors([GATE])
    doors.observe(contact(T0, is_open=False))
    denied = DeviceEvent(
        "gate-reader",
        T0 + 500,
        "door.access",
        {"credential": "h1:" + "0" * 32, "format": "wiegand26", "granted": False},
    )
    assert doors.observe(denied) == []
    assert kinds(doors.observe(contact(T0 + 1000, is_open=True))) == ["door.forced"]
    doors.observe(contact(T0 + 2000, is_open=False))
    doors.observe(DeviceEvent("gate-rex", T0 + 20_000, "door.exit_request", {"door": "east-gate"}))
    assert doors.observe(contact(T0 + 21_000, is_open=True)) == []


def test_a_door_held_open_is_reported_once_by_time_alone() -> None:
    doors = Doors([GATE])
    doors.observe(contact(T0, is_open=False))
    doors.observe(DeviceEvent("gate-rex", T0, "door.exit_request", {}))
    doors.observe(contact(T0 + 1000, is_open=True))
    assert doors.tick(T0 + 30_000) == []
    held = doors.tick(T0 + 62_000)
    assert kinds(held) == ["door.held_open"]
    assert doors.tick(T0 + 120_000) == []


def test_events_of_other_devices_are_ignored() -> None:
    doors = Doors([GATE])
    other = DeviceEvent("lobby-contact", T0, "door.contact", {"open": True})
    assert doors.observe(other) == []


def test_the_agent_publishes_what_the_door_adds(tmp_path: Path) -> None:
    config = parse_gateway_config(
        {
            "site": "s1",
            "gateway": "gw1",
            "data_dir": str(tmp_path),
            "mqtt": {"port": free_port()},
            "privacy": {"site_secret": "doors-test-site-secret"},
            "doors": [GATE.model_dump()],
        }
    )
    agent = EdgeAgent(config)
    agent._accept(contact(T0, is_open=False))
    agent._accept(contact(T0 + 1000, is_open=True))
    agent._queue.commit()
    published = [orjson.loads(m.payload) for m in agent._queue.take_live(0, 100)]
    assert sorted((p["dev"], p["kind"]) for p in published) == [
        ("gate-contact", "door.contact"),
        ("gate-contact", "door.contact"),
        ("gate-contact", "door.forced"),
    ]
    agent._queue.close()
