"""Shared driver pieces: serial ports by URL on a real pseudo-terminal, and device health."""

from __future__ import annotations

import contextlib
import os
import tty

import pytest

from device_drivers import DriverIOError
from device_drivers.health import DeviceHealth, DeviceHealthState
from device_drivers.serial_port import SerialPort, SerialSettings


@pytest.fixture
def pty_pair():
    controller, peripheral = os.openpty()
    tty.setraw(peripheral)
    yield controller, os.ttyname(peripheral)
    for fd in (controller, peripheral):
        with contextlib.suppress(OSError):
            os.close(fd)


async def test_serial_port_reads_and_writes_over_a_pty(pty_pair):
    controller, path = pty_pair
    port = SerialPort(path, SerialSettings(baudrate=9600), owner="sensor")
    await port.open()
    await port.write(b"\x01\x03\x00\x00")
    assert os.read(controller, 16) == b"\x01\x03\x00\x00"
    os.write(controller, b"\x42\x4d")
    assert await port.read_for(1.0) == b"\x42\x4d"
    assert await port.read_for(0.05) == b""
    await port.aclose()
    await port.aclose()  # idempotent
    assert not port.is_open


async def test_a_missing_port_is_a_driver_io_error_naming_it():
    port = SerialPort("/dev/does-not-exist", SerialSettings(), owner="pms-1")
    with pytest.raises(DriverIOError) as info:
        await port.open()
    assert info.value.device_id == "pms-1"
    assert "/dev/does-not-exist" in str(info.value)


async def test_a_refused_socket_url_is_a_driver_io_error():
    port = SerialPort("socket://127.0.0.1:1", SerialSettings(), owner="ser2net")
    with pytest.raises(DriverIOError):
        await port.open()


def test_device_health_faults_once_after_consecutive_failures_and_recovers_once():
    health = DeviceHealth("meter-1", failures_to_fault=3)
    assert health.failure(1_000, "timeout", "no answer") is None
    assert health.success(2_000) is None  # one glitch is not a fault
    assert health.failure(3_000, "crc", "bad CRC") is None
    assert health.failure(4_000, "timeout", "no answer") is None
    fault = health.failure(5_000, "timeout", "no answer for 3 polls")
    assert fault is not None
    assert (fault.kind, fault.data) == ("device.fault", {"reason": "no answer for 3 polls"})
    assert health.failure(6_000, "timeout", "still nothing") is None  # once per outage
    assert health.state is DeviceHealthState.FAULTED
    recovered = health.success(11_000)
    assert recovered is not None
    assert (recovered.kind, recovered.data) == ("device.recovered", {"after_s": 6.0})
    assert health.success(12_000) is None
    assert health.errors == {"timeout": 4, "crc": 1}
