"""`anju device add|list|move|remove`: the site file and the gateway configs, checked together."""

from __future__ import annotations

import json
import shutil
import typing
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from cli.device import device_app
from cli.provision_devices import SLOTS, device_slot, item_model, parse_settings
from device_drivers import BUILTIN_DRIVERS, driver_class
from device_drivers.modbus import ModbusConfig
from device_drivers.simulated import SimulatedConfig
from device_drivers.uart import Pms5003Config
from edge_agent import load_gateway_config
from hub.registry import Registry, load_site
from hub.site_edit import SiteEditError

CONFIG = Path(__file__).resolve().parents[2] / "config"

app = typer.Typer()
app.add_typer(device_app, name="device")


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(CONFIG, tmp_path / "config")
    monkeypatch.setenv("ANJU_SITE_SECRET", "test-site-secret")
    monkeypatch.setenv("ANJU_GW_PASSWORD", "test-password")
    monkeypatch.setenv("ANJU_EAST_GATE_SCBK", "0123456789abcdef0123456789abcdef")
    return tmp_path / "config"


@pytest.fixture
def site(config: Path) -> Path:
    return config / "site.yaml"


@pytest.fixture
def hardware(config: Path) -> Path:
    """The real-hardware config of gw-north (a Modbus bus, UART sensors), as the gateway's."""
    path = config / "gateways" / "gw-north.yaml"
    shutil.copy(config / "gateways-hardware" / "gw-north.yaml", path)
    return path


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, [str(a) for a in args], catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


def snapshot(config: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(config.rglob("*.yaml"))}


MODBUS_TH = (
    "device", "add", "b3-5-501-th", "--gateway", "gw-north", "--driver", "modbus_rtu",
    "--kind", "temp_humidity", "--building", "3", "--floor", "5", "--unit", "501",
    "--set", "unit=6", "--set", "profile=xy_md02",
    "--set", "overrides.temperature.offset=-0.5",
)  # fmt: skip


def test_every_builtin_driver_has_a_device_slot() -> None:
    assert set(SLOTS) == set(BUILTIN_DRIVERS)
    for driver_type, slot in SLOTS.items():
        fields = driver_class(driver_type).config_model.model_fields
        if slot.field is None:
            assert slot.id_key in fields
            continue
        model = item_model(driver_type, slot)
        assert model is not None, driver_type
        assert slot.id_key in model.model_fields
        if slot.kind_key is not None:
            assert slot.kind_key in model.model_fields
        annotation = fields[slot.field].annotation
        assert any(
            isinstance(a, type) and issubclass(a, BaseModel) for a in typing.get_args(annotation)
        )
    with pytest.raises(SiteEditError, match="no such driver"):
        device_slot("teleporter")


def test_settings_parse_as_yaml_scalars() -> None:
    assert parse_settings(
        ["unit=3", "scale=0.1", "pull_up=false", "door=", "name=a: b", "driver.port=/dev/ttyUSB0"]
    ) == {
        "unit": 3,
        "scale": 0.1,
        "pull_up": False,
        "door": None,
        "name": "a: b",
        "driver": {"port": "/dev/ttyUSB0"},
    }
    with pytest.raises(SiteEditError, match="is not key=value"):
        parse_settings(["unit"])


