"""The Modbus RTU driver against pymodbus's own server on a pseudo-terminal bus."""

from __future__ import annotations

import contextlib
import socket
import termios
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from device_drivers import DeviceEvent, DriverIOError, ManualClock, Sample, SystemClock
from device_drivers.modbus import ModbusConfig, ModbusRtuDriver
from tests.device_drivers.modbus.modbus_helpers import (
    RH_54_6,
    T_MINUS_12_5,
    ModbusSim,
    PtyLink,
    Run,
    sim_device,
)

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture
def link() -> Iterator[PtyLink]:
    pty_link = PtyLink().start()
    yield pty_link
    pty_link.close()


@contextlib.asynccontextmanager
async def serving(port: str, devices: list[Any], **settings: Any) -> AsyncIterator[ModbusSim]:
    sim = await ModbusSim(port, devices, **settings).start()
    try:
        yield sim
    finally:
        await sim.stop()


def make_driver(port: str, devices: list[dict[str, Any]], clock: Any = None, **settings: Any):
    raw: dict[str, Any] = {
        "type": "modbus_rtu",
        "id": "bus-1",
        "port": port,
        "timeout_s": 0.15,
        "retries": 0,
        "poll_interval_s": 1.0,
        "request_gap_s": 0,
        "devices": devices,
        **settings,
    }
    config = ModbusConfig.model_validate(raw)
    return ModbusRtuDriver(config, clock=clock or ManualClock(START_MS))


async def test_several_units_on_one_bus_are_decoded_with_scaling_and_sign(link):
    devices = [
        sim_device(1),
        sim_device(2, input_registers=(0, T_MINUS_12_5, 0x0384, 0)),  # -12.5 °C, 90.0 %RH
        sim_device(3, holding_registers=(RH_54_6, T_MINUS_12_5, 0, 0)),
        sim_device(4, inputs=(True, False) + (False,) * 14),
        sim_device(5, input_registers=(10_125, 0x01F4, 0, 0)),  # KinCony: -12.5 °C, 50.0 %RH
    ]
    driver = make_driver(
        link.client_path,
        [
            {"id": "th-1", "unit": 1, "profile": "xy_md02"},
            {"id": "th-2", "unit": 2, "profile": "xy_md02"},
            {"id": "th-3", "unit": 3, "profile": "sht30_rh_first"},
            {"id": "di-4", "unit": 4, "profile": "di_leak_smoke", "debounce_polls": 1},
            {"id": "kc-5", "unit": 5, "profile": "kincony_sht30"},
        ],
    )
    async with serving(link.server_path, devices, baudrate=9600) as sim, Run(driver) as run:
        ids = driver.device_ids
        await run.until(lambda: all(run.samples(d) for d in ids))
        first = {d: dict(run.samples(d)[0].values) for d in ids}
    assert first == {
        "th-1": {"temperature": 30.5, "humidity": 54.6},
        "th-2": {"temperature": -12.5, "humidity": 90.0},
        "th-3": {"humidity": 54.6, "temperature": -12.5},
        "di-4": {"water_leak": 1.0, "smoke": 0.0},
        "kc-5": {"temperature": -12.5, "humidity": 50.0},
    }
    assert all(s.ts_ms == START_MS for d in ids for s in run.samples(d))
    # Adjacent values share one request: T+RH of an XY-MD02 is FC04 @0x0001 x2.
    assert (1, 4, 1, 2) in sim.requests
    assert (3, 3, 0, 2) in sim.requests
    assert (4, 2, 0, 2) in sim.requests
    # Byte for byte the frame of the reference (§3.4): 01 04 00 01 00 02 20 0B.
    assert bytes.fromhex("010400010002200b") in link.sent
    leak = run.events("alarm.water_leak")
    assert [(e.device, e.data) for e in leak] == [("di-4", {"active": True})]


async def test_overrides_replace_the_profile_scale_and_offset(link):
    driver = make_driver(
        link.client_path,
        [
            {
                "id": "th-1",
                "unit": 1,
                "profile": "xy_md02",
                "overrides": {"temperature": {"offset": -0.5}, "humidity": {"scale": 0.01}},
            }
        ],
    )
    async with serving(link.server_path, [sim_device(1)]), Run(driver) as run:
        await run.until(lambda: bool(run.samples("th-1")))
    assert run.samples("th-1")[0].values == {"temperature": 30.0, "humidity": 5.46}


