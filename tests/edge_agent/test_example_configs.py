"""The example gateway configs: simulated and real hardware cover the same devices."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_drivers import ManualClock, create_driver
from edge_agent import load_gateway_config
from hub import load_site

CONFIG = Path(__file__).resolve().parents[2] / "config"
GATEWAYS = ["gw-north", "gw-south", "gw-gate"]


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANJU_SITE_SECRET", "example-config-site-secret")
    monkeypatch.setenv("ANJU_GW_PASSWORD", "example-password")
    monkeypatch.setenv("ANJU_EAST_GATE_SCBK", "0123456789abcdef0123456789abcdef")


def device_ids(path: Path) -> set[str]:
    config = load_gateway_config(path)
    clock = ManualClock(1_800_000_000_000)
    return {
        device
        for driver in config.drivers
        for device in create_driver(driver, clock=clock).device_ids
    }


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_switching_to_real_drivers_is_config_alone(gateway: str) -> None:
    site = load_site(CONFIG / "site.yaml")
    registered = {d.id for d in site.devices if d.gateway == gateway}
    simulated = device_ids(CONFIG / "gateways" / f"{gateway}.yaml")
    hardware = device_ids(CONFIG / "gateways-hardware" / f"{gateway}.yaml")
    assert simulated == registered
    assert hardware == registered


def test_hardware_configs_use_real_drivers() -> None:
    types = {
        driver.type
        for gateway in GATEWAYS
        for driver in load_gateway_config(CONFIG / "gateways-hardware" / f"{gateway}.yaml").drivers
    }
    assert {"modbus_rtu", "mhz19", "pms5003", "osdp"} <= types
