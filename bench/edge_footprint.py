"""The edge agent on a Raspberry Pi's budget: RSS and CPU of ``anju edge run`` at 200 sensors.

One real edge agent (``anju edge run``, the console script) runs 200 ``simulated`` sensors of
mixed kinds (temperature/humidity, CO2, PM2.5, smoke, gas, water leak) reporting every second,
against a real Mosquitto and a real hub (``anju hub run``, embedded store) that acknowledges
every batch, so the gateway's queue stays empty as in normal operation.  After a warm-up (start-
up, imports, the first connection), the agent's CPU share (utime + stime over wall time, from
``/proc/PID/stat``) and its RSS (``VmRSS`` sampled every second and ``VmHWM`` at the end, from
``/proc/PID/status``) are measured over the window.  Readings seen on the broker and messages
acknowledged by the hub prove that the agent did its work meanwhile.  The target (DESIGN.md, "The
hot path") is at most 40 MB of RSS and 3 % of a core.

Then, side by side, ThingsBoard IoT Gateway (PyPI ``thingsboard-gateway``, installed by this
benchmark into a venv of its own under the work directory, cached between runs) reads the same
200 points at 1 Hz through its MQTT connector (a feeder publishes one JSON message per sensor per
second on the same Mosquitto) and publishes them as gateway telemetry to the same Mosquitto,
which stands in for the ThingsBoard server's MQTT endpoint.  It is measured the same way.  If it
cannot be installed or does not run here, the result says so and why, and reports ours alone.

    python -m bench.edge_footprint [--sensors 200] [--seconds 60] [--warmup 5] [--json]
                                   [--no-thingsboard] [--workdir DIR] [--keep]

Every process the benchmark starts is stopped on every path: success, failure, Ctrl-C, SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

import orjson
import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    BROKER_CONFIG,
    BROKER_NODELAY,
    REPO_ROOT,
    SITE_ID,
    BenchError,
    DeviceSpec,
    HubProcess,
    SystemCpu,
    child_env,
    cpu_seconds,
    machine,
    write_hub_config,
)
from tests.servers import Mosquitto, tail

GATEWAY = "gw-footprint"
SECRET = "footprint-benchmark-site-secret"  # noqa: S105 - a benchmark key, not a credential
# The simulator's kinds that report telemetry, in turn: every sensor sends a reading each second.
KINDS = ("temp_humidity", "co2", "pm25", "temp_humidity", "smoke", "gas", "water_leak")
TARGET_RSS_MB = 40.0
TARGET_CPU_PERCENT = 3.0
# ThingsBoard's gateway, in a venv of its own (never a project dependency).
TB_PACKAGE = "thingsboard-gateway"
TB_TOPIC = "anju-bench/sensors"
FEED_VALUES = ("temperature", "humidity", "battery")
# The gateway sends nothing until its server has told it the session's limits.
SESSION_RPC = "getSessionLimits"
TB_LIMITS = {
    "rateLimits": {},
    "gatewayRateLimits": {},
    "maxInflightMessages": 1000,
    "maxPayloadSize": 65536,
}
TB_INSTALL_TIMEOUT_S = 900.0
DEFAULT_WORKDIR = REPO_ROOT / ".bench" / "edge_footprint"


def devices(sensors: int) -> list[DeviceSpec]:
    """``sensors`` devices of mixed telemetry kinds on the benchmark's gateway."""
    return [DeviceSpec(f"s-{i:04d}", GATEWAY, KINDS[i % len(KINDS)]) for i in range(sensors)]


# -- process figures -----------------------------------------------------------------------------


def memory_status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of a live process, in bytes (``/proc/<pid>/status``)."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            found[name] = int(rest.split()[0]) * 1024
    if len(found) != 2:
        raise BenchError(f"no VmRSS/VmHWM for process {pid}")
    return found


def _mb(value: float) -> float:
    return round(value / 1e6, 1)


def _mib(value: float) -> float:
    return round(value / 2**20, 1)


