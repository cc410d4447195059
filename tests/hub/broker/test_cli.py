"""`anju broker` and `anju gateway` through their Typer apps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from typer.testing import CliRunner, Result

from cli.gateway import broker_app, gateway_app
from hub import load_site
from hub.broker import BrokerPaths, load_inventory, verify_password
from hub.broker.passwords import read_password_file
from tests.hub.broker.brokers import read_env

CLI_SITE_KEY = "cli-site-secret"
SITE: dict[str, Any] = {
    "site": {"id": "s1", "name": "Test Garden"},
    "gateways": [{"id": "gw-1"}],
}
TEMPLATE: dict[str, Any] = {
    "site": "s1",
    "gateway": "gw-1",
    "drivers": [
        {
            "type": "simulated",
            "id": "sim",
            "devices": [{"id": "th-1", "kind": "temp_humidity"}],
        }
    ],
}


def run(app: Any, *args: str, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner(env={"COLUMNS": "240", **(env or {})})
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def hub_config(tmp_path: Path) -> Path:
    config_dir = tmp_path / "config"
    (config_dir / "gateways").mkdir(parents=True)
    (config_dir / "site.yaml").write_text(yaml.safe_dump(SITE))
    (config_dir / "gateways" / "gw-1.yaml").write_text(yaml.safe_dump(TEMPLATE))
    hub = {
        "site_file": "site.yaml",
        "data_dir": "../data",
        # Not set in the environment: provisioning must not need the hub's own secret.
        "mqtt": {"username": "anju-hub", "password": "${ANJU_HUB_MQTT_PASSWORD_UNSET}"},
    }
    path = config_dir / "hub.yaml"
    path.write_text(yaml.safe_dump(hub))
    return path


def test_init_add_rotate_revoke_list(hub_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundles"
    result = run(broker_app, "init", "--config", str(hub_config), "--host", "10.0.0.2", "--json")
    assert result.exit_code == 0, result.output
    made = orjson.loads(result.stdout)
    root = (tmp_path / "data" / "broker").resolve()
    assert made["broker_dir"] == str(root)
    assert made["sites"] == ["s1"]
    assert made["settings"]["hosts"] == ["10.0.0.2"]
    assert made["created_ca"]
    assert made["hub_password_created"]
    paths = BrokerPaths(root)

    result = run(
        gateway_app,
        *("add", "gw-1", "--config", str(hub_config), "--out", str(out), "--json"),
        env={"ANJU_SITE_SECRET": CLI_SITE_KEY},
    )
    assert result.exit_code == 0, result.output
    added = orjson.loads(result.stdout)
    assert added["site"] == "s1"
    assert added["broker"] == "10.0.0.2:8883"
    assert added["site_secret_included"] is True
    assert added["reloaded_pid"] is None
    assert "not running" in result.stderr
    assert "password" not in added["record"]
    config = yaml.safe_load((out / "gw-1" / "gateway.yaml").read_text())
    assert config["drivers"][0]["id"] == "sim", "the site's gateways/gw-1.yaml is the template"
    secrets = read_env(out / "gw-1" / "secrets.env")
    assert secrets["ANJU_SITE_SECRET"] == CLI_SITE_KEY
    first = secrets["ANJU_MQTT_PASSWORD"]
    assert first not in result.output
    assert verify_password(first, read_password_file(paths.passwd)["gw-1"])
    assert added["enrol_command"].startswith("sudo sh -c ")

    result = run(gateway_app, "add", "gw-2", "--cert", "--config", str(hub_config), "-o", str(out))
    assert result.exit_code == 0, result.output
    # The gateway is listed in the site file, and its config kept on the hub for pushes.
    assert "gw-2" in {g.id for g in load_site(hub_config.parent / "site.yaml").gateways}
    assert (hub_config.parent / "gateways" / "gw-2.yaml").is_file()
    assert "ANJU_SITE_SECRET is not set" in result.stderr
    assert "tar -xzf gw-2.tar.gz" in result.stdout

    result = run(gateway_app, "rotate", "gw-1", "--config", str(hub_config), "-o", str(out))
    assert result.exit_code == 0, result.output
    second = read_env(out / "gw-1" / "secrets.env")["ANJU_MQTT_PASSWORD"]
    assert second != first
    assert verify_password(second, read_password_file(paths.passwd)["gw-1"])

    # Without a running broker the revocation is recorded, but the command says it is not
    # applied yet.
    result = run(gateway_app, "revoke", "gw-1", "--config", str(hub_config))
    assert result.exit_code == 1
    assert "anju broker reload" in result.stderr
    assert "gw-1" not in read_password_file(paths.passwd)
    result = run(gateway_app, "revoke", "gw-2", "--config", str(hub_config), "--no-reload")
    assert result.exit_code == 0, result.output

    result = run(gateway_app, "list", "--config", str(hub_config), "--json")
    listed = {g["id"]: g for g in orjson.loads(result.stdout)}
    assert listed["gw-1"]["revoked"]
    assert listed["gw-1"]["rotated"]
    assert listed["gw-2"]["auth"] == "cert"
    result = run(gateway_app, "list", "--config", str(hub_config))
    assert "revoked" in result.stdout
    assert "gw-2" in result.stdout


def test_init_again_keeps_what_is_not_given(hub_config: Path, tmp_path: Path) -> None:
    run(broker_app, "init", "-c", str(hub_config), "-H", "a.example", "--mtls-port", "0")
    result = run(broker_app, "init", "-c", str(hub_config), "--tls-port", "18883")
    assert result.exit_code == 0, result.output
    assert "restarts" in result.stdout
    settings = load_inventory(BrokerPaths((tmp_path / "data" / "broker").resolve())).settings
    assert settings.hosts == ("a.example",)
    assert settings.mtls_port is None
    assert settings.tls_port == 18883
    result = run(gateway_app, "add", "gw-1", "--cert", "-c", str(hub_config), "-o", str(tmp_path))
    assert result.exit_code == 2
    assert "--mtls-port 8884" in result.stderr


def test_gateway_commands_before_init_say_what_to_do(hub_config: Path, tmp_path: Path) -> None:
    result = run(gateway_app, "add", "gw-1", "-c", str(hub_config), "-o", str(tmp_path))
    assert result.exit_code == 2
    assert "anju broker init" in result.stderr
    result = run(gateway_app, "list", "-c", str(hub_config))
    assert result.exit_code == 2
    assert "anju broker init" in result.stderr


def test_reload_without_a_broker_explains(hub_config: Path) -> None:
    result = run(broker_app, "reload", "-c", str(hub_config))
    assert result.exit_code == 2
    assert "Mosquitto is not running" in result.stderr


def test_a_missing_site_and_bad_paths_are_reported(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text("data_dir: data\n")
    result = run(broker_app, "init", "-c", str(config))
    assert result.exit_code == 2
    assert "--site" in result.stderr
    assert run(broker_app, "init", "-c", str(config), "-s", "s1").exit_code == 0
    result = run(
        gateway_app, "add", "gw-1", "-s", "s1", "-c", str(config), "--install-dir", "etc/anju"
    )
    assert result.exit_code == 2
    assert "absolute path" in result.stderr
    result = run(gateway_app, "list", "-c", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 2
    assert "--broker-dir" in result.stderr
