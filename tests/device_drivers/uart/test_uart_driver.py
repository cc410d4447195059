"""The PMS5003 and MH-Z19 drivers against fake sensors on pseudo-terminals and TCP sockets.

The fakes (see ``uart_helpers``) stand in for the sensors: no real PMS5003 or MH-Z19 can run
here.  Time is a ManualClock; the bytes travel through the kernel's pty and TCP stacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from device_drivers import (
    BUILTIN_DRIVERS,
    DeviceEvent,
    DriverConfigError,
    DriverIOError,
    ManualClock,
    Sample,
    parse_driver_config,
)
from device_drivers.uart import Mhz19Config, Mhz19Driver, Pms5003Config, Pms5003Driver
from device_drivers.uart import mhz19 as mhz19_proto
from device_drivers.uart import pms5003 as pms_proto
from tests.device_drivers.uart.uart_helpers import (
    MHZ19_READ,
    MHZ19_REFERENCE_REPLY,
    PMS_REFERENCE_FRAME,
    START_MS,
    Collector,
    FakeSensor,
    PtyLink,
    answer_commands,
    corrupt_checksum,
    events_of,
    mhz19_reply,
    pms_frame,
    wait_until,
)


@pytest.fixture
def link(tmp_path: Path) -> Iterator[PtyLink]:
    pty = PtyLink(tmp_path / "ttyUSB-sensor")
    yield pty
    pty.vanish()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@contextlib.contextmanager
def running(sensor: FakeSensor) -> Iterator[FakeSensor]:
    sensor.start()
    try:
        yield sensor
    finally:
        sensor.stop()


def pms_config(link: PtyLink, **extra: Any) -> Pms5003Config:
    return Pms5003Config.model_validate(
        {"type": "pms5003", "id": "pms-1", "device": "b3-pm", "port": str(link.link), **extra}
    )


def mhz_config(port: str, **extra: Any) -> Mhz19Config:
    raw = {"type": "mhz19", "id": "co2-1", "device": "b3-co2", "port": port, "interval_s": 10}
    return Mhz19Config.model_validate({**raw, **extra})


def fake_mhz19(fd: int, reply: bytes = MHZ19_REFERENCE_REPLY) -> FakeSensor:
    return FakeSensor(fd, answer=answer_commands({MHZ19_READ: lambda: reply}))


# -- configuration ---------------------------------------------------------------------------


def test_registry_lines_parse_and_create_the_drivers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTIN_DRIVERS, "pms5003", "device_drivers.uart:Pms5003Driver")
    monkeypatch.setitem(BUILTIN_DRIVERS, "mhz19", "device_drivers.uart:Mhz19Driver")
    config = parse_driver_config({"type": "pms5003", "id": "pms-1", "port": "/dev/ttyAMA0"})
    assert isinstance(config, Pms5003Config)
    assert (config.device_id, config.particles, config.mode) == ("pms-1", "atmospheric", "active")
    with pytest.raises(DriverConfigError) as info:
        parse_driver_config({"type": "mhz19", "id": "co2", "port": "/dev/x", "interval_s": 2})
    assert info.value.field == "interval_s"
    with pytest.raises(DriverConfigError) as info:
        parse_driver_config({"type": "mhz19", "id": "co2", "port": "/dev/x", "baud": 9600})
    assert info.value.field == "baud"


def test_a_query_must_be_answered_before_the_next_one() -> None:
    with pytest.raises(ValueError, match="timeout_s must be shorter"):
        Pms5003Config.model_validate(
            {"type": "pms5003", "id": "p", "port": "/dev/x", "mode": "passive", "interval_s": 5}
        )
    with pytest.raises(ValueError, match="timeout_s must be shorter"):
        mhz_config("/dev/x", interval_s=10, timeout_s=10)


async def test_open_fails_with_driver_io_error_when_the_port_is_absent(clock: ManualClock) -> None:
    driver = Mhz19Driver(mhz_config("/dev/no-such-sensor"), clock=clock)
    with pytest.raises(DriverIOError) as info:
        await driver.open()
    assert info.value.device_id == "b3-co2"
    await driver.aclose()


# -- PMS5003 ---------------------------------------------------------------------------------


async def test_pms5003_reports_one_sample_per_interval_of_the_stream(
    link: PtyLink, clock: ManualClock
) -> None:
    driver = Pms5003Driver(pms_config(link, interval_s=60), clock=clock)
    with running(FakeSensor(link.controller, stream=lambda: PMS_REFERENCE_FRAME)) as sensor:
        async with Collector(driver, clock) as run:
            first = await run.sample()
            assert first == Sample("b3-pm", START_MS, {"pm1": 0.0, "pm25": 8.0, "pm10": 8.0})
            await asyncio.sleep(0.2)  # ~10 more frames arrive, all within the same interval
            assert run.since() == []
            assert driver.frame_stats.frames > 3
            await clock.advance(60)
            second = await run.sample()
            assert second.ts_ms == START_MS + 60_000
        assert sensor.received.startswith(pms_proto.ACTIVE_MODE)
    assert driver.device_ids == ("b3-pm",)


async def test_pms5003_reports_standard_particle_values_when_asked(
    link: PtyLink, clock: ManualClock
) -> None:
    frame = pms_frame(standard=(11, 22, 33), atmospheric=(7, 15, 29))
    driver = Pms5003Driver(pms_config(link, particles="standard"), clock=clock)
    with running(FakeSensor(link.controller, stream=lambda: frame)):
        async with Collector(driver, clock) as run:
            sample = await run.sample()
    assert isinstance(sample, Sample)
    assert sample.values == {"pm1": 11.0, "pm25": 22.0, "pm10": 33.0}


async def test_pms5003_in_passive_mode_asks_for_each_frame(
    link: PtyLink, clock: ManualClock
) -> None:
    config = pms_config(link, mode="passive", interval_s=10, timeout_s=2)
    driver = Pms5003Driver(config, clock=clock)
    answer = answer_commands(
        {
            pms_proto.PASSIVE_MODE: lambda: bytes.fromhex("42 4D 00 04 E1 00 01 74"),
            pms_proto.READ: lambda: PMS_REFERENCE_FRAME,
        }
    )
    with running(FakeSensor(link.controller, answer=answer)) as sensor:
        async with Collector(driver, clock) as run:
            assert (await run.sample()).ts_ms == START_MS
            await clock.advance(10)
            assert (await run.sample()).ts_ms == START_MS + 10_000
        assert bytes(sensor.received[:21]) == pms_proto.PASSIVE_MODE + pms_proto.READ * 2
    assert driver.frame_stats.other_frames == 1  # the acknowledgement of the mode command
    assert driver.health.errors == {}


async def test_pms5003_resynchronises_after_noise_truncation_and_damage(
    link: PtyLink, clock: ManualClock
) -> None:
    good = pms_frame(atmospheric=(3, 5, 9))
    garbage = (
        random.Random(7).randbytes(400)
        + PMS_REFERENCE_FRAME[:17]  # truncated
        + corrupt_checksum(PMS_REFERENCE_FRAME)
        + b"\x42\x4d\x00\x14"  # a PMS3003 length
        + PMS_REFERENCE_FRAME[:9]
    )
    driver = Pms5003Driver(pms_config(link), clock=clock)
    with running(FakeSensor(link.controller, period_s=0.05)) as sensor:
        sensor.inject(garbage + good)
        async with Collector(driver, clock) as run:
            sample = await run.sample()
    assert isinstance(sample, Sample)
    assert sample.values == {"pm1": 3.0, "pm25": 5.0, "pm10": 9.0}
    counters = driver.counters()
    assert counters["frames"] == 1
    assert counters["bad_checksum"] >= 2
    assert counters["bad_length"] >= 1
    assert counters["noise_bytes"] >= 390
    assert events_of(run.outputs, "device.fault") == []


@pytest.mark.parametrize(
    ("trouble", "kind", "in_reason"),
    [
        ("silence", "timeout", "no valid frame within 10 s"),
        ("noise", "noise", "noise bytes"),
        ("bad_checksum", "checksum", "bad checksum"),
    ],
)
async def test_pms5003_faults_once_when_no_valid_frame_comes_and_recovers(
    link: PtyLink, clock: ManualClock, trouble: str, kind: str, in_reason: str
) -> None:
    rng = random.Random(3)
    bad = {
        "noise": lambda: rng.randbytes(64),
        "bad_checksum": lambda: corrupt_checksum(PMS_REFERENCE_FRAME),
    }
    healthy = [True]

    def stream() -> bytes:
        if healthy[0]:
            return PMS_REFERENCE_FRAME
        return bad[trouble]() if trouble in bad else b""

    driver = Pms5003Driver(pms_config(link, timeout_s=10, interval_s=30), clock=clock)
    with running(FakeSensor(link.controller, stream=stream)):
        async with Collector(driver, clock) as run:
            await run.sample()
            healthy[0] = False
            await asyncio.sleep(0.1)  # let frames in flight drain
            fault = await run.event("device.fault", advance_s=10, pause_s=0.05)
            assert isinstance(fault, DeviceEvent)
            assert fault.device == "b3-pm"
            assert in_reason in fault.data["reason"]
            for _ in range(5):  # the outage goes on: no second fault
                await clock.advance(10)
                await asyncio.sleep(0.02)
            assert run.since("device.fault") == []
            healthy[0] = True
            recovered = await run.event("device.recovered")
            assert recovered.ts_ms > fault.ts_ms
            assert recovered.data["after_s"] == (recovered.ts_ms - fault.ts_ms) / 1000
            await run.sample(advance_s=10)
    assert driver.health.errors[kind] >= 1
    assert driver.health.errors.total() >= 3


async def test_pms5003_port_that_disappears_and_reappears_at_its_symlink(
    link: PtyLink, clock: ManualClock
) -> None:
    driver = Pms5003Driver(pms_config(link, reconnect_max_s=4), clock=clock)
    sensor = FakeSensor(link.controller, stream=lambda: PMS_REFERENCE_FRAME)
    sensor.start()
    try:
        async with Collector(driver, clock) as run:
            await run.sample()
            sensor.stop()
            link.vanish()  # unplugged: the read fails, then every reopen fails
            fault = await run.event("device.fault", advance_s=1)
            assert "closed" in fault.data["reason"] or "cannot open" in fault.data["reason"]
            io_failures = driver.counters()["io_failures"]
            assert io_failures >= 3
            # The back-off is capped: 1, 2, 4, 4, ... seconds between attempts.
            for _ in range(20):
                await clock.advance(1)
                await asyncio.sleep(0.01)
            assert 5 <= driver.counters()["io_failures"] - io_failures <= 8
            link.appear()  # plugged in again, at a new /dev/pts/N behind the same link
            sensor = FakeSensor(link.controller, stream=lambda: PMS_REFERENCE_FRAME)
            sensor.start()
            await run.event("device.recovered", advance_s=1)
            await run.sample(advance_s=30)
            assert driver.reopens == 1
            assert sensor.received.startswith(pms_proto.ACTIVE_MODE)  # the mode is set again
    finally:
        sensor.stop()


# -- MH-Z19 ----------------------------------------------------------------------------------


async def test_mhz19_polls_each_interval_and_decodes(link: PtyLink, clock: ManualClock) -> None:
    config = mhz_config(str(link.link), abc=False, temperature=True)
    driver = Mhz19Driver(config, clock=clock)
    with running(fake_mhz19(link.controller)) as sensor:
        async with Collector(driver, clock) as run:
            first = await run.sample()
            assert first == Sample("b3-co2", START_MS, {"co2": 636.0, "temperature": 26.0})
            await clock.advance(5)
            await asyncio.sleep(0.05)
            assert run.since() == []  # not asked again before the interval
            await clock.advance(5)
            assert (await run.sample()).ts_ms == START_MS + 10_000
        assert bytes(sensor.received) == mhz19_proto.ABC_OFF + MHZ19_READ * 2


async def test_mhz19_holds_readings_back_while_warming_up(
    link: PtyLink, clock: ManualClock
) -> None:
    driver = Mhz19Driver(mhz_config(str(link.link), warmup_s=25), clock=clock)
    with running(fake_mhz19(link.controller)):
        async with Collector(driver, clock) as run:
            for answered in (1, 2, 3):  # at 0, 10 and 20 s: answered, not reported
                await wait_until(lambda n=answered: driver.frame_stats.frames == n)  # type: ignore[misc]
                await clock.advance(10)
            sample = await run.sample()
            assert run.outputs == [sample]
    assert sample.ts_ms == START_MS + 30_000
    assert driver.health.errors == {}


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (b"", "timeout"),
        (corrupt_checksum(MHZ19_REFERENCE_REPLY), "checksum"),
        (bytes(range(40, 80)), "noise"),
        # Truncated: the first window waits for the rest, the second sees a bad checksum.
        (MHZ19_REFERENCE_REPLY[:6], "timeout"),
    ],
    ids=["silent", "bad-checksum", "noise", "truncated"],
)
async def test_mhz19_that_stops_answering_properly_faults_and_recovers(
    link: PtyLink, clock: ManualClock, reply: bytes, kind: str
) -> None:
    answers = [MHZ19_REFERENCE_REPLY]
    sensor = FakeSensor(link.controller, answer=answer_commands({MHZ19_READ: lambda: answers[0]}))
    driver = Mhz19Driver(mhz_config(str(link.link), failures_to_fault=2), clock=clock)
    with running(sensor):
        async with Collector(driver, clock) as run:
            await run.sample()
            answers[0] = reply
            fault = await run.event("device.fault", advance_s=2, pause_s=0.05)
            assert fault.data["reason"].startswith("no valid frame within 2 s")
            answers[0] = mhz19_reply(950)
            recovered = await run.event("device.recovered", advance_s=2, pause_s=0.05)
            sample = await run.sample()
            assert isinstance(sample, Sample)
            assert sample.values == {"co2": 950.0}
            assert sample.ts_ms == recovered.ts_ms
    assert kind in driver.health.errors
    assert driver.health.errors.total() >= 2


@contextlib.asynccontextmanager
async def tcp_mhz19(port: int = 0) -> AsyncIterator[tuple[asyncio.Server, list[bytes]]]:
    """A fake MH-Z19 behind a TCP server, like ser2net in front of a real one."""
    writers: list[asyncio.StreamWriter] = []
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                query = await reader.readexactly(9)
                received.append(query)
                if query == MHZ19_READ:
                    writer.write(MHZ19_REFERENCE_REPLY)
                    await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield server, received
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def test_mhz19_through_a_socket_url_whose_server_goes_away_and_comes_back(
    clock: ManualClock,
) -> None:
    async with tcp_mhz19() as (server, _):
        port = server.sockets[0].getsockname()[1]
        driver = Mhz19Driver(mhz_config(f"socket://127.0.0.1:{port}"), clock=clock)
        run = Collector(driver, clock)
        await run.__aenter__()
        await run.sample()
    try:
        # The server is gone: the connection breaks, reconnects are refused.
        fault = await run.event("device.fault", advance_s=1)
        assert driver.counters()["io_failures"] >= 3
        assert fault.device == "b3-co2"
        async with tcp_mhz19(port) as (_, received):
            await run.event("device.recovered", advance_s=1)
            await run.sample(advance_s=1)
            assert received[0] == MHZ19_READ
    finally:
        await run.__aexit__(None, None, None)


async def test_close_ends_a_waiting_iteration_and_releases_the_port(
    link: PtyLink, clock: ManualClock
) -> None:
    driver = Mhz19Driver(mhz_config(str(link.link)), clock=clock)
    with pytest.raises(RuntimeError, match="open"):
        await anext(driver.outputs())
    async with Collector(driver, clock) as run:
        await asyncio.sleep(0.05)  # nobody answers; the driver waits on the port and the clock
        with pytest.raises(RuntimeError, match="already"):
            await anext(driver.outputs())
    await driver.aclose()  # idempotent
    assert driver._port is None
    with pytest.raises(RuntimeError, match="closed"):
        await driver.open()
    assert run.outputs == []