class Meter:
    """RSS and CPU share of one live process over a measurement window."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu0 = 0.0
        self._t0 = 0.0
        self.rss_samples: list[int] = []

    def start(self) -> None:
        """Begin the window."""
        self._cpu0 = cpu_seconds(self.pid)
        self._t0 = time.monotonic()
        self.rss_samples.clear()

    def sample(self) -> None:
        """Record the current RSS."""
        self.rss_samples.append(memory_status(self.pid)["VmRSS"])

    def stop(self) -> dict[str, Any]:
        """End the window; the figures of the process over it."""
        cpu = cpu_seconds(self.pid) - self._cpu0
        wall = time.monotonic() - self._t0
        status = memory_status(self.pid)
        samples = [*self.rss_samples, status["VmRSS"]]
        return {
            "pid": self.pid,
            "window_s": round(wall, 2),
            "cpu_s": round(cpu, 3),
            "cpu_percent_of_core": round(100 * cpu / wall, 2) if wall > 0 else 0.0,
            "vm_hwm_mb": _mb(status["VmHWM"]),
            "vm_hwm_mib": _mib(status["VmHWM"]),
            "vm_rss_mb": _mb(status["VmRSS"]),
            "vm_rss_mib": _mib(status["VmRSS"]),
            "vm_rss_max_mb": _mb(max(samples)),
            "vm_rss_mean_mb": _mb(sum(samples) / len(samples)),
        }


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


# -- processes -------------------------------------------------------------------------------------


class Child:
    """A child process with its output in a log file; stopped by :meth:`stop` on every path."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        log_path: Path,
        cwd: Path = REPO_ROOT,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = list(command)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env if env is not None else child_env(),
            # Its own process group: a Ctrl-C in the terminal reaches the benchmark alone, which
            # then stops its children in order (a hub killed first would leave acks missing).
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def check_alive(self, what: str) -> None:
        """Raise with the end of the child's log if it has exited."""
        if self.proc.poll() is not None:
            raise BenchError(
                f"{what} exited with code {self.proc.returncode}\n"
                f"--- {self.log_path} ---\n{tail(self.log_path)}"
            )

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL of its whole group if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class Watcher:
    """The benchmark's MQTT client: counts the hub's acks and the readings on the broker.

    ``topics`` maps a topic filter to what its messages are: ``"ack"`` (the hub's v1 acks:
    distinct seqs acknowledged), ``"data"`` (v1 data batches: readings), ``"tb"`` (ThingsBoard
    gateway telemetry: ``{device: [{ts, values}]}``, counted as readings) or ``"tb-rpc"`` (the
    gateway's requests to its server, of which the session-limits request is answered as a
    ThingsBoard server would: the broker stands in for the server's MQTT endpoint).
    """

    def __init__(self, mosquitto: Mosquitto, topics: dict[str, str], client_id: str) -> None:
        self._topics = topics
        self._lock = threading.Lock()
        self.acked: set[int] = set()
        self.readings = 0
        self.messages = 0
        self.first_ack = threading.Event()
        self._subscribed = threading.Event()
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
        )
        self._client.on_connect = lambda client, *_: client.subscribe(
            [(topic, 1) for topic in topics]
        )
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(mosquitto.host, mosquitto.port, keepalive=60)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise BenchError("the benchmark's MQTT client could not subscribe")

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        kind = next(
            (k for f, k in self._topics.items() if paho.topic_matches_sub(f, msg.topic)), None
        )
        try:
            body = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            return
        with self._lock:
            self.messages += 1
            if kind == "ack":
                ranges = body.get("ranges") or [[0, body["seq"]]]
                for first, last in ranges:
                    self.acked.update(range(first, last + 1))
                self.first_ack.set()
            elif kind == "data":
                self.readings += len(body.get("readings", ()))
            elif kind == "tb-rpc" and isinstance(body, dict) and body.get("method") == SESSION_RPC:
                # What a ThingsBoard server answers a gateway that asks for its limits: none.
                request_id = msg.topic.rsplit("/", 1)[1]
                self._client.publish(
                    f"v1/devices/me/rpc/response/{request_id}", orjson.dumps(TB_LIMITS), qos=1
                )
            elif kind == "tb" and isinstance(body, dict):
                self.readings += sum(len(v) if isinstance(v, list) else 1 for v in body.values())

    def counts(self) -> tuple[int, int]:
        """Seqs acknowledged and readings seen so far."""
        with self._lock:
            return len(self.acked), self.readings

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