async def test_custom_register_maps_decode_32_bit_values_in_either_word_order(link):
    # 0x41BC 0x0000 = 23.5 as float32; 0xFFFE 0x7960 = -100000 as int32.
    registers = (0x41BC, 0x0000, 0x7960, 0xFFFE)
    driver = make_driver(
        link.client_path,
        [
            {
                "id": "meter-9",
                "unit": 9,
                "registers": [
                    {"name": "flow_temp", "function": 4, "address": 0, "encoding": "float32"},
                    {
                        "name": "energy",
                        "function": 4,
                        "address": 2,
                        "encoding": "int32",
                        "word_order": "little",
                        "scale": 0.001,
                        "unit": "kWh",
                    },
                ],
            }
        ],
    )
    async with (
        serving(link.server_path, [sim_device(9, input_registers=registers)]) as sim,
        Run(driver) as run,
    ):
        await run.until(lambda: bool(run.samples("meter-9")))
    assert run.samples("meter-9")[0].values == {"flow_temp": 23.5, "energy": -100.0}
    assert (9, 4, 0, 4) in sim.requests
    assert driver.value_units("meter-9") == {"flow_temp": "", "energy": "kWh"}


@pytest.mark.parametrize(
    ("baudrate", "stopbits", "speed", "cstopb"),
    [(9600, 1, termios.B9600, False), (19200, 2, termios.B19200, True)],
)
async def test_baud_rate_and_stop_bits_reach_the_tty(link, baudrate, stopbits, speed, cstopb):
    settings = {"baudrate": baudrate, "stopbits": stopbits}
    driver = make_driver(
        link.client_path, [{"id": "th-1", "unit": 1, "profile": "xy_md02"}], **settings
    )
    async with serving(link.server_path, [sim_device(1)], **settings), Run(driver) as run:
        await run.until(lambda: bool(run.samples("th-1")))
        _, _, cflag, _, ispeed, ospeed, _ = termios.tcgetattr(link.client_peer_fd)
    assert (ispeed, ospeed) == (speed, speed)
    assert bool(cflag & termios.CSTOPB) is cstopb
    assert cflag & termios.PARENB == 0
    assert cflag & termios.CSIZE == termios.CS8


@pytest.mark.parametrize(("parity", "stopbits"), [("E", 1), ("O", 1), ("N", 2)])
async def test_parity_is_passed_through_to_the_port(parity, stopbits):
    # A pty does not enforce parity electrically, and the kernel these tests run on even
    # refuses PARENB on a pty (tcsetattr: EINVAL).  pyserial's socket:// port keeps the line
    # settings it was given, so the 8E1/8O1 exchange runs over RTU-on-TCP and the settings
    # are read back from the pyserial port pymodbus opened.
    url = f"socket://127.0.0.1:{_free_port()}"
    settings = {"baudrate": 19200, "parity": parity, "stopbits": stopbits}
    driver = make_driver(url, [{"id": "th-1", "unit": 1, "profile": "xy_md02"}], **settings)
    async with serving(url, [sim_device(1)], **settings), Run(driver) as run:
        await run.until(lambda: bool(run.samples("th-1")))
        port = driver._bus._client.ctx.transport.sync_serial
        got = {k: port.get_settings()[k] for k in ("baudrate", "bytesize", "parity", "stopbits")}
    assert got == {"baudrate": 19200, "bytesize": 8, "parity": parity, "stopbits": stopbits}
    assert run.samples("th-1")[0].values == {"temperature": 30.5, "humidity": 54.6}


async def test_a_pty_that_refuses_the_parity_is_a_driver_io_error(link):
    driver = make_driver(
        link.client_path, [{"id": "th-1", "unit": 1, "profile": "xy_md02"}], parity="E"
    )
    error: DriverIOError | None = None
    try:
        await driver.open()
    except DriverIOError as exc:  # this kernel: PARENB on a pty is EINVAL
        error = exc
    finally:
        await driver.aclose()
    if error is not None:
        assert link.client_path in str(error)
        assert "9600 8E1" in str(error)
    else:  # kernels that accept it: the setting is on the tty
        assert termios.tcgetattr(link.client_peer_fd)[2] & termios.PARENB


