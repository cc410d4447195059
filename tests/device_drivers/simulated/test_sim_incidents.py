"""Each incident type produces what it should, at the right virtual time."""

from __future__ import annotations

from typing import Any

from device_drivers import DeviceEvent, DriverOutput
from device_drivers.simulated.devices import CardPool
from tests.device_drivers.simulated.sim_helpers import (
    START_MS,
    events,
    make_config,
    run,
    samples,
    wire_data,
)

MIN = 60_000

HOME: list[dict[str, Any]] = [
    {"id": "smoke", "kind": "smoke"},
    {"id": "th", "kind": "temp_humidity"},
    {"id": "th-next-door", "kind": "temp_humidity"},
    {"id": "gas", "kind": "gas"},
    {"id": "leak", "kind": "water_leak"},
    {"id": "sos", "kind": "emergency_button"},
    {"id": "co2", "kind": "co2"},
]
# Readers and cameras with no random activity, so only the incident shows.
QUIET_GATE: list[dict[str, Any]] = [
    {"id": "gate", "kind": "door_reader", "door": "east-gate", "rate_per_hour": 0},
    {"id": "cam", "kind": "camera", "zone": "gate", "line": "gate-line", "rate_per_hour": 0},
]


async def play(
    devices: list[dict[str, Any]],
    incidents: list[dict[str, Any]],
    seconds: float,
    *,
    interval_s: float = 10,
    **scenario: Any,
) -> list[DriverOutput]:
    config = make_config(
        devices, interval_s=interval_s, scenario={"incidents": incidents, **scenario}
    )
    outputs = await run(config, seconds, step_s=60)
    for event in events(outputs):
        wire_data(event)
    return outputs


def at(event: DeviceEvent) -> int:
    """Milliseconds since the start of the run."""
    return event.ts_ms - START_MS


def timeline(outputs: list[DriverOutput], device: str) -> list[tuple[int, str, dict[str, Any]]]:
    return [(at(e), e.kind, dict(e.data)) for e in events(outputs, device=device)]


async def test_smoke_alarms_and_heats_the_flat() -> None:
    incident = {"at": "10m", "device": "smoke", "do": "smoke", "duration": "5m", "heat": ["th"]}
    outputs = await play(HOME, [incident], 3600)
    assert timeline(outputs, "smoke") == [
        (10 * MIN, "alarm.smoke", {"active": True}),
        (15 * MIN, "alarm.smoke", {"active": False}),
    ]
    for sample in samples(outputs, "smoke"):
        inside = 10 * MIN <= sample.ts_ms - START_MS < 15 * MIN
        assert sample.values["smoke"] == (1.0 if inside else 0.0)

    def temperature(device: str, offset_ms: int) -> float:
        return next(
            s.values["temperature"]
            for s in samples(outputs, device)
            if s.ts_ms - START_MS >= offset_ms
        )

    before = temperature("th", 9 * MIN)
    peak = temperature("th", 15 * MIN)
    assert 25 < peak - before < 45
    assert temperature("th", 12 * MIN) - before > 8  # climbing steeply, not in one jump
    assert temperature("th", 55 * MIN) < peak - 10  # cooling afterwards
    # Only the listed sensor heats up.
    neighbour = [s.values["temperature"] for s in samples(outputs, "th-next-door")]
    assert max(neighbour) - min(neighbour) < 3


async def test_gas_alarm_carries_the_level() -> None:
    incident = {"at": "20m", "device": "gas", "do": "gas", "level": 30, "duration": "10m"}
    outputs = await play(HOME, [incident], 3600)
    assert timeline(outputs, "gas") == [
        (20 * MIN, "alarm.gas", {"active": True, "level": 30.0}),
        (30 * MIN, "alarm.gas", {"active": False}),
    ]
    during = [
        s.values["gas"]
        for s in samples(outputs, "gas")
        if 20 * MIN <= s.ts_ms - START_MS < 30 * MIN
    ]
    after = [s.values["gas"] for s in samples(outputs, "gas") if s.ts_ms - START_MS >= 30 * MIN]
    assert len(during) == 60
    assert all(25 < level < 35 for level in during)
    assert all(level < 2 for level in after)


async def test_water_leak_alarms_and_reads_wet() -> None:
    incident = {"at": "5m", "device": "leak", "do": "water_leak", "duration": "2m"}
    outputs = await play(HOME, [incident], 1800)
    assert timeline(outputs, "leak") == [
        (5 * MIN, "alarm.water_leak", {"active": True}),
        (7 * MIN, "alarm.water_leak", {"active": False}),
    ]
    wet = [s for s in samples(outputs, "leak") if s.values["water_leak"] == 1.0]
    assert len(wet) == 12
    assert all(5 * MIN <= s.ts_ms - START_MS < 7 * MIN for s in wet)