def _window(
    meter: Meter,
    watcher: Watcher,
    seconds: float,
    alive: Sequence[tuple[Child | HubProcess, str]],
    *,
    acks: bool = True,
) -> dict[str, Any]:
    """Measure ``meter``'s process for ``seconds``, sampling RSS each second."""
    system = SystemCpu()
    acked0, readings0 = watcher.counts()
    load_before = load_average()
    system.start()
    meter.start()
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(1.0, remaining))
        for child, what in alive:
            if isinstance(child, HubProcess):
                child.check_alive()
            else:
                child.check_alive(what)
        meter.sample()
    figures = meter.stop()
    acked1, readings1 = watcher.counts()
    if acks:
        figures["acked_in_window"] = acked1 - acked0
    figures["readings_in_window"] = readings1 - readings0
    figures["readings_per_s"] = round((readings1 - readings0) / figures["window_s"], 1)
    figures["machine_busy_cores"] = system.stop()
    figures["load_average_before"] = load_before
    figures["load_average"] = load_average()
    return figures


# -- ours ------------------------------------------------------------------------------------------


def gateway_config(workdir: Path, mosquitto: Mosquitto, sensors: Sequence[DeviceSpec]) -> Path:
    """The agent's config: one simulated driver, every sensor reporting each second."""
    config = {
        "site": SITE_ID,
        "gateway": GATEWAY,
        "data_dir": str(workdir / "edge"),
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
        "privacy": {"site_secret": "${ANJU_SITE_SECRET}"},
        "drivers": [
            {
                "type": "simulated",
                "id": "sim",
                "seed": 1,
                "interval_s": 1,
                "devices": [{"id": d.id, "kind": d.kind} for d in sensors],
            }
        ],
    }
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_ours(
    workdir: Path, mosquitto: Mosquitto, *, sensors: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """The edge agent against the hub: its figures over the window after ``warmup``."""
    workdir.mkdir(parents=True)
    specs = devices(sensors)
    hub_config = write_hub_config(
        workdir, devices=specs, mosquitto=mosquitto, rules=[], influx_url=None
    )
    config = gateway_config(workdir, mosquitto, specs)
    anju = Path(sys.executable).with_name("anju")
    launcher = [str(anju)] if anju.exists() else [sys.executable, "-m", "cli.entry"]
    env = child_env()
    env["ANJU_SITE_SECRET"] = SECRET
    base = f"anju/v1/{SITE_ID}/{GATEWAY}"
    watcher = Watcher(mosquitto, {f"{base}/ack": "ack", f"{base}/data": "data"}, "bench-footprint")
    hub = HubProcess(hub_config, workdir)
    agent: Child | None = None
    try:
        time.sleep(0.5)
        hub.check_alive()
        started = time.monotonic()
        agent = Child(
            [*launcher, "edge", "run", "--config", str(config), "--log-level", "WARNING"],
            log_path=workdir / "edge.log",
            env=env,
        )
        # Start-up is over once the agent's first batch came back acknowledged.
        while not watcher.first_ack.wait(0.5):
            agent.check_alive("the edge agent")
            hub.check_alive()
            if time.monotonic() - started > 60:
                raise BenchError(f"no acknowledgement within 60 s\n{tail(agent.log_path)}")
        startup_s = time.monotonic() - started
        time.sleep(max(0.0, started + warmup - time.monotonic()))
        figures = _window(
            Meter(agent.pid),
            watcher,
            seconds,
            [(agent, "the edge agent"), (hub, "the hub")],
        )
        figures["startup_to_first_ack_s"] = round(startup_s, 2)
        figures["acked_total"], figures["readings_total"] = watcher.counts()
        figures["hub"] = hub.stats()
        if figures["acked_in_window"] == 0 or figures["readings_in_window"] == 0:
            raise BenchError(f"nothing was acknowledged in the window: {figures}")
        figures["agent_exit_code"] = agent.stop()
        agent = None
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()
        watcher.close()
    figures["within_target"] = {
        "rss": figures["vm_hwm_mb"] <= TARGET_RSS_MB,
        "cpu": figures["cpu_percent_of_core"] <= TARGET_CPU_PERCENT,
    }
    return figures


# -- ThingsBoard IoT Gateway ---------------------------------------------------------------------


class Unavailable(Exception):  # noqa: N818 - an outcome, reported, not an error of ours
    """thingsboard-gateway cannot be installed or run here; the message says why."""


def tb_venv(root: Path) -> Path:
    """A venv with thingsboard-gateway, made once under ``root`` and reused; its python."""
    venv = root / "thingsboard-gateway-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists() and python.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    log = root / "thingsboard-gateway-install.log"
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "--quiet", TB_PACKAGE],
    ]
    with log.open("wb") as out:
        for step in steps:
            try:
                done = subprocess.run(
                    step,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=TB_INSTALL_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                msg = f"`{' '.join(step[-3:])}` took over {TB_INSTALL_TIMEOUT_S:g} s"
                raise Unavailable(msg) from None
            if done.returncode != 0:
                raise Unavailable(f"`{' '.join(step[-3:])}` failed:\n{tail(log, 15)}")
    stamp.write_text(_first_line([str(python), "-m", "pip", "show", TB_PACKAGE], "Version:"))
    return python


def _first_line(command: Sequence[str], prefix: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    for line in done.stdout.splitlines():
        if line.startswith(prefix):
            return line.removeprefix(prefix).strip()
    return "unknown"


def tb_configs(workdir: Path, mosquitto: Mosquitto, package_dir: Path) -> Path:
    """The gateway's main config and its MQTT connector's; the main config's path."""
    config_dir = workdir / "config"
    (config_dir / "logs").mkdir(parents=True)
    connector = {
        "broker": {
            "name": "anju bench feeder",
            "host": mosquitto.host,
            "port": mosquitto.port,
            "clientId": "tb-gateway-connector",
            "version": 4,
            "maxMessageNumberPerWorker": 10,
            "maxNumberOfWorkers": 100,
            "sendDataOnlyOnChange": False,
            "security": {"type": "anonymous"},
        },
        "mapping": [
            {
                "topicFilter": f"{TB_TOPIC}/+",
                "subscriptionQos": 1,
                "converter": {
                    "type": "json",
                    "deviceInfo": {
                        "deviceNameExpressionSource": "message",
                        "deviceNameExpression": "${dev}",
                        "deviceProfileExpressionSource": "message",
                        "deviceProfileExpression": "${kind}",
                    },
                    "sendDataOnlyOnChange": False,
                    "timeout": 60000,
                    "attributes": [],
                    "timeseries": [
                        {"type": "double", "key": name, "value": "${" + name + "}"}
                        for name in FEED_VALUES
                    ],
                },
            }
        ],
        "requestsMapping": {},
    }
    main = {
        "thingsboard": {
            "host": mosquitto.host,
            "port": mosquitto.port,
            "remoteShell": False,
            "remoteConfiguration": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 3600},
            "deviceFiltering": {"enable": False},
            "maxPayloadSizeBytes": 8196,
            "minPackSendDelayMS": 50,
            "minPackSizeToSend": 500,
            "checkConnectorsConfigurationInSeconds": 3600,
            "handleDeviceRenaming": False,
            "security": {"type": "accessToken", "accessToken": "anju-bench-token"},
            "qos": 1,
        },
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 100000},
        "grpc": {"enabled": False},
        "connectors": [
            {"type": "mqtt", "name": "MQTT Broker Connector", "configuration": "mqtt.json"}
        ],
    }
    (config_dir / "mqtt.json").write_text(orjson.dumps(connector).decode())
    path = config_dir / "tb_gateway.json"
    path.write_text(orjson.dumps(main).decode())
    # Its own logging config (file handlers under ./logs, relative to its working directory).
    shutil.copy(package_dir / "config" / "logs.json", config_dir / "logs.json")
    return path


