from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from device_drivers import DeviceEvent, DriverConfigError, ManualClock, Sample
from device_drivers.simulated import SimulatedDriver
from device_drivers.simulated.devices import CardPool, wiegand26
from tests.device_drivers.simulated.sim_helpers import (
    ALL_KINDS_DEVICES,
    DAY_MS,
    HOUR_MS,
    START_MS,
    events,
    make_config,
    run,
    samples,
    settle,
    wire_data,
)
from wire import Reading

VALUE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@pytest.fixture(scope="module")
def day_of_everything() -> list[Sample | DeviceEvent]:
    """One virtual day of every device kind, shared by the read-only tests below."""
    return asyncio.run(run(make_config(ALL_KINDS_DEVICES, interval_s=60), 24 * 3600))


def local_hour(ts_ms: int, tz: str = "UTC") -> int:
    return dt.datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz)).hour


def test_wiegand26_matches_the_reference_frame() -> None:
    # FC 123, CN 4567 is 0x2F623AE (reference/device-protocols.md, section 2).
    assert wiegand26(123, 4567) == 0x2F623AE
    assert wiegand26(99, 999) == 0x0C607CF


async def test_same_seed_gives_identical_outputs() -> None:
    config = make_config(ALL_KINDS_DEVICES, seed=11)
    first = await run(config, 6 * 3600)
    second = await run(config, 6 * 3600)
    assert len(first) > 1000
    assert first == second
    # Credentials are compared too (dataclass equality includes them).
    assert [out.credential for out in events(first, "door.access")] == [
        out.credential for out in events(second, "door.access")
    ]


_FINGERPRINT = """
import asyncio, hashlib
from tests.device_drivers.simulated.sim_helpers import ALL_KINDS_DEVICES, make_config, run
outputs = asyncio.run(run(make_config(ALL_KINDS_DEVICES), 3 * 3600))
text = repr([(out, getattr(out, "credential", None)) for out in outputs])
print(len(outputs), hashlib.sha256(text.encode()).hexdigest())
"""