async def test_a_silent_device_faults_after_n_polls_and_recovers_while_others_carry_on(
    link, caplog
):
    clock = ManualClock(START_MS)
    driver = make_driver(
        link.client_path,
        [
            {"id": "th-1", "unit": 1, "profile": "xy_md02"},
            {"id": "th-2", "unit": 2, "profile": "xy_md02"},
        ],
        clock=clock,
        failures_to_fault=2,
    )
    both = ("th-1", "th-2")
    async with serving(link.server_path, [sim_device(1), sim_device(2)]) as sim, Run(driver) as run:
        await run.until(lambda: all(run.samples(d) for d in both))
        sim.offline.add(2)
        await run.tick(clock, 1, both)
        assert run.events("device.fault") == []  # one miss is not a fault
        await run.tick(clock, 1, both)
        faults = run.events("device.fault")
        assert [(e.device, e.ts_ms) for e in faults] == [("th-2", START_MS + 2000)]
        assert faults[0].data == {"reason": "no answer from unit 2 after 1 tries"}
        await run.tick(clock, 1, both)
        assert len(run.events("device.fault")) == 1  # once per outage
        sim.offline.discard(2)
        await run.tick(clock, 1, both)
        recovered = run.events("device.recovered")
        assert [(e.device, e.data) for e in recovered] == [("th-2", {"after_s": 2.0})]
    assert len(run.samples("th-1")) == 5  # the healthy device never missed a poll
    assert len(run.samples("th-2")) == 2
    assert driver.errors("th-2") == {"timeout": 3}
    assert driver.errors("th-1") == {}
    # pymodbus's own ERROR per unanswered request is dropped: the fault event says it once.
    assert not any("No response received" in r.getMessage() for r in caplog.records)


async def test_a_device_refusing_the_read_faults_with_the_exception_named(link):
    driver = make_driver(
        link.client_path,
        [
            {
                "id": "odd-1",
                "unit": 1,
                "registers": [{"name": "pressure", "function": 4, "address": 0x0100}],
            },
            {"id": "th-2", "unit": 2, "profile": "xy_md02"},
        ],
        failures_to_fault=1,
    )
    async with serving(link.server_path, [sim_device(1), sim_device(2)]), Run(driver) as run:
        await run.until(lambda: bool(run.events("device.fault")) and bool(run.samples("th-2")))
    (fault,) = run.events("device.fault")
    assert fault.device == "odd-1"
    assert "exception 0x02 (illegal data address)" in fault.data["reason"]
    assert driver.errors("odd-1") == {"exception": 1}


async def test_alarm_inputs_are_debounced_across_polls_and_raise_edge_events(link):
    clock = ManualClock(START_MS)
    driver = make_driver(
        link.client_path,
        [{"id": "pump-room", "unit": 4, "profile": "di_leak_smoke", "debounce_polls": 2}],
        clock=clock,
    )
    dev = ("pump-room",)
    async with serving(link.server_path, [sim_device(4)]) as sim, Run(driver) as run:
        await run.until(lambda: bool(run.samples("pump-room")))
        await sim.set_inputs(4, 1, [True])  # smoke for one poll only: a glitch
        await run.tick(clock, 1, dev)
        await sim.set_inputs(4, 1, [False])
        await run.tick(clock, 1, dev)
        assert run.events("alarm.smoke") == []
        await sim.set_inputs(4, 0, [True])  # a real leak
        await run.tick(clock, 1, dev)
        assert run.events("alarm.water_leak") == []
        await run.tick(clock, 1, dev)
        await run.tick(clock, 1, dev)  # still wet: no second event
        await sim.set_inputs(4, 0, [False])
        await run.tick(clock, 1, dev)
        await run.tick(clock, 1, dev)
    leak = [(e.ts_ms - START_MS, e.data) for e in run.events("alarm.water_leak")]
    assert leak == [(4000, {"active": True}), (7000, {"active": False})]
    assert [s.values["water_leak"] for s in run.samples("pump-room")] == [0, 0, 0, 0, 1, 1, 1, 0]
    assert all(s.values["smoke"] == 0 for s in run.samples("pump-room"))


async def test_a_failsafe_module_reads_a_cut_wire_as_an_alarm(link):
    driver = make_driver(
        link.client_path,
        [{"id": "nc", "unit": 4, "profile": "di_leak_smoke_failsafe", "debounce_polls": 1}],
    )
    loops = (True, False) + (False,) * 14  # leak loop closed (OK), smoke loop open (cut)
    async with serving(link.server_path, [sim_device(4, inputs=loops)]), Run(driver) as run:
        await run.until(lambda: bool(run.samples("nc")))
    assert run.samples("nc")[0].values == {"water_leak": 0.0, "smoke": 1.0}
    assert [(e.kind, e.data) for e in run.events()] == [("alarm.smoke", {"active": True})]