class Feeder:
    """Publishes one JSON message per sensor per second for the gateway's MQTT connector."""

    def __init__(self, mosquitto: Mosquitto, sensors: Sequence[DeviceSpec]) -> None:
        self._sensors = sensors
        self._stop = threading.Event()
        self.published = 0
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="bench-footprint-feeder",
            protocol=paho.MQTTv311,
        )
        self._client.max_inflight_messages_set(1000)
        self._client.connect(mosquitto.host, mosquitto.port, keepalive=60)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tick = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            ts = int(time.time() * 1000)
            for index, sensor in enumerate(self._sensors):
                body = {
                    "dev": sensor.id,
                    "kind": sensor.kind,
                    "ts": ts,
                    "temperature": 20.0 + (index + tick) % 10 / 10,
                    "humidity": 50.0,
                    "battery": 90.0,
                }
                self._client.publish(f"{TB_TOPIC}/{sensor.id}", orjson.dumps(body), qos=1)
                self.published += 1
            tick += 1
            next_at += 1.0
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        """Stop publishing and disconnect."""
        self._stop.set()
        self._thread.join(5)
        self._client.disconnect()
        self._client.loop_stop()


def run_thingsboard(
    workdir: Path,
    mosquitto: Mosquitto,
    *,
    cache: Path,
    sensors: int,
    seconds: float,
    warmup: float,
) -> dict[str, Any]:
    """thingsboard-gateway reading the same points: its figures, or why there are none."""
    try:
        python = tb_venv(cache)
    except Unavailable as exc:
        return {"available": False, "reason": f"cannot be installed: {exc}"}
    version = (cache / "thingsboard-gateway-venv" / ".installed").read_text().strip()
    workdir.mkdir(parents=True)
    packages = sorted((cache / "thingsboard-gateway-venv").glob("lib/python*/site-packages"))
    config = tb_configs(workdir, mosquitto, packages[0] / "thingsboard_gateway")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    watcher = Watcher(
        mosquitto,
        {"v1/gateway/telemetry": "tb", "v1/devices/me/rpc/request/+": "tb-rpc"},
        "bench-tb",
    )
    gateway: Child | None = None
    feeder: Feeder | None = None
    try:
        started = time.monotonic()
        gateway = Child(
            [
                str(python),
                "-c",
                "from thingsboard_gateway.tb_gateway import daemon; daemon()",
            ],
            log_path=workdir / "tb-gateway.log",
            cwd=config.parent,
            env={**env, "TB_GW_CONFIG_DIR": f"{config.parent}{os.sep}"},
        )
        feeder = Feeder(mosquitto, devices(sensors))
        # Start-up is over once its first telemetry reached the broker.
        while watcher.counts()[1] == 0:
            time.sleep(0.5)
            try:
                gateway.check_alive("thingsboard-gateway")
            except BenchError as exc:
                return {"available": False, "version": version, "reason": f"does not run: {exc}"}
            if time.monotonic() - started > 120:
                return {
                    "available": False,
                    "version": version,
                    "reason": "no telemetry on the broker within 120 s\n"
                    + tail(gateway.log_path, 30),
                }
        startup_s = time.monotonic() - started
        time.sleep(max(0.0, started + max(warmup, startup_s + 5) - time.monotonic()))
        figures = _window(
            Meter(gateway.pid),
            watcher,
            seconds,
            [(gateway, "thingsboard-gateway")],
            acks=False,  # ThingsBoard acknowledges with PUBACK only
        )
        figures["startup_to_first_telemetry_s"] = round(startup_s, 2)
        figures["fed_readings"] = feeder.published
        figures["available"] = True
        figures["version"] = version
        figures["connector"] = "mqtt (one JSON message per sensor per second)"
    finally:
        if feeder is not None:
            feeder.close()
        if gateway is not None:
            gateway.stop()
        watcher.close()
    return figures


