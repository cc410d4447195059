"""`anju device scan modbus` and `anju device test` against pymodbus's server on a pty."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.device import device_app
from device_drivers import registry as driver_registry
from tests.device_drivers.modbus.modbus_helpers import (
    T_MINUS_12_5,
    ModbusSim,
    PtyLink,
    SimThread,
    sim_device,
)

app = typer.Typer()
app.add_typer(device_app, name="device")


@pytest.fixture(autouse=True)
def modbus_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    # The registry line is added with the wiring of `anju device`; until then, add it here.
    monkeypatch.setitem(
        driver_registry.BUILTIN_DRIVERS, "modbus_rtu", "device_drivers.modbus:ModbusRtuDriver"
    )


@pytest.fixture
def link() -> Iterator[PtyLink]:
    pty_link = PtyLink().start()
    yield pty_link
    pty_link.close()


@pytest.fixture
def bus(link: PtyLink) -> Iterator[SimThread]:
    devices = [
        sim_device(1),
        sim_device(2, input_registers=(0, T_MINUS_12_5, 0x01F4, 0)),
        sim_device(4, inputs=(True,) + (False,) * 15),
    ]
    thread = SimThread(lambda: ModbusSim(link.server_path, devices)).start()
    yield thread
    thread.stop()


def run(*args: str) -> tuple[int, str]:
    # Wide enough that rich does not wrap paths and hints.
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


GATEWAY = """\
site: sunrise
gateway: gw-b3
privacy:
  site_secret: ${ANJU_SITE_SECRET}
drivers:
  - type: simulated
    id: sim-1
    devices:
      - {id: sim-smoke, kind: smoke}
  - type: modbus_rtu
    id: b3-rs485
    port: ${PORT}
    timeout_s: 0.1
    retries: 0
    poll_interval_s: 30
    devices:
      - {id: b3-th-1, unit: 1, profile: xy_md02}
      - {id: b3-th-2, unit: 2, profile: xy_md02}
      - {id: b3-pump-room, unit: 4, profile: di_leak_smoke, debounce_polls: 1}
"""


@pytest.fixture
def gateway_yaml(tmp_path: Path, link: PtyLink, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("ANJU_SITE_SECRET", raising=False)  # not needed to test a device
    monkeypatch.setenv("PORT", link.client_path)
    path = tmp_path / "gateway.yaml"
    path.write_text(GATEWAY, encoding="utf-8")
    return path


def test_scan_finds_the_units_on_the_bus_with_a_table(bus: SimThread, link: PtyLink) -> None:
    code, out = run(
        "device", "scan", "modbus", "--port", link.client_path, "--to", "6", "--timeout", "0.05"
    )
    assert code == 0, out
    assert f"Scanning {link.client_path} at 9600 8N1, units 1..6" in out
    assert "3 device(s)" in out
    assert re.search(r"│\s+1 │ registers 0x0222", out)  # holding register 0 of unit 1
    assert re.search(r"│\s+4 │", out)
    assert not re.search(r"│\s+3 │", out)
    assert "6/6" in out  # the progress bar finished


def test_scan_of_an_empty_range_says_what_to_try(bus: SimThread, link: PtyLink) -> None:
    code, out = run(
        "device",
        "scan",
        "modbus",
        "--port",
        link.client_path,
        "--from",
        "10",
        "--to",
        "12",
        "--timeout",
        "0.05",
        "--parity",
        "n",
    )
    assert code == 1
    assert "No device answered" in out
    assert "--parity E" in out


def test_scan_of_a_missing_port_says_so() -> None:
    code, out = run("device", "scan", "modbus", "--port", "/dev/ttyUSB-gone")
    assert code == 1
    assert "cannot open /dev/ttyUSB-gone: no such device" in out


def test_device_test_prints_live_readings_of_one_device(bus: SimThread, gateway_yaml: Path) -> None:
    code, out = run(
        "device", "test", "b3-th-2", "--config", str(gateway_yaml), "--duration", "2",
        "--interval", "0.5",
    )  # fmt: skip
    assert code == 0, out
    assert "b3-th-2: unit 2 on /dev/pts/" in out
    assert "at 9600 8N1, xy_md02, every 0.5 s" in out
    lines = [line for line in out.splitlines() if "temperature" in line]
    assert len(lines) >= 3  # about one every half second
    assert all("b3-th-2  temperature -12.5 °C  humidity 50 %RH" in line for line in lines)
    assert "b3-th-1" not in out.replace("b3-th-2", "")  # only the device under test
    assert re.search(r"\d+ reading\(s\), 0 event\(s\)\.", out)


def test_device_test_shows_alarm_events(bus: SimThread, gateway_yaml: Path) -> None:
    code, out = run("device", "test", "b3-pump-room", "-c", str(gateway_yaml), "-d", "1")
    assert code == 0, out
    assert "alarm.water_leak active=true" in out
    assert "water_leak 1  smoke 0" in out


def test_device_test_of_an_unknown_id_lists_the_known_ones(gateway_yaml: Path) -> None:
    code, out = run("device", "test", "b3-th-9", "--config", str(gateway_yaml))
    assert code == 2
    assert "no device 'b3-th-9'" in out
    assert "sim-smoke (sim-1), b3-th-1 (b3-rs485), b3-th-2 (b3-rs485)" in out


def test_device_test_with_the_port_missing_suggests_a_scan(
    gateway_yaml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", "/dev/ttyUSB-gone")
    code, out = run("device", "test", "b3-th-1", "--config", str(gateway_yaml))
    assert code == 1
    assert "cannot open /dev/ttyUSB-gone: no such device" in out
    assert "anju device scan modbus --port /dev/ttyUSB-gone" in out


def test_device_test_of_a_silent_device_says_what_to_check(
    link: PtyLink, gateway_yaml: Path
) -> None:
    code, out = run("device", "test", "b3-th-1", "-c", str(gateway_yaml), "-d", "0.5")
    assert code == 1
    assert "0 reading(s)" in out
    assert "No reading from b3-th-1" in out
    assert f"anju device scan modbus --port {link.client_path} --baud 9600 --parity N" in out
    assert "errors: timeout" in out


def test_device_test_reports_config_errors_with_the_driver_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "drivers:\n"
        "  - {type: modbus_rtu, id: bus, port: /dev/x, devices: [{id: a, unit: 300, "
        "profile: xy_md02}]}\n"
        "  - {type: modbus_rtu, id: bus2, port: '${NOT_SET_ANYWHERE}', devices: "
        "[{id: b, unit: 1, profile: xy_md02}]}\n",
        encoding="utf-8",
    )
    code, out = run("device", "test", "a", "--config", str(path))
    assert code == 2
    assert "drivers[0]" in out
    assert "devices.0.unit" in out
    code, out = run("device", "test", "b", "--config", str(path))
    assert code == 2
    assert "${NOT_SET_ANYWHERE} is not set" in out
    code, out = run("device", "test", "a", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "cannot read" in out