def test_outputs_do_not_depend_on_the_interpreters_hash_seed() -> None:
    # Per-device seeds use a stable hash; Python's hash() of a str changes between processes.
    root = Path(__file__).resolve().parents[3]
    prints = {
        subprocess.run(
            [sys.executable, "-c", _FINGERPRINT],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert len(prints) == 1
    assert int(prints.pop().split()[0]) > 100


async def test_different_seed_gives_different_outputs() -> None:
    first = await run(make_config(ALL_KINDS_DEVICES, seed=1), 3600)
    second = await run(make_config(ALL_KINDS_DEVICES, seed=2), 3600)
    assert first != second
    assert [s.values for s in samples(first, "b3-2-201-th")] != [
        s.values for s in samples(second, "b3-2-201-th")
    ]


async def test_a_device_behaves_the_same_whatever_shares_its_driver() -> None:
    alone = await run(make_config([{"id": "east-gate-reader", "kind": "door_reader"}]), 6 * 3600)
    together = await run(
        make_config([*ALL_KINDS_DEVICES[:3], {"id": "east-gate-reader", "kind": "door_reader"}]),
        6 * 3600,
    )
    assert [o for o in together if o.device == "east-gate-reader"] == alone


def test_outputs_are_time_ordered_and_wire_valid(
    day_of_everything: list[Sample | DeviceEvent],
) -> None:
    outputs = day_of_everything
    stamps = [out.ts_ms for out in outputs]
    assert stamps == sorted(stamps)
    assert stamps[0] >= START_MS
    assert stamps[-1] <= START_MS + DAY_MS
    assert {out.device for out in outputs} == {d["id"] for d in ALL_KINDS_DEVICES}
    for sample in samples(outputs):
        assert all(VALUE_NAME.match(name) for name in sample.values)
        Reading.model_validate({"dev": sample.device, "ts": sample.ts_ms, "values": sample.values})


def test_every_event_validates_against_the_wire_schema(
    day_of_everything: list[Sample | DeviceEvent],
) -> None:
    kinds = Counter(event.kind for event in events(day_of_everything))
    assert {
        "door.access",
        "door.contact",
        "camera.motion",
        "presence.motion",
    } <= kinds.keys()
    for event in events(day_of_everything):
        normalised = wire_data(event)
        assert normalised == {**event.data, **normalised}


def test_raw_card_numbers_never_go_into_data(
    day_of_everything: list[Sample | DeviceEvent],
) -> None:
    reads = events(day_of_everything, "door.access")
    assert len(reads) > 50
    raw_numbers = {event.credential for event in reads}
    assert None not in raw_numbers
    for event in events(day_of_everything):
        assert "credential" not in event.data
        assert not raw_numbers & {str(value) for value in event.data.values()}
        if event.kind != "door.access":
            assert event.credential is None
    for event in reads:
        assert event.credential is not None
        assert re.fullmatch(r"26:[0-9a-f]{8}", event.credential)  # the shared convention
        assert event.data["format"] == "wiegand26"
        assert event.data["bits"] == 26
        assert event.data["door"] == "east-gate"


def test_resident_cards_come_from_a_small_pool(
    day_of_everything: list[Sample | DeviceEvent],
) -> None:
    pool = {card.raw for card in CardPool(7, 40).cards}
    seen = {event.credential for event in events(day_of_everything, "door.access")}
    assert seen <= pool
    assert len(seen) > 10  # many residents, not one card over and over


async def test_temperature_follows_a_daily_cycle() -> None:
    devices = [{"id": f"th-{i}", "kind": "temp_humidity"} for i in range(3)]
    outputs = await run(make_config(devices, interval_s=300), 3 * 24 * 3600, step_s=3600)
    by_hour: dict[int, list[float]] = {15: [], 5: []}
    humidity: dict[int, list[float]] = {15: [], 5: []}
    for sample in samples(outputs):
        hour = local_hour(sample.ts_ms)
        if hour in by_hour:
            by_hour[hour].append(sample.values["temperature"])
            humidity[hour].append(sample.values["humidity"])
    assert len(by_hour[15]) >= 3 * 3 * 10
    assert statistics.mean(by_hour[15]) > statistics.mean(by_hour[5]) + 2
    # Humidity moves the other way.
    assert statistics.mean(humidity[15]) < statistics.mean(humidity[5])
    for sample in samples(outputs):
        assert 10 < sample.values["temperature"] < 35
        assert 3 <= sample.values["humidity"] <= 99


async def test_daily_cycle_follows_the_configured_time_zone() -> None:
    config = make_config(
        [{"id": "th", "kind": "temp_humidity"}], interval_s=300, timezone="Asia/Shanghai"
    )
    outputs = await run(config, 3 * 24 * 3600, step_s=3600)
    afternoon = [
        s.values["temperature"]
        for s in samples(outputs)
        if local_hour(s.ts_ms, "Asia/Shanghai") == 15
    ]
    before_dawn = [
        s.values["temperature"]
        for s in samples(outputs)
        if local_hour(s.ts_ms, "Asia/Shanghai") == 5
    ]
    # 15:00 in Shanghai is 07:00 UTC: in UTC terms the warm hour is in the morning.
    utc_morning = [s.values["temperature"] for s in samples(outputs) if local_hour(s.ts_ms) == 7]
    assert statistics.mean(afternoon) > statistics.mean(before_dawn) + 2
    assert statistics.mean(utc_morning) == pytest.approx(statistics.mean(afternoon))


async def test_co2_rises_with_people_at_home() -> None:
    devices = [{"id": f"co2-{i}", "kind": "co2"} for i in range(3)]
    outputs = await run(make_config(devices, interval_s=300), 3 * 24 * 3600, step_s=3600)
    night = [s.values["co2"] for s in samples(outputs) if local_hour(s.ts_ms) in {1, 2, 3, 4}]
    midday = [s.values["co2"] for s in samples(outputs) if local_hour(s.ts_ms) in {12, 13, 14}]
    assert statistics.mean(night) > statistics.mean(midday) + 150
    assert min(s.values["co2"] for s in samples(outputs)) >= 380
    assert max(s.values["co2"] for s in samples(outputs)) < 2000


async def test_particulates_keep_plausible_ratios() -> None:
    devices = [{"id": f"pm-{i}", "kind": "pm25"} for i in range(3)]
    outputs = await run(make_config(devices, interval_s=120), 24 * 3600, step_s=3600)
    assert len(samples(outputs)) > 1000
    for sample in samples(outputs):
        values = sample.values
        assert set(values) == {"pm1", "pm25", "pm10"}
        assert 0 < values["pm1"] <= values["pm25"] <= values["pm10"] < 500
        assert values["pm25"] / values["pm10"] > 0.4


def test_detectors_send_heartbeats_with_battery(
    day_of_everything: list[Sample | DeviceEvent],
) -> None:
    expected = {
        "pump-leak": {"water_leak", "battery"},
        "b3-2-201-smoke": {"smoke", "battery"},
        "b3-2-201-sos": {"battery"},
        "b3-2-201-gas": {"gas"},
    }
    for device, names in expected.items():
        beats = samples(day_of_everything, device)
        assert len(beats) == 24 * 60  # one a minute
        assert all(set(s.values) == names for s in beats)
        assert all(0 <= s.values.get("battery", 50) <= 100 for s in beats)
        assert all(
            s.values.get("smoke", 0) == 0 and s.values.get("water_leak", 0) == 0 for s in beats
        )
        assert all(s.values.get("gas", 0) < 2 for s in beats)
    # Alarms stay quiet without a scenario.
    assert not [e for e in events(day_of_everything) if e.kind.startswith("alarm.")]
    assert not events(day_of_everything, "emergency.button")


def counts_by_period(
    stamps: list[int], day_hours: set[int], night_hours: set[int]
) -> tuple[float, float]:
    """Events per hour by day and by night."""
    day = sum(1 for ts in stamps if local_hour(ts) in day_hours)
    night = sum(1 for ts in stamps if local_hour(ts) in night_hours)
    return day / len(day_hours), night / len(night_hours)


async def test_door_reads_are_busier_by_day_and_mostly_granted() -> None:
    devices = [{"id": "gate", "kind": "door_reader", "door": "east-gate"}]
    outputs = await run(make_config(devices), 4 * 24 * 3600, step_s=3600)
    reads = events(outputs, "door.access")
    day, night = counts_by_period([e.ts_ms for e in reads], set(range(7, 21)), {0, 1, 2, 3, 4})
    assert day > 4 * night > 0
    granted = [e for e in reads if e.data["granted"]]
    assert 0.9 < len(granted) / len(reads) < 1
    assert all(e.data.get("reason") == "expired" for e in reads if not e.data["granted"])


async def test_a_grant_opens_and_closes_the_door() -> None:
    devices = [{"id": "gate", "kind": "door_reader"}]
    outputs = await run(make_config(devices), 24 * 3600, step_s=3600)
    door = [e for e in events(outputs) if e.kind in {"door.access", "door.contact"}]
    assert all(e.data["door"] == "gate" for e in door)  # defaults to the device id
    opens = 0
    for i, event in enumerate(door):
        if event.kind == "door.contact" and event.data["open"]:
            opens += 1
            # Opened 1-3 s after a grant (the door may already have been let go of).
            grants = [
                e
                for e in door[:i]
                if e.kind == "door.access" and e.data["granted"] and event.ts_ms - e.ts_ms <= 3000
            ]
            assert grants
            closing = next(
                e for e in door[i + 1 :] if e.kind == "door.contact" and not e.data["open"]
            )
            assert closing.ts_ms > event.ts_ms
    contacts = [e.data["open"] for e in door if e.kind == "door.contact"]
    # Strictly alternating open, closed, open, closed.
    assert contacts == [True, False] * (len(contacts) // 2)
    assert opens > 100
    held = events(outputs, "door.held_open")
    assert len(held) < opens / 20  # rare
    assert all(e.data["open_s"] == 30 for e in held)


async def test_dwelling_motion_is_frequent_by_day_and_rare_at_night() -> None:
    devices = [{"id": f"pir-{i}", "kind": "motion"} for i in range(3)]
    outputs = await run(make_config(devices), 4 * 24 * 3600, step_s=3600)
    starts = [e.ts_ms for e in events(outputs, "presence.motion") if e.data["active"]]
    day, night = counts_by_period(starts, set(range(8, 21)), {1, 2, 3, 4})
    assert day > 10 * night
    assert day > 5  # per hour, over three sensors


async def test_camera_reports_motion_and_sometimes_line_crossings() -> None:
    devices = [{"id": "cam", "kind": "camera", "zone": "gate", "line": "gate-line"}]
    outputs = await run(make_config(devices), 4 * 24 * 3600, step_s=3600)
    motion = events(outputs, "camera.motion")
    assert [e.data["active"] for e in motion] == [True, False] * (len(motion) // 2)
    assert all(e.data["zone"] == "gate" for e in motion)
    crossings = events(outputs, "camera.line_crossed")
    assert 0 < len(crossings) < len(motion) / 2
    assert all(e.data["line"] == "gate-line" for e in crossings)
    assert not events(outputs, "camera.intrusion")
    assert not events(outputs, "camera.tamper")


async def test_emergency_button_is_quiet_without_incidents() -> None:
    outputs = await run(make_config([{"id": "sos", "kind": "emergency_button"}]), 24 * 3600)
    assert not events(outputs)
    assert len(samples(outputs)) == 24 * 60


async def test_incidents_for_other_devices_are_ignored() -> None:
    scenario = {
        "incidents": [
            {"at": "10m", "device": "b9-smoke", "do": "smoke", "heat": ["b9-th"]},
            {"at": "20m", "device": "west-gate", "do": "door_forced"},
            {"at": "30m", "device": "other-cam", "do": "offline"},
        ]
    }
    plain = await run(make_config(ALL_KINDS_DEVICES), 3600)
    with_others = await run(make_config(ALL_KINDS_DEVICES, scenario=scenario), 3600)
    assert with_others == plain


async def test_aclose_stops_a_pending_iteration_promptly() -> None:
    clock = ManualClock(START_MS)
    driver = SimulatedDriver(
        make_config([{"id": "th", "kind": "temp_humidity"}], interval_s=3600), clock=clock
    )
    await driver.open()
    received: list[Sample | DeviceEvent] = []

    async def consume() -> None:
        async for output in driver.outputs():
            received.append(output)  # noqa: PERF401 (read while the iteration runs)

    task = asyncio.create_task(consume())
    await clock.advance(3600)
    await settle()
    assert len(received) == 1
    await settle()
    assert not task.done()  # waiting on the clock for the next hour
    await driver.aclose()
    await asyncio.wait_for(task, timeout=1)
    await driver.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await driver.open()


async def test_a_closed_driver_yields_nothing_more() -> None:
    clock = ManualClock(START_MS)
    driver = SimulatedDriver(make_config([{"id": "th", "kind": "temp_humidity"}]), clock=clock)
    await driver.open()
    stream = driver.outputs()
    await driver.aclose()
    await clock.advance(3600)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), timeout=1)


async def test_outputs_needs_open_and_one_reader() -> None:
    clock = ManualClock(START_MS)
    driver = SimulatedDriver(make_config([{"id": "th", "kind": "temp_humidity"}]), clock=clock)
    with pytest.raises(RuntimeError, match="open"):
        await anext(driver.outputs())
    async with driver:
        first = driver.outputs()
        pending = asyncio.ensure_future(anext(first))
        await settle()
        with pytest.raises(RuntimeError, match="already"):
            await anext(driver.outputs())
        await clock.advance(60)
        assert isinstance(await asyncio.wait_for(pending, timeout=1), Sample)
    with pytest.raises(StopAsyncIteration):
        await anext(first)


async def test_a_driver_whose_devices_all_died_waits_until_closed() -> None:
    scenario = {"incidents": [{"at": "1m", "device": "th", "do": "offline"}]}
    clock = ManualClock(START_MS)
    driver = SimulatedDriver(
        make_config([{"id": "th", "kind": "temp_humidity"}], scenario=scenario), clock=clock
    )
    await driver.open()
    received: list[Sample | DeviceEvent] = []

    async def consume() -> None:
        async for output in driver.outputs():
            received.append(output)  # noqa: PERF401 (read while the iteration runs)

    task = asyncio.create_task(consume())
    for _ in range(10):
        await clock.advance(60)
        await settle()
    assert len(received) == 1  # the one reading before it died
    assert not task.done()  # a dead device is silent, not an ended stream
    await driver.aclose()
    await asyncio.wait_for(task, timeout=1)


async def test_scenario_file_is_read_at_open(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(
        "incidents:\n  - {at: 5m, device: sos, do: emergency_button}\n", encoding="utf-8"
    )
    config = make_config([{"id": "sos", "kind": "emergency_button"}], scenario_file=str(path))
    outputs = await run(config, 600)
    assert [e.ts_ms - START_MS for e in events(outputs)] == [300_000]


async def test_bad_scenario_file_fails_open_naming_the_incident(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(
        "incidents:\n"
        "  - {at: 5m, device: sos, do: emergency_button}\n"
        "  - {at: 5m, device: sos, do: smoke}\n",
        encoding="utf-8",
    )
    config = make_config([{"id": "sos", "kind": "emergency_button"}], scenario_file=str(path))
    driver = SimulatedDriver(config, clock=ManualClock(START_MS))
    with pytest.raises(DriverConfigError) as info:
        await driver.open()
    assert info.value.field == "scenario_file"
    assert (
        "incident 1, field device: sos is of kind emergency_button; do: smoke needs a device of kind smoke"
        in info.value.reason
    )

    path.write_text("incidents:\n  - {at: soon, device: sos, do: emergency_button}\n")
    with pytest.raises(DriverConfigError, match=r"incident 0 \(line 2\), field at"):
        await SimulatedDriver(config, clock=ManualClock(START_MS)).open()


def test_hour_boundaries_use_whole_hours() -> None:
    # Guards the helpers above: START_MS is midnight UTC.
    assert local_hour(START_MS) == 0
    assert local_hour(START_MS + 15 * HOUR_MS) == 15


async def test_on_the_system_clock_routine_readings_are_read_together_with_exact_timestamps() -> (
    None
):
    from device_drivers import SystemClock  # noqa: PLC0415
    from device_drivers.simulated.driver import ROUTINE_QUANTUM_MS  # noqa: PLC0415

    clock = SystemClock()
    devices = [{"id": f"th-{i}", "kind": "temp_humidity"} for i in range(20)]
    driver = SimulatedDriver(make_config(devices, interval_s=1), clock=clock)
    got: list[tuple[int, int]] = []
    async with driver:
        async with asyncio.timeout(10):
            async for output in driver.outputs():
                got.append((output.ts_ms, clock.now_ms()))
                if len(got) == 30:
                    break
    stamps = [ts for ts, _ in got]
    assert stamps == sorted(stamps)
    # Each device keeps its own phase: timestamps are not rounded to the quantum...
    assert len({ts % ROUTINE_QUANTUM_MS for ts in stamps}) > 1
    # ...while deliveries come in groups, at most one quantum late (and some slack for load).
    assert all(0 <= seen - ts <= ROUTINE_QUANTUM_MS + 200 for ts, seen in got)
    assert len({seen // ROUTINE_QUANTUM_MS for _, seen in got}) < len(got)


async def test_on_the_system_clock_an_incident_is_never_held_for_the_quantum() -> None:
    from device_drivers import SystemClock  # noqa: PLC0415
    from device_drivers.simulated.driver import ROUTINE_QUANTUM_MS  # noqa: PLC0415

    clock = SystemClock()
    devices = [
        {"id": "th", "kind": "temp_humidity"},
        {"id": "button", "kind": "emergency_button"},
    ]
    scenario = {"incidents": [{"at": "1.013s", "do": "emergency_button", "device": "button"}]}
    driver = SimulatedDriver(make_config(devices, interval_s=3600, scenario=scenario), clock=clock)
    async with driver:
        urgent = min(driver._urgent)
        # A routine action due just before the incident wakes at the incident, not the grid.
        routine = next(m for _, _, m in driver._heap if m.next_is_routine())
        assert driver._wake_at(urgent - 1, routine) == urgent
        assert driver._wake_at(urgent - 2 * ROUTINE_QUANTUM_MS, routine) % ROUTINE_QUANTUM_MS == 0
        async with asyncio.timeout(5):
            async for output in driver.outputs():
                if isinstance(output, DeviceEvent):
                    assert output.kind == "emergency.button"
                    break