# -- the run ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT unwind as Ctrl-C does, so that every ``finally`` stops its processes.

    SIGINT too: a benchmark started in the background of a shell inherits it ignored.
    """

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(
    *,
    sensors: int = 200,
    seconds: float = 60.0,
    warmup: float = 5.0,
    thingsboard: bool = True,
    workdir: Path = DEFAULT_WORKDIR,
    keep: bool = False,
) -> dict[str, Any]:
    """Ours, then thingsboard-gateway's, one after the other on one broker."""
    workdir = workdir.resolve()  # the servers run in directories of their own
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    result: dict[str, Any] = {
        "bench": "edge_footprint",
        "params": {"sensors": sensors, "interval_s": 1, "seconds": seconds, "warmup_s": warmup},
        "target": {"rss_mb": TARGET_RSS_MB, "cpu_percent_of_core": TARGET_CPU_PERCENT},
        "workdir": str(run_dir),
    }
    try:
        with (
            _terminated_as_interrupt(),
            Mosquitto(
                run_dir / "mqtt", extra_config=(*BROKER_CONFIG, *BROKER_NODELAY)
            ).start() as mosquitto,
        ):
            result["anju_edge"] = run_ours(
                run_dir / "anju", mosquitto, sensors=sensors, seconds=seconds, warmup=warmup
            )
            if thingsboard:
                result["thingsboard_gateway"] = run_thingsboard(
                    run_dir / "thingsboard",
                    mosquitto,
                    cache=workdir,
                    sensors=sensors,
                    seconds=seconds,
                    warmup=warmup,
                )
            else:
                result["thingsboard_gateway"] = {"available": False, "reason": "not requested"}
            result["machine"] = machine(mosquitto)
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    return result


