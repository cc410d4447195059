"""A daemon told to stop at any moment of its start-up stops cleanly (exit 0).

Each case starts the real ``anju`` console script, waits for a state it can see (the process
has taken SIGTERM, per ``/proc/PID/status``; or it has announced itself online on the broker),
optionally lets it go on for a while, and sends the signal. The first moment falls while the
interpreter still imports the command, long before an event loop exists.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from cli.stopping import StopRequest, is_daemon_command
from tests.integration.test_spine import SITE
from tests.servers import Mosquitto

ANJU = Path(sys.executable).with_name("anju")
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)

# Seconds after the process has taken the signals; "online" waits for its announcement.
MOMENTS: list[float | str] = [0.0, 0.05, 0.2, 0.5, 1.0, "online"]


def catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (the ``SigCgt`` mask of /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & SIGTERM_BIT)
    return False


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the daemon exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


class StateWatcher:
    """Records ``online`` announcements on one retained state topic."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.online = threading.Event()
        self._client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        self._client.subscribe(topic, qos=1)
        self._client.loop_start()

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.payload and orjson.loads(msg.payload).get("online"):
            self.online.set()

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def hub_config(tmp_path: Path, mosquitto: Mosquitto) -> Path:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(SITE), encoding="utf-8")
    config = tmp_path / "hub.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "site_file": str(site_file),
                "data_dir": str(tmp_path / "hub"),
                "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            }
        ),
        encoding="utf-8",
    )
    return config