async def test_emergency_button_press() -> None:
    incident = {"at": "1h30m", "device": "sos", "do": "emergency_button"}
    outputs = await play(HOME, [incident], 2 * 3600)
    assert timeline(outputs, "sos") == [(90 * MIN, "emergency.button", {"pressed": True})]


async def test_door_forced() -> None:
    incident = {"at": "10m", "device": "gate", "do": "door_forced", "open_s": 45}
    outputs = await play(QUIET_GATE, [incident], 3600)
    assert timeline(outputs, "gate") == [
        (10 * MIN, "door.contact", {"open": True, "door": "east-gate"}),
        (10 * MIN, "door.forced", {"door": "east-gate"}),
        (10 * MIN + 30_000, "door.held_open", {"open_s": 30.0, "door": "east-gate"}),
        (10 * MIN + 45_000, "door.contact", {"open": False, "door": "east-gate"}),
    ]


async def test_door_held_open_after_a_grant() -> None:
    incident = {"at": "10m", "device": "gate", "do": "door_held_open", "open_s": "3m"}
    outputs = await play(QUIET_GATE, [incident], 3600)
    opened = 10 * MIN + 1500
    assert timeline(outputs, "gate") == [
        (
            10 * MIN,
            "door.access",
            {"format": "wiegand26", "bits": 26, "granted": True, "door": "east-gate"},
        ),
        (opened, "door.contact", {"open": True, "door": "east-gate"}),
        (opened + 30_000, "door.held_open", {"open_s": 30.0, "door": "east-gate"}),
        (opened + 3 * MIN, "door.contact", {"open": False, "door": "east-gate"}),
    ]
    grant = events(outputs, "door.access")[0]
    assert grant.credential in {card.raw for card in CardPool(7, 40).cards}


async def test_denied_cards_burst_from_unknown_cards() -> None:
    incident = {"at": "10m", "device": "gate", "do": "denied_cards", "count": 7, "within": "40s"}
    outputs = await play(QUIET_GATE, [incident], 3600)
    denied = events(outputs, device="gate")
    assert len(denied) == 7
    assert at(denied[0]) == 10 * MIN
    assert all(10 * MIN <= at(e) < 10 * MIN + 40_000 for e in denied)
    assert all(e.kind == "door.access" for e in denied)
    assert all(e.data["granted"] is False and e.data["reason"] == "unknown_card" for e in denied)
    residents = {card.raw for card in CardPool(7, 40).cards}
    assert {e.credential for e in denied}.isdisjoint(residents)
    assert all("credential" not in e.data for e in denied)


async def test_intrusion_line_crossing_and_tamper() -> None:
    incidents = [
        {"at": "5m", "device": "cam", "do": "intrusion", "zone": "car-park", "duration": "1m"},
        {"at": "10m", "device": "cam", "do": "intrusion"},
        {"at": "20m", "device": "cam", "do": "line_crossing", "direction": "out"},
        {"at": "30m", "device": "cam", "do": "tamper", "duration": "2m"},
    ]
    outputs = await play(QUIET_GATE, incidents, 3600)
    assert timeline(outputs, "cam") == [
        (5 * MIN, "camera.intrusion", {"zone": "car-park", "object": "person", "active": True}),
        (6 * MIN, "camera.intrusion", {"zone": "car-park", "object": "person", "active": False}),
        (10 * MIN, "camera.intrusion", {"zone": "gate", "object": "person", "active": True}),
        (
            10 * MIN + 30_000,
            "camera.intrusion",
            {"zone": "gate", "object": "person", "active": False},
        ),
        (
            20 * MIN,
            "camera.line_crossed",
            {"line": "gate-line", "direction": "out", "object": "person"},
        ),
        (30 * MIN, "camera.tamper", {"active": True}),
        (32 * MIN, "camera.tamper", {"active": False}),
    ]


async def test_silence_mutes_a_dwelling_for_a_welfare_check() -> None:
    devices: list[dict[str, Any]] = [
        {"id": "pir", "kind": "motion", "rate_per_hour": 200},
        {"id": "th", "kind": "temp_humidity"},
    ]
    incident = {"at": "2h", "device": "pir", "do": "silence", "duration": "12h"}
    outputs = await play(devices, [incident], 20 * 3600, interval_s=600)
    moves = [at(e) for e in events(outputs, "presence.motion")]
    assert any(ts < 2 * 60 * MIN for ts in moves)
    assert not [ts for ts in moves if 2 * 60 * MIN <= ts < 14 * 60 * MIN]
    assert any(ts >= 14 * 60 * MIN for ts in moves)
    # Other devices carry on.
    assert len(samples(outputs, "th")) == 20 * 6