async def test_garbled_answers_are_counted_retried_and_the_bus_resyncs(link):
    clock = ManualClock(START_MS)
    driver = make_driver(
        link.client_path,
        [
            {"id": "th-1", "unit": 1, "profile": "xy_md02"},
            {"id": "th-2", "unit": 2, "profile": "xy_md02"},
        ],
        clock=clock,
        retries=1,
    )
    both = ("th-1", "th-2")
    async with serving(link.server_path, [sim_device(1), sim_device(2)]), Run(driver) as run:
        await run.until(lambda: all(run.samples(d) for d in both))
        link.garble(1)  # a bad CRC: the retry gets a clean answer
        await run.tick(clock, 1, both)
        link.noise(1)  # stray bytes before a frame
        await run.tick(clock, 1, both)
        link.garble(2)  # both tries of th-1 garbled: that poll fails
        await run.tick(clock, 1, both)
        await run.tick(clock, 1, both)  # and the next one is clean again
    assert link.garbled == 3
    assert link.noised == 1
    # Every garbled answer is counted; the one poll whose two tries were both garbled failed.
    assert {d: driver.errors(d) for d in both} == {"th-1": {"garbled": 4, "noise": 1}, "th-2": {}}
    assert run.events() == []  # a noisy line is counted, not a fault
    assert len(run.samples("th-1")) == 4
    assert len(run.samples("th-2")) == 5
    assert {s.values["temperature"] for d in both for s in run.samples(d)} == {30.5}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_port_that_disappears_faults_every_device_and_recovers_when_back():
    # pymodbus opens serial ports with pyserial's serial_for_url, so socket:// works for the
    # client; pymodbus's serial server given socket:// serves RTU frames over TCP.  Stopping
    # that server is a port going away (like ser2net dying or a USB adapter unplugged).
    url = f"socket://127.0.0.1:{_free_port()}"
    devices = [sim_device(1), sim_device(2)]
    driver = make_driver(
        url,
        [
            {"id": "th-1", "unit": 1, "profile": "xy_md02"},
            {"id": "th-2", "unit": 2, "profile": "xy_md02"},
        ],
        clock=SystemClock(),
        poll_interval_s=0.1,
        failures_to_fault=2,
    )
    both = ("th-1", "th-2")
    sim = await ModbusSim(url, devices).start()
    try:
        async with Run(driver) as run:
            await run.until(lambda: all(run.samples(d) for d in both))
            await sim.stop()
            await run.until(lambda: len(run.events("device.fault")) == 2, timeout=4)
            faults = run.events("device.fault")
            assert {e.device for e in faults} == set(both)
            assert all("cannot open" in e.data["reason"] for e in faults)
            samples_before = len(run.samples("th-1"))
            await sim.start()
            await run.until(lambda: len(run.events("device.recovered")) == 2, timeout=5)
            await run.until(lambda: len(run.samples("th-1")) > samples_before)
    finally:
        await sim.stop()
    assert {e.device for e in run.events("device.recovered")} == set(both)
    assert driver.errors("th-1")["port"] >= 2


async def test_opening_a_missing_port_is_a_driver_io_error_naming_it():
    driver = make_driver("/dev/ttyUSB-nope", [{"id": "th-1", "unit": 1, "profile": "xy_md02"}])
    with pytest.raises(DriverIOError) as info:
        await driver.open()
    assert info.value.device_id == "bus-1"
    assert "/dev/ttyUSB-nope" in str(info.value)
    assert "no such device" in str(info.value)
    await driver.aclose()


async def test_outputs_needs_open_and_ends_promptly_on_close(link):
    driver = make_driver(link.client_path, [{"id": "th-1", "unit": 1, "profile": "xy_md02"}])
    with pytest.raises(RuntimeError, match="open"):
        await anext(driver.outputs())
    async with serving(link.server_path, [sim_device(1)]), Run(driver) as run:
        await run.until(lambda: bool(run.samples("th-1")))
    # Run's exit closed the driver while it slept on the manual clock: outputs() ended.
    assert isinstance(run.outputs[0], Sample)
    assert not any(isinstance(o, DeviceEvent) for o in run.outputs)
    with pytest.raises(RuntimeError, match="closed"):
        await driver.open()


async def test_close_does_not_wait_out_a_pending_request(link):
    driver = make_driver(
        link.client_path,
        [{"id": "th-1", "unit": 1, "profile": "xy_md02"}],
        timeout_s=3,
        retries=2,
    )
    async with serving(link.server_path, [sim_device(1)]) as sim:
        sim.offline.add(1)
        run = Run(driver)
        await run.__aenter__()
        await run.until(lambda: len(sim.requests) == 1)  # the first attempt is out
        started = time.monotonic()
        await run.__aexit__(None, None, None)
        assert time.monotonic() - started < 0.5  # not the 9 s of three attempts
    assert run.outputs == []
