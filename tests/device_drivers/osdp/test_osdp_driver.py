"""The OSDP driver against libosdp PeripheralDevices on pty lines: reads, keys, doors, faults."""

from __future__ import annotations

import asyncio
import random

import osdp_sys  # type: ignore[import-not-found]
import pytest

from device_drivers import SystemClock
from device_drivers.doors import pseudonym_allow_list
from device_drivers.osdp import OsdpDriver
from device_drivers.wiegand import credential, encode_h10301
from edge_agent.pseudonym import Pseudonymiser
from tests.device_drivers.osdp.osdp_harness import (
    CREDENTIAL_FC123_CN4567,
    KEY_A,
    KEY_B,
    FakeReader,
    Line,
    SocketLine,
    osdp_config,
    running,
    wait_online,
    wire_checked,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def line():
    line = Line()
    yield line
    line.close()


@pytest.fixture
def reader(line):
    pd = FakeReader(line.pd_fds[0], 101).start()
    yield pd
    pd.stop()


DOOR_READER = {
    "id": "lobby-reader",
    "address": 101,
    "door": "lobby",
    "contact_input": 0,
    "rex_input": 1,
    "strike_output": 0,
    "strike_s": 5,
}


async def test_a_card_read_is_door_access_with_the_raw_credential_beside_the_data(line, reader):
    async with running(osdp_config(line.port, [DOOR_READER])) as (driver, out):
        await wait_online(driver)
        reader.card()
        event = await out.wait_kind("door.access")
    assert event.device == "lobby-reader"
    assert event.credential == CREDENTIAL_FC123_CN4567
    assert event.credential == credential(26, encode_h10301(123, 4567))
    assert dict(event.data) == {"format": "wiegand26", "bits": 26, "door": "lobby"}
    wire_checked(event)  # valid on the wire once pseudonymised
    # Sanity check against the reference's capture (§1.5): the osdp_RAW reply on the line.
    assert bytes.fromhex("50 00 01 1a 00 bd 88 eb 80") in bytes(line.tap)
    assert driver.counters["cards"] == 1


async def test_bits_that_are_no_known_wiegand_frame_are_reported_raw(line, reader):
    async with running(osdp_config(line.port, [DOOR_READER])) as (driver, out):
        await wait_online(driver)
        reader.card(bytes.fromhex("04a1b2c3"), 32, wiegand=False)  # a 32-bit UID
        uid = await out.wait_kind("door.access")
        reader.card(bytes.fromhex("bd88ebc0"), 26)  # FC123/CN4567 with its odd parity bit flipped
        flipped = await out.wait_for(lambda e: e.kind == "door.access" and e is not uid)
    assert uid.credential == "32:04a1b2c3"
    assert dict(uid.data) == {"format": "osdp_raw", "bits": 32, "door": "lobby"}
    assert flipped.credential == "26:02f623af"
    assert flipped.data["format"] == "osdp_raw"
    assert driver.counters["parity_mismatches"] == 1


async def test_a_pin_typed_on_the_keypad_is_a_credential_too(line, reader):
    async with running(osdp_config(line.port, [DOOR_READER])) as (driver, out):
        await wait_online(driver)
        reader.keys(b"12")  # keys may come a few at a time
        reader.keys(b"34\x0d")  # '#' (0x0D) submits
        pin = await out.wait_kind("door.access", format="keypad")
        reader.keys(b"99\x7f5\x0d")  # '*' (0x7F) clears the entry
        second = await out.wait_for(lambda e: e.kind == "door.access" and e is not pin)
    assert pin.credential == "pin:1234"
    assert dict(pin.data) == {"format": "keypad", "door": "lobby"}
    assert second.credential == "pin:5"
    wire_checked(pin)
    assert driver.counters["pins"] == 2


async def test_tamper_and_power_failure_are_device_faults_that_recover(line, reader):
    async with running(osdp_config(line.port, [DOOR_READER])) as (driver, out):
        await wait_online(driver)
        reader.local_status(tamper=True)
        fault = await out.wait_kind("device.fault", reason="tamper")
        reader.local_status(tamper=False, power_failure=True)
        await out.wait_kind("device.fault", reason="power failure")
        recovered = await out.wait_kind("device.recovered")
        reader.local_status(tamper=False, power_failure=False)
        await out.wait_for(lambda e: e.kind == "device.recovered" and e is not recovered)
    assert fault.device == "lobby-reader"
    assert len(out.of_kind("device.fault")) == 2
    for event in out.events:
        wire_checked(event)


async def test_reader_inputs_drive_the_door_logic(line, reader):
    door = dict(DOOR_READER, held_open_s=0.5, grant_window_s=5)
    async with running(osdp_config(line.port, [door])) as (driver, out):
        await wait_online(driver)
        reader.inputs(1, 0)  # contact open, nobody badged: forced
        await out.wait_kind("door.forced", door="lobby")
        held = await out.wait_kind("door.held_open", door="lobby")
        reader.inputs(0, 0)
        await out.wait_kind("door.contact", open=False)
        reader.inputs(0, 1)  # exit button, then the door opens: fine
        await out.wait_kind("door.exit_request", door="lobby")
        reader.inputs(1, 0)
        await out.wait_for(
            lambda e: e.kind == "door.contact" and e.data["open"] and e.ts_ms > held.ts_ms
        )
        reader.inputs(0, 0)
        await out.wait_for(lambda e: e.kind == "door.contact" and not e.data["open"])
        await asyncio.sleep(0.3)
    kinds = [e.kind for e in out.events if e.kind.startswith("door.")]
    assert kinds.count("door.forced") == 1
    assert kinds.count("door.held_open") == 1
    assert held.data["open_s"] == 0.5
    for event in out.events:
        wire_checked(event)


async def test_a_local_grant_releases_the_strike_and_authorises_the_door(line, reader):
    # The allow-list holds pseudonyms, as the hub knows the cards; the check uses the
    # agent's keyed pseudonymiser.
    site = Pseudonymiser(b"the site secret, at least 16 bytes")
    authorise = pseudonym_allow_list(site.pseudonym, [site.pseudonym(CREDENTIAL_FC123_CN4567)])
    async with running(osdp_config(line.port, [DOOR_READER]), authorise=authorise) as (
        driver,
        out,
    ):
        await wait_online(driver)
        reader.card()
        granted = await out.wait_kind("door.access", granted=True)
        await asyncio.sleep(0.3)
        reader.inputs(1, 0)  # the resident walks in
        await out.wait_kind("door.contact", open=True)
        reader.card(bytes.fromhex("0b402880"), 26)  # FC 90 / CN 324: not allowed
        denied = await out.wait_kind("door.access", granted=False)
        await asyncio.sleep(0.3)
    assert dict(granted.data) == {
        "format": "wiegand26",
        "bits": 26,
        "door": "lobby",
        "granted": True,
    }
    assert denied.data["reason"] == "not_allowed"
    assert out.of_kind("door.forced") == []
    outputs = [c for c in reader.commands() if c["command"] == 1]
    assert outputs == [{"command": 1, "output_no": 0, "control_code": 5, "timer_count": 50}]
    assert driver.counters["strike_failed"] == 0


async def test_an_operator_can_unlock_a_door_remotely(line, reader):
    async with running(osdp_config(line.port, [DOOR_READER])) as (driver, out):
        await wait_online(driver)
        assert await driver.unlock("lobby-reader")
        reader.inputs(1, 0)
        await out.wait_kind("door.contact", open=True)
        await asyncio.sleep(0.3)
    assert out.of_kind("door.forced") == []
    assert [c["command"] for c in reader.commands()] == [1]


async def test_each_reader_uses_its_own_secure_channel_key():
    line = Line(pds=2)
    secured = FakeReader(line.pd_fds[0], 1, scbk=KEY_A).start()
    plain = FakeReader(line.pd_fds[1], 2).start()
    readers = [
        {"id": "gate-reader", "address": 1, "scbk": KEY_A.hex(), "door": "gate"},
        {"id": "garage-reader", "address": 2},
    ]
    try:
        async with running(osdp_config(line.port, readers)) as (driver, out):
            await wait_online(driver, 0)
            await wait_online(driver, 1)
            bus = driver._bus
            assert bus is not None
            assert bus.is_secure(0)
            assert not bus.is_secure(1)
            secured.card()
            plain.keys(b"4321#")
            card = await out.wait_kind("door.access", format="wiegand26")
            pin = await out.wait_kind("door.access", format="keypad")
    finally:
        secured.stop()
        plain.stop()
        line.close()
    assert (card.device, card.credential) == ("gate-reader", CREDENTIAL_FC123_CN4567)
    assert (pin.device, pin.credential) == ("garage-reader", "pin:4321")
    assert out.of_kind("device.fault") == []


async def test_a_wrong_key_never_comes_online_and_is_reported(line):
    pd = FakeReader(line.pd_fds[0], 101, scbk=KEY_B).start()
    config = osdp_config(line.port, [dict(DOOR_READER, scbk=KEY_A.hex())])
    try:
        async with running(config) as (driver, out):
            fault = await out.wait_kind("device.fault", timeout=5)
            pd.card()
            await asyncio.sleep(1.0)
            bus = driver._bus
            assert bus is not None
            assert not bus.is_online(0)
    finally:
        pd.stop()
    assert fault.device == "lobby-reader"
    assert "secure channel" in fault.data["reason"]
    assert out.of_kind("door.access") == []  # never a clear-text fallback
    assert out.of_kind("device.recovered") == []
    assert driver.counters["reprobes"] >= 1


@pytest.mark.parametrize("scbk", [None, KEY_A], ids=["clear", "secure"])
async def test_a_reader_that_goes_silent_faults_once_and_recovers_when_back(line, scbk):
    reader_config = dict(DOOR_READER, **({"scbk": scbk.hex()} if scbk else {}))
    pd = FakeReader(line.pd_fds[0], 101, scbk=scbk).start()
    try:
        async with running(osdp_config(line.port, [reader_config])) as (driver, out):
            await wait_online(driver)
            pd.stop()  # the reader dies
            fault = await out.wait_kind("device.fault", timeout=4)
            await asyncio.sleep(0.5)
            pd.start()  # and reboots
            recovered = await out.wait_kind("device.recovered", timeout=6)
            await wait_online(driver)
            pd.card()
            await out.wait_kind("door.access")
    finally:
        pd.stop()
    assert fault.data["reason"] == "no reply from the reader at OSDP address 101"
    assert len(out.of_kind("device.fault")) == 1
    assert recovered.data["after_s"] > 0
    assert driver.health("lobby-reader").errors["timeout"] >= 4


async def test_line_noise_is_counted_and_survived(line, reader):
    async with running(osdp_config(line.port, [DOOR_READER])) as (driver, out):
        await wait_online(driver)
        # Garbage between frames, a frame with a bad CRC, a truncated frame.
        line.inject(bytes(range(0x53)) + b"\xff\x53\xe5\x08\x00\x06\x40\x00\x00")
        line.inject(b"\x53\xe5\x10\x00\x05\x50\x00")
        # Random bursts.
        rng = random.Random(3)
        for _ in range(5):
            line.inject(bytes(rng.randrange(256) for _ in range(400)))
            await asyncio.sleep(0.05)
        # A noisy line: a few bits flipped now and then, both ways.
        line.corrupt_rate = 0.01
        line.mode = "corrupt"
        await asyncio.sleep(1.5)
        # A burst of noise that drowns the reader: it faults.
        line.corrupt_rate = 0.3
        fault = await out.wait_kind("device.fault", timeout=5)
        line.mode = "pass"
        await out.wait_kind("device.recovered", timeout=6)
        await wait_online(driver)
        reader.card()
        access = await out.wait_kind("door.access")
    assert line.corrupted > 0
    counters = driver.monitor.counters
    assert counters["bad_check"] + counters["bad_header"] >= 1
    assert counters["noise_bytes"] > 0
    assert fault.device == "lobby-reader"
    assert access.credential == CREDENTIAL_FC123_CN4567
    assert len(out.of_kind("device.fault")) == 1


async def test_a_port_that_goes_away_and_comes_back():
    server = SocketLine()
    pd = FakeReader(server.pd_fd, 101).start()
    try:
        async with running(osdp_config(server.port, [DOOR_READER])) as (driver, out):
            await wait_online(driver)
            server.go_away()  # ser2net restarts, the network drops...
            fault = await out.wait_kind("device.fault", timeout=5)
            assert driver.counters["port_errors"] >= 1
            server.come_back()
            await out.wait_kind("device.recovered", timeout=8)
            await wait_online(driver)
            pd.card()
            access = await out.wait_kind("door.access")
    finally:
        pd.stop()
        server.close()
    assert fault.data["reason"].startswith("port failed")
    assert access.credential == CREDENTIAL_FC123_CN4567
    assert server.connections >= 2


async def test_the_driver_closes_cleanly_while_a_reader_is_missing(line):
    config = osdp_config(line.port, [DOOR_READER])
    async with running(config) as (driver, out):
        await out.wait_kind("device.fault", timeout=4)
    assert driver._bus is None
    with pytest.raises(RuntimeError):
        await driver.open()


async def test_no_raw_card_number_or_pin_appears_in_any_event_data(line, reader):
    allowed = {CREDENTIAL_FC123_CN4567, "pin:2468"}
    async with running(
        osdp_config(line.port, [dict(DOOR_READER, held_open_s=0.3)]),
        authorise=lambda _dev, raw: raw in allowed,
    ) as (driver, out):
        await wait_online(driver)
        reader.card()
        reader.keys(b"2468#")
        reader.card(bytes.fromhex("0b402880"), 26)
        reader.inputs(1, 0)
        reader.local_status(tamper=True)
        await out.wait_kind("device.fault", reason="tamper")
        await out.wait_kind("door.held_open")
        await asyncio.sleep(0.2)
    secrets = ["2f623ae", "02f623ae", "4567", "2468", "0b40288", "324"]
    accesses = out.of_kind("door.access")
    assert len(accesses) == 3
    assert all(e.credential is not None for e in accesses)
    for event in out.events:
        text = repr(dict(event.data)).lower()
        assert not any(secret in text for secret in secrets), event
        assert "credential" not in event.data
        assert event.credential is None or event.credential not in repr(event)


async def test_a_failing_control_panel_thread_ends_the_outputs_with_its_error(line, monkeypatch):
    real = osdp_sys.ControlPanel

    class Failing:
        def __init__(self, infos):
            self._cp = real(infos)

        def __getattr__(self, name):
            return getattr(self._cp, name)

        def refresh(self):
            msg = "libosdp broke"
            raise SystemError(msg)

    monkeypatch.setattr(osdp_sys, "ControlPanel", Failing)
    driver = OsdpDriver(osdp_config(line.port, [DOOR_READER]), clock=SystemClock())

    async def drain() -> None:
        async for _ in driver.outputs():
            pass

    async with driver:
        with pytest.raises(SystemError, match="libosdp broke"):
            await asyncio.wait_for(drain(), 5)