async def test_offline_for_good_and_for_a_while() -> None:
    devices = [*QUIET_GATE, {"id": "th", "kind": "temp_humidity"}, {"id": "co2", "kind": "co2"}]
    devices[0] = {**devices[0], "rate_per_hour": 60}
    incidents = [
        {"at": "30m", "device": "th", "do": "offline"},
        {"at": "30m", "device": "gate", "do": "offline", "duration": "2h"},
        # A reader that is offline reports nothing of what happens to it.
        {"at": "1h", "device": "gate", "do": "door_forced"},
    ]
    outputs = await play(devices, incidents, 4 * 3600, interval_s=60)
    th = samples(outputs, "th")
    assert len(th) == 30
    assert all(at_ms < 30 * MIN for at_ms in (s.ts_ms - START_MS for s in th))
    gate = [at(e) for e in events(outputs, device="gate")]
    assert not [ts for ts in gate if 30 * MIN <= ts < 150 * MIN]
    assert [ts for ts in gate if ts >= 150 * MIN]
    assert not events(outputs, "door.forced")
    assert len(samples(outputs, "co2")) == 4 * 60


async def test_heat_without_smoke() -> None:
    incident = {"at": "10m", "device": "th", "do": "heat", "duration": "10m", "rise": 20}
    outputs = await play(HOME, [incident], 3600)
    series = {s.ts_ms - START_MS: s.values["temperature"] for s in samples(outputs, "th")}
    before = max(t for offset, t in series.items() if offset < 10 * MIN)
    peak = max(series.values())
    assert 15 < peak - before < 25
    assert not events(outputs, "alarm.smoke")


async def test_stuck_sensor_repeats_the_same_values() -> None:
    incident = {"at": "30m", "device": "co2", "do": "stuck", "duration": "1h"}
    outputs = await play(HOME, [incident], 3 * 3600, interval_s=60)
    series = [(s.ts_ms - START_MS, dict(s.values)) for s in samples(outputs, "co2")]
    before = [v for t, v in series if t < 30 * MIN]
    during = [v for t, v in series if 30 * MIN <= t < 90 * MIN]
    after = [v for t, v in series if t >= 90 * MIN]
    assert len(during) == 60
    assert all(v == before[-1] for v in during)
    assert len({v["co2"] for v in before}) > 5
    assert len({v["co2"] for v in after}) > 5


async def test_incidents_due_before_open_play_at_their_scenario_time() -> None:
    # A demo gateway opens a little after the shared epoch: it still plays the whole scenario.
    incidents = [
        {"at": "30m", "device": "sos", "do": "emergency_button"},  # half an hour before open
        {"at": "50m", "device": "smoke", "do": "smoke", "duration": "20m"},
        {"at": "2h", "device": "sos", "do": "emergency_button"},
    ]
    outputs = await play(HOME, incidents, 2 * 3600, epoch_ms=START_MS - 60 * MIN)
    assert all(isinstance(out, DeviceEvent) for out in outputs[:2])  # the late ones come first
    assert [(at(e), e.kind, dict(e.data)) for e in events(outputs)] == [
        (-30 * MIN, "emergency.button", {"pressed": True}),
        (-10 * MIN, "alarm.smoke", {"active": True}),
        (10 * MIN, "alarm.smoke", {"active": False}),
        (60 * MIN, "emergency.button", {"pressed": True}),
    ]
    stamps = [out.ts_ms for out in outputs]
    assert stamps == sorted(stamps)
    # Still in alarm when the driver opened.
    assert samples(outputs, "smoke")[0].values["smoke"] == 1.0


async def test_scenario_epoch_is_shared_not_per_driver() -> None:
    incident = {"at": "5m", "device": "sos", "do": "emergency_button"}
    outputs = await play(HOME, [incident], 3600, epoch_ms=START_MS + 10 * MIN)
    assert [at(e) for e in events(outputs, device="sos")] == [15 * MIN]


async def test_overlapping_alarms_clear_once() -> None:
    incidents = [
        {"at": "10m", "device": "smoke", "do": "smoke", "duration": "10m"},
        {"at": "15m", "device": "smoke", "do": "smoke", "duration": "10m"},
    ]
    outputs = await play(HOME, incidents, 3600)
    assert timeline(outputs, "smoke") == [
        (10 * MIN, "alarm.smoke", {"active": True}),
        (15 * MIN, "alarm.smoke", {"active": True}),
        (25 * MIN, "alarm.smoke", {"active": False}),
    ]