def test_add_to_an_existing_bus_then_again(config: Path, site: Path, hardware: Path) -> None:
    code, out, err = run(*MODBUS_TH, "--site", site)
    assert code == 0, err
    assert "device b3-5-501-th: added" in out
    assert "gateway config gw-north: updated (b3-5-501-th added in driver rs485-north)" in out
    assert f"wrote {hardware}: gateway gw-north's config changed, push it to the gateway" in out

    gateway = load_gateway_config(hardware)
    bus = next(d for d in gateway.drivers if d.id == "rs485-north")
    assert isinstance(bus, ModbusConfig)
    device = bus.devices[-1]
    assert (device.id, device.unit, device.profile) == ("b3-5-501-th", 6, "xy_md02")
    assert device.overrides["temperature"].offset == -0.5
    info = Registry(load_site(site)).devices["b3-5-501-th"]
    assert (info.grid, info.building, info.floor, info.unit) == ("north", "3", 5, "501")
    text = hardware.read_text(encoding="utf-8")
    assert text.startswith("# gw-north with real hardware:")
    assert (
        "      - {id: b3-5-501-th, unit: 6, profile: xy_md02, overrides: {temperature: {offset: -0.5}}}\n"
        in text
    )

    before = snapshot(config)
    code, out, err = run(*MODBUS_TH, "--site", site, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "unchanged"
    assert result["written"] == {"site_file": None, "gateway_files": {}}
    assert snapshot(config) == before


def test_an_invalid_setting_is_refused_and_nothing_written(
    config: Path, site: Path, hardware: Path
) -> None:
    before = snapshot(config)
    args = [a if a != "unit=6" else "unit=300" for a in MODBUS_TH]
    code, _, err = run(*args, "--site", site)
    assert code == 2
    assert "device b3-5-501-th: modbus_rtu setting unit is not valid" in err
    assert "less than or equal to 247" in err
    assert "nothing was written" in err
    assert "settings of a modbus_rtu device:" in err
    assert snapshot(config) == before

    args = [a if a != "unit=6" else "unit=3" for a in MODBUS_TH]  # b3-2-201-th's address
    code, _, err = run(*args, "--site", site)
    assert code == 2
    assert "does not fit driver rs485-north" in err
    assert "share unit 3 on one bus" in err
    assert snapshot(config) == before

    code, _, err = run(
        "device", "add", "b3-co2-2", "--gateway", "gw-north", "--driver", "mhz19",
        "--kind", "co2", "--building", "3", "--floor", "1", "--area", "Lobby",
        "--set", "port=/dev/ttyUSB3", "--set", "interval_s=1", "--site", site,
    )  # fmt: skip
    assert code == 2
    assert "mhz19 setting interval_s is not valid" in err
    assert snapshot(config) == before


def test_a_new_bus_gets_its_own_driver(config: Path, site: Path, hardware: Path) -> None:
    code, out, err = run(
        *MODBUS_TH, "--set", "driver.port=/dev/ttyUSB1", "--set", "driver.parity=E", "--site", site
    )
    assert code == 0, err
    assert "added in driver modbus-rtu-1" in out
    gateway = load_gateway_config(hardware)
    bus = next(d for d in gateway.drivers if d.id == "modbus-rtu-1")
    assert isinstance(bus, ModbusConfig)
    assert bus.port == "/dev/ttyUSB1"
    assert bus.parity == "E"
    assert [d.id for d in bus.devices] == ["b3-5-501-th"]

    code, _, err = run(
        *MODBUS_TH, "--driver-id", "rs485-north", "--set", "driver.parity=E", "--site", site
    )
    assert code == 2
    assert "driver rs485-north has parity='N'" in err


def test_one_device_drivers_and_simulated_kinds(config: Path, site: Path) -> None:
    code, out, err = run(
        "device", "add", "b7-lobby-pm", "--gateway", "gw-south", "--driver", "pms5003",
        "--kind", "pm25", "--building", "7", "--floor", "1", "--area", "Lobby",
        "--set", "port=/dev/ttyAMA0", "--set", "interval_s=60", "--site", site,
    )  # fmt: skip
    assert code == 0, err
    code, out, err = run(
        "device", "add", "b7-2-201-smoke", "--gateway", "gw-south", "--driver", "simulated",
        "--kind", "smoke", "--building", "7", "--floor", "2", "--unit", "201", "--site", site,
    )  # fmt: skip
    assert code == 0, err
    assert "added in driver sim-south" in out
    gateway = load_gateway_config(config / "gateways" / "gw-south.yaml")
    pms = next(d for d in gateway.drivers if isinstance(d, Pms5003Config))
    assert (pms.id, pms.port, pms.interval_s) == ("b7-lobby-pm", "/dev/ttyAMA0", 60)
    sim = next(d for d in gateway.drivers if isinstance(d, SimulatedConfig))
    assert sim.devices[-1].kind == "smoke"

    code, _, err = run(
        "device", "add", "b7-x", "--gateway", "gw-south", "--driver", "simulated",
        "--kind", "lamp", "--building", "7", "--site", site,
    )  # fmt: skip
    assert code == 2
    assert "simulated setting kind is not valid" in err

    code, _, err = run(
        "device", "add", "b7-x", "--gateway", "gw-south", "--driver", "teleporter",
        "--kind", "lamp", "--building", "7", "--site", site,
    )  # fmt: skip
    assert code == 2
    assert "no such driver" in err
    assert "modbus_rtu" in err


def test_conflicts_need_replace(config: Path, site: Path, hardware: Path) -> None:
    run(*MODBUS_TH, "--site", site)
    args = [a if a != "unit=6" else "unit=7" for a in MODBUS_TH]
    code, _, err = run(*args, "--site", site)
    assert code == 2
    assert "already in" in err
    assert "--replace" in err
    code, out, err = run(*args, "--replace", "--site", site)
    assert code == 0, err
    assert "b3-5-501-th replaced in driver rs485-north" in out
    bus = next(d for d in load_gateway_config(hardware).drivers if d.id == "rs485-north")
    assert isinstance(bus, ModbusConfig)
    assert [d.unit for d in bus.devices if d.id == "b3-5-501-th"] == [7]

    # The site entry differs: another place.
    args = [{"501": "502", "unit=6": "unit=7"}.get(a, a) for a in MODBUS_TH]
    code, _, err = run(*args, "--site", site)
    assert code == 2
    assert 'unit: "501" → "502"' in err

    # Another gateway: with --replace it leaves the old one's config.
    code, _, err = run(
        "device", "add", "b3-2-201-smoke", "--gateway", "gw-south", "--driver", "simulated",
        "--kind", "smoke", "--building", "3", "--floor", "2", "--unit", "201", "--site", site,
    )  # fmt: skip
    assert code == 2
    assert "already on gateway gw-north" in err
    code, out, err = run(
        "device", "add", "b3-2-201-smoke", "--gateway", "gw-south", "--driver", "simulated",
        "--kind", "smoke", "--building", "3", "--floor", "2", "--unit", "201", "--site", site,
        "--replace", "--json",
    )  # fmt: skip
    assert code == 0, err
    written = json.loads(out)["written"]["gateway_files"]
    assert set(written) == {"gw-north", "gw-south"}
    assert "b3-2-201-smoke" not in {
        d.id
        for driver in load_gateway_config(hardware).drivers
        for d in getattr(driver, "devices", ())
    }


def test_list_shows_drivers_and_strays(config: Path, site: Path) -> None:
    code, out, err = run("device", "list", "--site", site, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 16
    smoke = next(r for r in rows if r["id"] == "b3-2-201-smoke")
    assert smoke == {
        "id": "b3-2-201-smoke",
        "gateway": "gw-north",
        "kind": "smoke",
        "grid": "north",
        "building": "3",
        "floor": 2,
        "unit": "201",
        "area": None,
        "place": "Building 3, floor 2, unit 201",
        "driver": "sim-north",
        "driver_type": "simulated",
        "status": "ok",
    }
    # A device only in a gateway config, another only in the site file.
    gate = config / "gateways" / "gw-gate.yaml"
    gate.write_text(
        gate.read_text(encoding="utf-8").replace("east-gate-cam, kind", "stray-cam, kind"),
        encoding="utf-8",
    )
    code, out, err = run("device", "list", "--gateway", "gw-gate", "--site", site, "--json")
    statuses = {r["id"]: r["status"] for r in json.loads(out)}
    assert statuses == {
        "east-gate-reader": "ok",
        "east-gate-cam": "not in gateway config",
        "north-parking-cam": "ok",
        "stray-cam": "not in site file",
    }
    code, out, _ = run("device", "list", "--gateway", "gw-gate", "--site", site)
    assert code == 0
    assert "not in site file" in out
    assert "sim-gate (simulated)" in out


def test_move_changes_only_the_site_file(config: Path, site: Path) -> None:
    before = snapshot(config)
    code, out, err = run(
        "device", "move", "b3-2-201-th", "--building", "3", "--floor", "4", "--unit", "402",
        "--site", site,
    )  # fmt: skip
    assert code == 0, err
    assert "device b3-2-201-th: moved" in out
    after = snapshot(config)
    assert [p.name for p in after if after[p] != before[p]] == ["site.yaml"]
    assert Registry(load_site(site)).devices["b3-2-201-th"].place == "Building 3, floor 4, unit 402"

    code, out, _ = run(
        "device", "move", "b3-2-201-th", "--building", "3", "--floor", "4", "--unit", "402",
        "--site", site, "--json",
    )  # fmt: skip
    assert json.loads(out)["status"] == "unchanged"
    code, _, err = run("device", "move", "nope", "--building", "3", "--site", site)
    assert code == 2
    assert "anju device list" in err


def test_remove_from_site_and_gateway(config: Path, site: Path, hardware: Path) -> None:
    run(*MODBUS_TH, "--set", "driver.port=/dev/ttyUSB1", "--site", site)
    code, out, err = run("device", "remove", "b3-5-501-th", "--site", site)
    assert code == 0, err
    assert "device b3-5-501-th: removed" in out
    assert "with driver(s) modbus-rtu-1 left without devices" in out
    assert hardware.read_text(encoding="utf-8") == (
        CONFIG / "gateways-hardware" / "gw-north.yaml"
    ).read_text(encoding="utf-8")
    assert site.read_text(encoding="utf-8") == (CONFIG / "site.yaml").read_text(encoding="utf-8")

    code, out, err = run("device", "remove", "b3-lobby-co2", "--site", site, "--json")
    assert code == 0, err
    assert json.loads(out)["written"]["gateway_files"] == {"gw-north": str(hardware)}
    assert "co2-b3-lobby" not in {d.id for d in load_gateway_config(hardware).drivers}
    assert "b3-lobby-co2" not in Registry(load_site(site)).devices

    code, _, err = run("device", "remove", "b3-lobby-co2", "--site", site)
    assert code == 2
    assert "no device 'b3-lobby-co2'" in err


def test_remove_refused_while_a_door_names_the_device(config: Path, site: Path) -> None:
    gate = config / "gateways" / "gw-gate.yaml"
    gate.write_text(
        gate.read_text(encoding="utf-8")
        + "doors:\n  - {name: east-gate, contact: east-gate-reader, readers: [east-gate-reader]}\n",
        encoding="utf-8",
    )
    before = snapshot(config)
    code, _, err = run("device", "remove", "east-gate-reader", "--site", site)
    assert code == 2
    assert "door east-gate (contact), door east-gate (reader)" in err
    assert "--force" in err
    assert snapshot(config) == before
    code, _, err = run("device", "remove", "east-gate-reader", "--force", "--site", site)
    assert code == 0, err
    load_gateway_config(gate)


def test_literal_secrets_are_refused(config: Path, site: Path) -> None:
    before = snapshot(config)
    code, _, err = run(
        "device", "add", "b7-gate-reader", "--gateway", "gw-south", "--driver", "osdp",
        "--kind", "door_reader", "--building", "7", "--floor", "1", "--area", "Lobby",
        "--set", "address=2", "--set", "scbk=0123456789abcdef0123456789abcdef",
        "--set", "driver.port=/dev/ttyUSB2", "--site", site,
    )  # fmt: skip
    assert code == 2
    assert "scbk is a secret" in err
    assert "${NAME}" in err
    assert snapshot(config) == before

    code, out, err = run(
        "device", "add", "b7-gate-reader", "--gateway", "gw-south", "--driver", "osdp",
        "--kind", "door_reader", "--building", "7", "--floor", "1", "--area", "Lobby",
        "--set", "address=2", "--set", "scbk=${B7_READER_SCBK}",
        "--set", "driver.port=/dev/ttyUSB2", "--site", site,
    )  # fmt: skip
    assert code == 0, err
    assert "checked with stand-ins for ${B7_READER_SCBK}" in out
    raw = yaml.safe_load((config / "gateways" / "gw-south.yaml").read_text(encoding="utf-8"))
    assert raw["drivers"][-1]["readers"] == [
        {"id": "b7-gate-reader", "address": 2, "scbk": "${B7_READER_SCBK}"}
    ]


def test_gateway_config_file_and_a_gateway_new_to_the_site(
    config: Path, site: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "gw-east.yaml"
    elsewhere.write_text("# The east cabinet.\nsite: sunrise\ngateway: gw-east\n", encoding="utf-8")
    code, out, err = run(
        "device", "add", "b5-1-101-smoke", "--gateway", "gw-east", "--driver", "simulated",
        "--kind", "smoke", "--building", "5", "--floor", "1", "--unit", "101",
        "--settings-file", _settings(tmp_path, {"interval_s": 60, "driver": {"seed": 5}}),
        "--gateway-config", elsewhere, "--site", site,
    )  # fmt: skip
    assert code == 0, err
    assert "gateway gw-east: added" in out
    assert "gw-east" in Registry(load_site(site)).gateways
    gateway = load_gateway_config(elsewhere)
    sim = gateway.drivers[0]
    assert isinstance(sim, SimulatedConfig)
    assert (sim.id, sim.seed, sim.devices[0].interval_s) == ("simulated-1", 5, 60)
    assert elsewhere.read_text(encoding="utf-8").startswith("# The east cabinet.\n")

    code, _, err = run(
        "device", "add", "x", "--gateway", "gw-none", "--driver", "simulated", "--kind", "smoke",
        "--building", "5", "--site", site,
    )  # fmt: skip
    assert code == 2
    assert "no config file for gateway gw-none" in err
    assert "--gateway-config" in err


def _settings(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
