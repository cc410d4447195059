"""The installer walk-through of README.md, run as written: from a blank hub and a blank gateway
to a reading on the hub, against a real Mosquitto running the generated configuration.

The commands are read from the README's marked blocks, so the document and the test cannot
drift apart. Only what must differ on a test machine is changed, each substitution listed in
``_local``: free ports instead of 1883/8883/8470, the broker's name (127.0.0.1), and the
gateway's install directories under the test's temporary directory. Where the README's gateway
runs the bundle's systemd unit, the test runs that unit's ``ExecStart`` with its
``EnvironmentFile``, as systemd would.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.scenario]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def readme_block(name: str) -> str:
    """The shell block between ``<!-- walkthrough:NAME -->`` and its end marker."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(
        rf"<!-- walkthrough:{name} -->\s*```sh\n(.*?)```\s*<!-- /walkthrough:{name} -->",
        text,
        re.DOTALL,
    )
    assert found, f"README.md has no walkthrough:{name} block"
    return found.group(1)


def _local(script: str, ports: dict[str, int], gateway_root: Path) -> str:
    substitutions = {
        "port: 1883": f"port: {ports['local']}",
        "port: 8470": f"port: {ports['api']}",
        "--host hub.sunrise.example": (
            f"--host 127.0.0.1 --tls-port {ports['tls']} --mtls-port 0 "
            f"--local-port {ports['local']}"
        ),
        "anju gateway add gw-north": (
            f"anju gateway add gw-north --install-dir {gateway_root}/etc/anju "
            f"--data-dir {gateway_root}/var/lib/anju-edge --anju-bin {BIN}/anju"
        ),
        # Daemons must not hold the test's pipes open.
        "mosquitto -c var/hub/broker/mosquitto.conf -d": (
            "mosquitto -c var/hub/broker/mosquitto.conf -d > mosquitto.log 2>&1"
        ),
        "anju hub run --config config/hub.yaml &": (
            "anju hub run --config config/hub.yaml > hub.log 2>&1 & echo $! > hub.pid"
        ),
    }
    for old, new in substitutions.items():
        script = script.replace(old, new)
    return script


def _shell(script: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


def _kill_pid_file(path: Path) -> None:
    if path.exists():
        pid = int(path.read_text().split()[0])
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def _unit_command(unit: Path) -> tuple[list[str], dict[str, str]]:
    """ExecStart and the EnvironmentFile of the bundle's systemd unit."""
    exec_start, env_file = "", ""
    for line in unit.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key == "ExecStart":
            exec_start = value
        elif key == "EnvironmentFile":
            env_file = value.lstrip("-")
    environment = {}
    for line in Path(env_file).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            environment[name] = value
    return shlex.split(exec_start), environment


@pytest.fixture
def site_dir() -> Iterator[Path]:
    # Mosquitto started as root drops to its own user, which must reach its files: pytest's
    # temporary directories are private to root, so the hub's directory is made elsewhere.
    hub_dir = Path(tempfile.mkdtemp(prefix="anju-walkthrough-"))
    hub_dir.chmod(0o755)
    try:
        yield hub_dir
    finally:
        _kill_pid_file(hub_dir / "hub.pid")
        _kill_pid_file(hub_dir / "var" / "hub" / "broker" / "state" / "mosquitto.pid")
        shutil.rmtree(hub_dir, ignore_errors=True)


@pytest.mark.timeout(180)
def test_the_readme_walkthrough_brings_a_reading_to_the_hub(site_dir: Path, tmp_path: Path) -> None:
    ports = {"local": free_port(), "tls": free_port(), "api": free_port()}
    gateway_root = tmp_path / "gateway"
    env = {
        **os.environ,
        "PATH": f"{BIN}:/usr/sbin:/usr/local/sbin:{os.environ.get('PATH', '')}",
        "COLUMNS": "200",
    }
    env.pop("ANJU_SITE_SECRET", None)

    # On the hub: the registry, the broker, the gateway's credentials and bundle.
    hub_script = _local(readme_block("hub"), ports, gateway_root)
    hub_run = _local(readme_block("hub-run"), ports, gateway_root)
    out = _shell(hub_script + hub_run, site_dir, env)
    assert "gateway gw-north of sunrise added" in out

    # On the gateway: the bundle unpacked where the enrolment line puts it, the unit started.
    install_dir = gateway_root / "etc" / "anju"
    install_dir.mkdir(parents=True)
    with tarfile.open(site_dir / "gw-north.tar.gz") as archive:
        archive.extractall(install_dir, filter="data")
    argv, unit_env = _unit_command(install_dir / "anju-edge.service")
    assert argv[0] == f"{BIN}/anju"
    assert unit_env["ANJU_SITE_SECRET"], "the bundle carries the site secret"
    with (tmp_path / "edge.log").open("wb") as edge_log:
        agent = subprocess.Popen(
            argv, env={**env, **unit_env}, stdout=edge_log, stderr=subprocess.STDOUT
        )
        try:
            status = _until_reading(site_dir, env, ports)
            second = _second_driver(site_dir, env, ports)
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)

    [gateway] = status["gateways"]
    assert gateway["id"] == "gw-north"
    assert gateway["online"] is True
    assert status["devices_by_grid"] == {"north": {"online": 1}}
    assert status["received"]["readings"] > 0
    assert status["received"]["quarantined"] == 0
    # A device on a driver of its own starts without restarting the running one.
    assert second["ok"] is True, second
    assert second["result"]["started"] == ["simulated-2"]
    assert second["result"]["unchanged"] == ["simulated-1"]
    assert second["result"]["restarted"] == []


def _until_reading(site_dir: Path, env: dict[str, str], ports: dict[str, int]) -> dict[str, Any]:
    """Run the README's device block once the gateway is online; wait for a reading."""
    hub_env = {**env, **_env_file(site_dir / "var/hub/broker/hub.env")}
    deadline = time.monotonic() + 60
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = _status(site_dir, hub_env)
        if status.get("gateways") and status["gateways"][0]["online"]:
            break
        time.sleep(0.5)
    assert status.get("gateways"), _logs(site_dir)
    out = _shell(_local(readme_block("device"), ports, Path()), site_dir, hub_env)
    assert "gw-north runs config" in out, out
    while time.monotonic() < deadline:
        status = _status(site_dir, hub_env)
        if status["received"]["readings"] > 0:
            return status
        time.sleep(0.5)
    raise AssertionError(f"no reading reached the hub: {status}\n{_logs(site_dir)}")


def _second_driver(site_dir: Path, env: dict[str, str], ports: dict[str, int]) -> dict[str, Any]:
    hub_env = {**env, **_env_file(site_dir / "var/hub/broker/hub.env")}
    _shell(
        "anju device add b3-2-202-th --gateway gw-north --driver simulated --driver-id "
        "simulated-2 --kind temp_humidity --building 3 --floor 2 --unit 202",
        site_dir,
        hub_env,
    )
    out = _shell("anju gateway push gw-north --json", site_dir, hub_env)
    reply: dict[str, Any] = orjson.loads(out)
    return reply


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def _status(site_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [f"{BIN}/anju", "status", "--json"],
        cwd=site_dir,
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        return {}
    data: dict[str, Any] = orjson.loads(result.stdout)
    return data


def _logs(site_dir: Path) -> str:
    log = site_dir / "hub.log"
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no hub log)"