def render(result: dict[str, Any]) -> str:
    """A short table."""
    params = result["params"]
    lines = [
        (
            f"{params['sensors']} sensors at 1 Hz, {params['seconds']:g} s after a "
            f"{params['warmup_s']:g} s warm-up; target <= {TARGET_RSS_MB:g} MB RSS, "
            f"<= {TARGET_CPU_PERCENT:g} % of a core"
        ),
        (
            f"{'gateway':<22}{'VmHWM MB':>10}{'VmRSS MB':>10}{'CPU %':>8}"
            f"{'readings/s':>12}{'acked':>8}{'load avg':>18}"
        ),
    ]
    rows = [("anju edge", result["anju_edge"])]
    tb = result["thingsboard_gateway"]
    if tb.get("available"):
        rows.append((f"thingsboard-gw {tb['version']}", tb))
    for name, row in rows:
        load = " ".join(f"{v:.2f}" for v in row["load_average"])
        acked = row.get("acked_in_window", "-")
        lines.append(
            f"{name:<22}{row['vm_hwm_mb']:>10}{row['vm_rss_mb']:>10}"
            f"{row['cpu_percent_of_core']:>8}{row['readings_per_s']:>12}{acked:>8}{load:>18}"
        )
    if not tb.get("available"):
        lines.append(f"thingsboard-gateway: not measured: {tb['reason']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.edge_footprint", description=__doc__)
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=5.0, help="start-up left out")
    parser.add_argument(
        "--no-thingsboard", action="store_true", help="measure the anju edge agent alone"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="runs and the cached thingsboard-gateway venv live here",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's files and logs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = run(
            sensors=args.sensors,
            seconds=args.seconds,
            warmup=args.warmup,
            thingsboard=not args.no_thingsboard,
            workdir=args.workdir,
            keep=args.keep,
        )
    except BenchError as exc:
        print(f"bench.edge_footprint: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench.edge_footprint: interrupted; every process it started is stopped")
        return 130
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