@pytest.fixture
def edge_config(tmp_path: Path, mosquitto: Mosquitto) -> Path:
    config = tmp_path / "gw-north.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "site": "sunrise",
                "gateway": "gw-north",
                "data_dir": str(tmp_path / "edge"),
                "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
                "privacy": {"site_secret": "${ANJU_SITE_SECRET}"},
                "drivers": [
                    {
                        "type": "simulated",
                        "id": "sim",
                        "interval_s": 1,
                        "devices": [{"id": "b3-2-201-th", "kind": "temp_humidity"}],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    return config


def stop_at(
    argv: list[str], moment: float | str, watcher: StateWatcher, sig: signal.Signals, log: Path
) -> int:
    """Start ``anju argv``, signal it at ``moment``, return its exit code."""
    env = {**os.environ, "ANJU_SITE_SECRET": "stop-signal-test-secret"}
    watcher.online.clear()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(ANJU), *argv], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        wait_for(lambda: catches_sigterm(proc.pid), proc, "it took SIGTERM")
        if moment == "online":
            wait_for(watcher.online.is_set, proc, "it announced itself online")
        else:
            assert isinstance(moment, float)
            time.sleep(moment)
        proc.send_signal(sig)
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def hub_watcher(mosquitto: Mosquitto) -> Iterator[StateWatcher]:
    watcher = StateWatcher(mosquitto.host, mosquitto.port, "anju/v1/hub/state")
    yield watcher
    watcher.close()


@pytest.fixture
def edge_watcher(mosquitto: Mosquitto) -> Iterator[StateWatcher]:
    watcher = StateWatcher(mosquitto.host, mosquitto.port, "anju/v1/sunrise/gw-north/state")
    yield watcher
    watcher.close()


@pytest.mark.integration
@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_hub_stops_cleanly_at_any_moment_of_start_up(
    moment: float | str, hub_config: Path, hub_watcher: StateWatcher, tmp_path: Path
) -> None:
    log = tmp_path / "hub.log"
    code = stop_at(["hub", "run", "-c", str(hub_config)], moment, hub_watcher, signal.SIGTERM, log)
    assert code == 0, log.read_text(errors="replace")


@pytest.mark.integration
@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_edge_agent_stops_cleanly_at_any_moment_of_start_up(
    moment: float | str, edge_config: Path, edge_watcher: StateWatcher, tmp_path: Path
) -> None:
    log = tmp_path / "edge.log"
    code = stop_at(
        ["edge", "run", "-c", str(edge_config)], moment, edge_watcher, signal.SIGTERM, log
    )
    assert code == 0, log.read_text(errors="replace")


@pytest.mark.integration
@pytest.mark.parametrize("moment", [0.0, "online"], ids=str)
def test_edge_agent_takes_sigint_as_a_clean_stop(
    moment: float | str, edge_config: Path, edge_watcher: StateWatcher, tmp_path: Path
) -> None:
    log = tmp_path / "edge.log"
    code = stop_at(
        ["edge", "run", "-c", str(edge_config)], moment, edge_watcher, signal.SIGINT, log
    )
    assert code == 0, log.read_text(errors="replace")


def test_only_daemon_commands_take_the_signals() -> None:
    assert is_daemon_command(["hub", "run", "-c", "hub.yaml"])
    assert is_daemon_command(["edge", "run"])
    assert is_daemon_command(["demo", "--duration", "5"])
    # Ctrl-C in an installer's command keeps its usual meaning.
    assert not is_daemon_command(["device", "test", "x"])
    assert not is_daemon_command(["hub"])
    assert not is_daemon_command([])


async def test_a_signal_delivered_to_another_thread_wakes_the_loop() -> None:
    # The C-level handler may run in any thread; the wake-up socket gets the loop out of a
    # long sleep so the stop happens now, not at the next timer.
    request = StopRequest()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    stopped = asyncio.Event()
    parked = threading.Event()
    release = threading.Event()

    def park() -> None:
        parked.set()
        release.wait(30)

    thread = threading.Thread(target=park)
    try:
        request.install()
        request.attach(asyncio.get_running_loop(), stopped.set)
        thread.start()
        parked.wait(5)
        assert thread.ident is not None
        signal.pthread_kill(thread.ident, signal.SIGTERM)
        async with asyncio.timeout(10):
            await stopped.wait()
        assert request.signal == signal.SIGTERM
    finally:
        release.set()
        thread.join(5)
        request.detach()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def test_a_signal_before_attach_stops_at_attach() -> None:
    request = StopRequest()
    previous = signal.getsignal(signal.SIGTERM)
    stopped = asyncio.Event()
    try:
        request.install()
        signal.raise_signal(signal.SIGTERM)
        assert request.requested
        request.attach(asyncio.get_running_loop(), stopped.set)
        async with asyncio.timeout(5):
            await stopped.wait()
    finally:
        request.detach()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def child_pids(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return children


def demo_broker(pid: int) -> tuple[int, Path] | None:
    """The demo's Mosquitto child: its pid and config file, once it runs."""
    for child in child_pids(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if argv and argv[0].endswith(b"mosquitto") and b"-c" in argv:
            return child, Path(argv[argv.index(b"-c") + 1].decode())
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.integration
@pytest.mark.parametrize("moment", ["importing", "broker", "online"])
def test_demo_stops_cleanly_and_takes_its_broker_along(moment: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANJU_SITE_SECRET"}
    err = tmp_path / "demo.err"
    with err.open("wb") as err_file:
        proc = subprocess.Popen(
            [str(ANJU), "demo", "--duration", "600", "--json"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err_file,
        )
    broker: tuple[int, Path] | None = None
    watcher: StateWatcher | None = None
    try:
        wait_for(lambda: catches_sigterm(proc.pid), proc, "it took SIGTERM")
        if moment != "importing":
            wait_for(lambda: demo_broker(proc.pid) is not None, proc, "its broker ran")
            broker = demo_broker(proc.pid)
        if moment == "online" and broker is not None:
            conf = broker[1].read_text()
            port = int(conf.split("listener ", 1)[1].split()[0])
            wait_for(lambda: accepts(port), proc, "its broker listened")
            watcher = StateWatcher("127.0.0.1", port, "anju/v1/sunrise/+/state")
            wait_for(watcher.online.is_set, proc, "a gateway announced itself online")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    finally:
        if watcher is not None:
            watcher.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err.read_text(errors="replace")[-3000:]
    if broker is not None:
        assert not alive(broker[0]), "the demo left its Mosquitto running"
    if moment == "online":
        # Stopped the usual way: the site ran and says so.
        summary = orjson.loads(out)
        assert set(summary["gateways"]) == {"gw-north", "gw-south", "gw-gate"}
