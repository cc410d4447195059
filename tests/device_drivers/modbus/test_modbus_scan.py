"""Finding the addresses on a bus, against pymodbus's server on a pseudo-terminal."""

from __future__ import annotations

import time

import pytest
from pymodbus.simulator import DataType, SimData, SimDevice

from device_drivers import DriverIOError
from device_drivers.modbus import FunctionCode, Probe, scan_bus
from device_drivers.serial_port import SerialSettings
from tests.device_drivers.modbus.modbus_helpers import ModbusSim, PtyLink, sim_device


@pytest.fixture
def link():
    pty_link = PtyLink().start()
    yield pty_link
    pty_link.close()


def _no_holding_register_0(unit: int) -> SimDevice:
    return SimDevice(
        id=unit,
        simdata=(
            [SimData(0, values=False, datatype=DataType.BITS)],
            [SimData(0, values=False, datatype=DataType.BITS)],
            [SimData(0x10, values=[1], datatype=DataType.REGISTERS)],
            [SimData(0, values=[0, 0x0131, 0x0222], datatype=DataType.REGISTERS)],
        ),
    )


async def test_scan_finds_every_unit_that_answers_and_says_what_it_answered(link):
    devices = [sim_device(3), _no_holding_register_0(5), sim_device(7), sim_device(9)]
    sim = await ModbusSim(link.server_path, devices).start()
    sim.offline.add(9)  # configured in the server but silent, like a dead sensor
    started = time.monotonic()
    try:
        hits = [
            hit
            async for hit in scan_bus(
                link.client_path, SerialSettings(), first=1, last=12, timeout_s=0.05
            )
        ]
    finally:
        await sim.stop()
    assert [h.unit for h in hits] == list(range(1, 13))  # one per address, in order
    found = {h.unit: h.answer for h in hits if h.found}
    assert found == {
        3: "registers 0x0222",
        5: "exception 0x02 (illegal data address)",
        7: "registers 0x0222",
    }
    assert next(h for h in hits if h.unit == 3).words == (0x0222,)
    assert {h.answer for h in hits if not h.found} == {"no answer"}
    assert time.monotonic() - started < 3


async def test_scan_with_another_probe_and_range(link):
    sim = await ModbusSim(link.server_path, [sim_device(2)]).start()
    probe = Probe(FunctionCode.READ_INPUT_REGISTERS, 1, 2)
    try:
        hits = [
            h
            async for h in scan_bus(
                link.client_path, SerialSettings(), first=2, last=3, timeout_s=0.05, probe=probe
            )
        ]
    finally:
        await sim.stop()
    assert [(h.unit, h.found, h.answer) for h in hits] == [
        (2, True, "registers 0x0131 0x0222"),
        (3, False, "no answer"),
    ]
    assert probe.label == "FC04 @0x0001 x2"


async def test_scan_range_and_port_errors():
    with pytest.raises(ValueError, match="1 <= first <= last <= 247"):
        await anext(scan_bus("/dev/null", SerialSettings(), first=0))
    with pytest.raises(ValueError, match="1 <= first <= last <= 247"):
        await anext(scan_bus("/dev/null", SerialSettings(), first=5, last=4))
    with pytest.raises(DriverIOError, match="/dev/ttyUSB-gone"):
        await anext(scan_bus("/dev/ttyUSB-gone", SerialSettings()))
