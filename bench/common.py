"""What the benchmarks share: the site, the hub subprocess, stream files, helper processes,
process statistics and a description of the machine."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import queue
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import version as package_version
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from tests.servers import Mosquitto, VictoriaMetrics, find_binary, tail
from wire import HUB_STATE_TOPIC, DataBatch, Reading, encode
from wire.codec import decode_hub_state

REPO_ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = REPO_ROOT / "config" / "rules"
SITE_ID = "bench"
# Values of every telemetry reading; each has a rule in config/rules (threshold rules run).
VALUE_NAMES = ("temperature", "humidity", "battery")
# Mosquitto keeps at most 1000 queued QoS 1 messages per client by default and drops the rest
# silently: a benchmark that outruns its subscriber would lose data, so the queue is unbounded.
BROKER_CONFIG = ("max_queued_messages 0",)
# Mosquitto leaves Nagle's algorithm on by default: a small message (an alarm) sent to a client
# that has not yet ACKed the broker's previous small packet waits up to the peer's delayed-ACK
# time (40 ms on Linux).  Deployments should turn it off; the latency benchmark does by default.
BROKER_NODELAY = ("set_tcp_nodelay true",)
PROBE_VALUES = {"temperature": 21.0, "humidity": 50.0, "battery": 90.0}


def child_env() -> dict[str, str]:
    """The environment of every child process: this tree's packages come first on the path.

    The venv's editable install would otherwise load whatever tree it was installed from.
    """
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT)
    return env


class BenchError(RuntimeError):
    """A benchmark could not run or its result is wrong; the message says why."""


# -- the site --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """One device of the benchmark site."""

    id: str
    gateway: str
    kind: str


def telemetry_devices(gateways: Sequence[str], count: int) -> list[DeviceSpec]:
    """``count`` temperature/humidity sensors spread round-robin over ``gateways``."""
    return [
        DeviceSpec(f"th-{i:04d}", gateways[i % len(gateways)], "temp_humidity")
        for i in range(count)
    ]


def site_document(devices: Sequence[DeviceSpec]) -> dict[str, Any]:
    """A site file: one grid, ten buildings of six floors, the devices in units."""
    gateways = sorted({d.gateway for d in devices})
    buildings = [{"id": str(b), "name": f"Building {b}", "floors": 6} for b in range(1, 11)]
    placed = []
    for index, device in enumerate(devices):
        building = index % 10 + 1
        floor = (index // 10) % 6 + 1
        unit = f"{floor}{(index // 60) % 100:02d}"
        placed.append(
            {
                "id": device.id,
                "gateway": device.gateway,
                "kind": device.kind,
                "building": str(building),
                "floor": floor,
                "unit": unit,
            }
        )
    return {
        "site": {"id": SITE_ID, "name": "Benchmark Garden", "timezone": "Asia/Shanghai"},
        "people": [
            {"id": "worker", "name": "Grid Worker", "role": "grid_worker"},
            {"id": "office", "name": "Community Office", "role": "community_office"},
        ],
        "escalation": {"community_office": ["office"]},
        "grids": [{"id": "g1", "name": "Grid 1", "worker": "worker", "buildings": buildings}],
        "gateways": [{"id": gw} for gw in gateways],
        "devices": placed,
    }


def write_hub_config(
    workdir: Path,
    *,
    devices: Sequence[DeviceSpec],
    mosquitto: Mosquitto,
    rules: Sequence[Path],
    influx_url: str | None,
    webhook_url: str | None = None,
) -> Path:
    """Write the site file and the hub's YAML config into ``workdir``; return the config path."""
    site_file = workdir / "site.yaml"
    site_file.write_text(yaml.safe_dump(site_document(devices)), encoding="utf-8")
    config: dict[str, Any] = {
        "site_file": str(site_file),
        "rules": [str(p) for p in rules],
        "data_dir": str(workdir / "hub"),
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "anju-hub-bench"},
        "notifiers": {"log": False},
    }
    if influx_url is not None:
        config["influx"] = {"url": influx_url}
    if webhook_url is not None:
        config["notifiers"]["webhooks"] = [{"name": "bench", "url": webhook_url}]
    path = workdir / "hub.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


# -- streams of pre-encoded messages -----------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message of a stream, with how many readings it carries."""

    topic: str
    payload: bytes
    readings: int


def data_topic(gateway: str) -> str:
    """The data topic of a benchmark gateway."""
    return f"anju/v1/{SITE_ID}/{gateway}/data"


def ack_topic(gateway: str) -> str:
    """The ack topic of a benchmark gateway."""
    return f"anju/v1/{SITE_ID}/{gateway}/ack"


def random_values(rng: random.Random) -> dict[str, float]:
    """Plausible values that stay inside every rule's clear band (no alert fires)."""
    return {
        "temperature": round(rng.uniform(18.0, 30.0), 2),
        "humidity": round(rng.uniform(35.0, 70.0), 1),
        "battery": float(rng.randrange(40, 101)),
    }


def telemetry_stream(
    devices: Sequence[DeviceSpec],
    *,
    readings: int,
    batch: int,
    start_ms: int,
    first_seq: int = 1,
    session: str = "bench",
    seed: int = 1,
) -> tuple[list[Message], dict[str, int]]:
    """Data batches of ``batch`` readings, gateways taking turns, each with its own seqs.

    Reading ``k`` of the stream is stamped ``start_ms + k``: every timestamp is distinct, so
    every reading becomes its own sample in the time-series store.  Returns the messages and
    the last seq of each gateway.
    """
    rng = random.Random(seed)
    by_gateway: dict[str, list[str]] = {}
    for device in devices:
        by_gateway.setdefault(device.gateway, []).append(device.id)
    gateways = sorted(by_gateway)
    cursor = dict.fromkeys(gateways, 0)
    seq = dict.fromkeys(gateways, first_seq - 1)
    messages: list[Message] = []
    k = 0
    turn = 0
    while k < readings:
        gateway = gateways[turn % len(gateways)]
        turn += 1
        own = by_gateway[gateway]
        items = []
        for _ in range(min(batch, readings - k)):
            dev = own[cursor[gateway] % len(own)]
            cursor[gateway] += 1
            items.append(Reading(dev=dev, ts=start_ms + k, values=random_values(rng)))
            k += 1
        seq[gateway] += 1
        payload = encode(DataBatch(session=session, seq=seq[gateway], readings=items))
        messages.append(Message(data_topic(gateway), payload, len(items)))
    return messages, {gw: s for gw, s in seq.items() if s >= first_seq}


_HEADER = struct.Struct("!HII")


def write_stream(path: Path, messages: Iterable[Message]) -> None:
    """Store a stream as length-prefixed records (read back by :func:`read_stream`)."""
    with path.open("wb") as out:
        for message in messages:
            topic = message.topic.encode()
            out.write(_HEADER.pack(len(topic), len(message.payload), message.readings))
            out.write(topic)
            out.write(message.payload)


def read_stream(path: Path) -> list[Message]:
    """Load a stream written by :func:`write_stream`."""
    data = path.read_bytes()
    messages: list[Message] = []
    offset = 0
    while offset < len(data):
        topic_len, payload_len, readings = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        topic = data[offset : offset + topic_len].decode()
        offset += topic_len
        messages.append(Message(topic, data[offset : offset + payload_len], readings))
        offset += payload_len
    return messages


# -- process statistics ------------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def peak_rss_bytes(pid: int) -> int:
    """Peak resident set size of a live process (``VmHWM`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmHWM for process {pid}")


class CpuMeter:
    """CPU seconds that several live processes spend between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._start: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def start(self) -> None:
        """Take the first reading."""
        self._start = {name: cpu_seconds(pid) for name, pid in self._pids.items()}

    def stop(self) -> dict[str, float]:
        """Take the second reading; return CPU seconds per process name."""
        self.seconds = {
            name: round(cpu_seconds(pid) - self._start[name], 3) for name, pid in self._pids.items()
        }
        return self.seconds


class SystemCpu:
    """How busy the whole machine was between :meth:`start` and :meth:`stop` (``/proc/stat``).

    Set against the CPU time of the benchmark's own processes, it shows whether anything else
    competed for the cores during a measurement.
    """

    def __init__(self) -> None:
        self._start = (0.0, 0, 0.0)
        self.busy_cores = 0.0
        self.own_cpu_s = 0.0

    @staticmethod
    def _busy_ticks() -> int:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return sum(fields) - fields[3] - fields[4]  # all but idle and iowait

    def start(self) -> None:
        """Take the first reading."""
        self._start = (time.monotonic(), self._busy_ticks(), time.process_time())

    def stop(self) -> float:
        """Take the second reading; return the cores busy on average in between."""
        wall = time.monotonic() - self._start[0]
        busy = (self._busy_ticks() - self._start[1]) / _CLOCK_TICKS
        self.own_cpu_s = time.process_time() - self._start[2]
        self.busy_cores = round(busy / wall, 2) if wall > 0 else 0.0
        return self.busy_cores

    def others(self, seconds: float, known_cpu_s: float) -> float:
        """Cores used by processes other than those accounted for (and this one)."""
        if seconds <= 0:
            return 0.0
        return round(max(0.0, self.busy_cores - (known_cpu_s + self.own_cpu_s) / seconds), 2)


# -- helper processes --------------------------------------------------------------------------


class LineProcess:
    """A child process whose standard output is read line by line on a thread."""

    def __init__(self, command: Sequence[str], *, log_path: Path, stdin: bool = False) -> None:
        self.command = list(command)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=child_env(),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.cpu_s: float | None = None
        self._reader = threading.Thread(target=self._read, name="bench-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        if stdout is None:
            return
        for line in stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, predicate: Any, timeout: float) -> str:
        """Wait for a line for which ``predicate(line)`` holds; return it."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise BenchError(self._failure(f"timed out after {timeout:g} s")) from None
            if line is None:
                self.wait(timeout=5)
                raise BenchError(self._failure(f"exited with code {self.proc.returncode}"))
            if predicate(line):
                return line

    def send(self, line: str) -> None:
        """Write one line to the child's standard input."""
        stdin = self.proc.stdin
        if stdin is None:
            raise BenchError(f"{self.command[:4]} was started without standard input")
        stdin.write(line + "\n")
        stdin.flush()

    def drain(self, timeout: float) -> list[str]:
        """Every line the child prints until it exits (within ``timeout``); then reap it."""
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise BenchError(self._failure(f"did not finish in {timeout:g} s")) from None
            if line is None:
                self.wait(timeout=10)
                return lines
            lines.append(line)

    def wait(self, timeout: float) -> int:
        """Wait for the child to exit; return its exit code.

        The CPU time the child used is read from the rusage of reaped children, so it is known
        even for a child that exited by itself (``cpu_s``).
        """
        if self.cpu_s is None:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise BenchError(self._failure(f"did not exit in {timeout:g} s")) from None
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            self.cpu_s = round(used, 3)
        return self.proc.returncode

    def _failure(self, what: str) -> str:
        self._log.flush()
        return f"{self.command[:4]} {what}\n--- {self.log_path} ---\n{tail(self.log_path)}"

    def close(self) -> None:
        """Kill the child if it is still running; release its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._log.close()


def _json_line(line: str) -> bool:
    return line.startswith("{")


class Publisher:
    """``python -m bench.publisher`` in a child process: loads a stream, publishes it on "go".

    Without ``rate`` it publishes as fast as the broker accepts; with ``rate`` (readings per
    second) it paces the messages evenly until the stream ends or :meth:`stop`.
    """

    def __init__(
        self,
        stream: Path,
        mosquitto: Mosquitto,
        *,
        log_path: Path,
        rate: float | None = None,
        client_id: str = "bench-publisher",
    ) -> None:
        command = [
            sys.executable,
            "-m",
            "bench.publisher",
            "--stream",
            str(stream),
            "--host",
            mosquitto.host,
            "--port",
            str(mosquitto.port),
            "--client-id",
            client_id,
        ]
        if rate is not None:
            command += ["--rate", str(rate)]
        self._child = LineProcess(command, log_path=log_path, stdin=True)
        self._child.expect(lambda line: line == "ready", timeout=60)

    @property
    def pid(self) -> int:
        """The publisher's process id."""
        return self._child.proc.pid

    def go(self) -> None:
        """Start publishing."""
        self._child.send("go")

    def stop(self) -> None:
        """Stop a paced stream early."""
        with contextlib.suppress(OSError):
            self._child.send("stop")

    def result(self, timeout: float) -> dict[str, Any]:
        """The publisher's report once every message is acknowledged by the broker."""
        line = self._child.expect(_json_line, timeout=timeout)
        self._child.wait(timeout=10)
        result: dict[str, Any] = orjson.loads(line)
        result["cpu_s"] = self._child.cpu_s
        return result

    def close(self) -> None:
        """Kill the child if it still runs."""
        self._child.close()


class MosquittoPubs:
    """One ``mosquitto_pub -l -q 1`` per topic of a stream, each fed its messages from a file.

    For streams of many small messages, where a Python publisher would be what is measured:
    Mosquitto's own C client publishes a line of its input as one message, and several of them
    (one per gateway, as gateways are) run in parallel. Same interface as :class:`Publisher`.
    """

    def __init__(self, stream: Path, mosquitto: Mosquitto, *, log_path: Path) -> None:
        self._binary = find_binary("mosquitto_pub", "ANJU_MOSQUITTO_PUB", "/usr/bin/mosquitto_pub")
        self._mosquitto = mosquitto
        self._log_path = log_path
        by_topic: dict[str, list[bytes]] = {}
        for message in read_stream(stream):
            if b"\n" in message.payload:
                raise BenchError("mosquitto_pub -l needs payloads without newlines")
            by_topic.setdefault(message.topic, []).append(message.payload)
        self._inputs: list[tuple[str, Path]] = []
        for index, (topic, payloads) in enumerate(sorted(by_topic.items())):
            path = log_path.with_name(f"{log_path.stem}-{index}.lines")
            path.write_bytes(b"\n".join(payloads) + b"\n")
            self._inputs.append((topic, path))
        self._procs: list[subprocess.Popen[bytes]] = []
        self._t_first = 0.0

    @property
    def pid(self) -> int | None:
        """The first publisher's process id (None before :meth:`go`)."""
        return self._procs[0].pid if self._procs else None

    def go(self) -> None:
        """Start every publisher."""
        log = self._log_path.open("ab")
        self._t_first = time.time()
        for index, (topic, path) in enumerate(self._inputs):
            command = [self._binary, "-h", self._mosquitto.host, "-p", str(self._mosquitto.port)]
            command += ["-q", "1", "-t", topic, "-l", "-i", f"bench-pub-{index}"]
            with path.open("rb") as source:
                self._procs.append(subprocess.Popen(command, stdin=source, stdout=log, stderr=log))
        log.close()

    def result(self, timeout: float) -> dict[str, Any]:
        """Timings once every publisher has sent its messages and exited."""
        deadline = time.monotonic() + timeout
        cpu = 0.0
        for proc in self._procs:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    cpu += usage.ru_utime + usage.ru_stime
                    break
                if time.monotonic() > deadline:
                    raise BenchError("mosquitto_pub did not finish in time")
                time.sleep(0.005)
            if proc.returncode:
                raise BenchError(f"mosquitto_pub exited with {proc.returncode}")
        return {"t_first": self._t_first, "t_all_acked": time.time(), "cpu_s": round(cpu, 3)}

    def stop(self) -> None:
        """Not paced: nothing to stop early."""

    def close(self) -> None:
        """Kill whatever still runs."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


class HubProcess:
    """``anju hub run --config FILE`` as a subprocess, its output in ``hub.log``."""

    def __init__(self, config: Path, workdir: Path, *, log_level: str = "WARNING") -> None:
        self.log_path = workdir / "hub.log"
        anju = Path(sys.executable).with_name("anju")
        launcher = [str(anju)] if anju.exists() else [sys.executable, "-m", "cli.entry"]
        self.command = [*launcher, "hub", "run", "--config", str(config)]
        self.command += ["--log-level", log_level]
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )

    @property
    def pid(self) -> int:
        """The hub's process id."""
        return self.proc.pid

    def check_alive(self) -> None:
        """Raise with the hub's log if it has exited."""
        if self.proc.poll() is not None:
            raise BenchError(f"the hub exited with code {self.proc.returncode}\n{self.log_tail()}")

    def log_tail(self) -> str:
        """The end of the hub's output."""
        self._log.flush()
        return f"--- {self.log_path} ---\n{tail(self.log_path)}"

    def stats(self) -> dict[str, float]:
        """CPU seconds so far and peak RSS of the live hub."""
        return {
            "cpu_s": round(cpu_seconds(self.pid), 3),
            "peak_rss_mib": round(peak_rss_bytes(self.pid) / 2**20, 1),
        }

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL if the hub does not exit in time; return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


# -- the benchmark's own MQTT client -----------------------------------------------------------


class Observer:
    """Watches the hub's presence and the gateways' acks; publishes probes and events."""

    def __init__(self, mosquitto: Mosquitto, *, client_id: str = "bench-observer") -> None:
        self.acked: dict[str, int] = {}
        self.ack_times: dict[str, float] = {}
        self.acks = 0
        self.ack_log: list[tuple[float, str, int]] = []
        self.hub_online = threading.Event()
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
        )
        self._client.max_inflight_messages_set(1000)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(mosquitto.host, mosquitto.port, keepalive=60)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise BenchError("the observer could not subscribe to the broker")

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        client.subscribe([(f"anju/v1/{SITE_ID}/+/ack", 1), (HUB_STATE_TOPIC, 1)])

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.time()
        if msg.topic == HUB_STATE_TOPIC:
            if decode_hub_state(bytes(msg.payload)).online:
                self.hub_online.set()
            return
        gateway = msg.topic.split("/")[3]
        seq = int(orjson.loads(msg.payload)["seq"])
        with self._changed:
            self.acks += 1
            self.ack_log.append((now, gateway, seq))
            if seq > self.acked.get(gateway, -1):
                self.acked[gateway] = seq
                self.ack_times[gateway] = now
            self._changed.notify_all()

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1 (paho's network thread sends it)."""
        self._client.publish(topic, payload, qos=1)

    def wait_hub_online(self, hub: HubProcess, timeout: float = 30.0) -> None:
        """Wait for the hub's retained presence: it is published after the hub subscribed."""
        deadline = time.monotonic() + timeout
        while not self.hub_online.wait(0.1):
            hub.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"the hub did not come online in {timeout:g} s\n{hub.log_tail()}")

    def wait_acked(
        self, targets: Mapping[str, int], timeout: float, hub: HubProcess | None = None
    ) -> float:
        """Wait until every gateway's ack reaches its target seq; return when the last came."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while any(self.acked.get(gw, -1) < seq for gw, seq in targets.items()):
                if hub is not None:
                    hub.check_alive()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = {
                        gw: (self.acked.get(gw, -1), seq)
                        for gw, seq in targets.items()
                        if self.acked.get(gw, -1) < seq
                    }
                    msg = f"acks (got, wanted) still short after {timeout:g} s: {missing}"
                    if hub is not None:
                        msg += f"\n{hub.log_tail()}"
                    raise BenchError(msg)
                self._changed.wait(min(remaining, 0.5))
            return max(self.ack_times[gw] for gw in targets)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


def probe(
    observer: Observer,
    hub: HubProcess,
    devices: Sequence[DeviceSpec],
    *,
    start_ms: int,
    values: Mapping[str, float] | None = None,
) -> int:
    """Send one reading per gateway with seq 0 and wait for its ack; return the readings sent.

    Proves the whole path (subscription, decode, write, ack) before anything is timed.
    """
    first: dict[str, DeviceSpec] = {}
    for device in devices:
        first.setdefault(device.gateway, device)
    for index, (gateway, device) in enumerate(sorted(first.items())):
        reading = Reading(
            dev=device.id,
            ts=start_ms + index,
            values=dict(values) if values is not None else dict(PROBE_VALUES),
        )
        payload = encode(DataBatch(session="bench", seq=0, readings=[reading]))
        observer.publish(data_topic(gateway), payload)
    observer.wait_acked(dict.fromkeys(first, 0), timeout=30, hub=hub)
    return len(first)


# -- VictoriaMetrics -----------------------------------------------------------------------------


def count_samples(victoria: VictoriaMetrics, match: str) -> dict[str, int]:
    """Series, samples and duplicate timestamps of the series matching ``match``."""
    victoria.flush()
    params = {"match[]": match, "start": "1", "end": str(int(time.time()) + 86_400)}
    series = samples = duplicates = 0
    with httpx.stream(
        "GET", f"{victoria.url}/api/v1/export", params=params, timeout=120.0
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.strip():
                continue
            timestamps = orjson.loads(line)["timestamps"]
            series += 1
            samples += len(timestamps)
            duplicates += len(timestamps) - len(set(timestamps))
    return {"series": series, "samples": samples, "duplicate_timestamps": duplicates}


def sample_total(victoria: VictoriaMetrics, match: str, window: str = "7d") -> int:
    """How many samples of the series matching ``match`` VictoriaMetrics holds (one query)."""
    result = victoria.query(f"sum(count_over_time({match}[{window}]))")
    return int(float(result[0]["value"][1])) if result else 0


def wait_stored(
    victoria: VictoriaMetrics, match: str, expected: int, timeout: float, interval: float = 0.05
) -> float:
    """Poll until VictoriaMetrics holds ``expected`` samples; return when that look began.

    Every sample accepted before a look began is visible to it (it forces a flush first), so
    the time returned is an upper bound of when the last sample was stored.
    """
    deadline = time.monotonic() + timeout
    while True:
        began = time.time()
        found = sample_total(victoria, match)
        if found == expected:
            return began
        if found > expected or time.monotonic() > deadline:
            raise BenchError(f"VictoriaMetrics holds {found} samples; expected {expected}")
        time.sleep(interval)


def victoria_write_stats(victoria: VictoriaMetrics) -> dict[str, float]:
    """Write requests and rows VictoriaMetrics received over the InfluxDB protocol so far."""
    text = httpx.get(f"{victoria.url}/metrics", timeout=10.0).text
    requests = rows = 0.0
    for line in text.splitlines():
        if line.startswith("vm_http_requests_total{") and "write" in line and "influx" in line:
            requests += float(line.rsplit(" ", 1)[1])
        elif line.startswith('vm_rows_inserted_total{type="influx"}'):
            rows = float(line.rsplit(" ", 1)[1])
    return {"write_requests": requests, "rows": rows}


# -- the machine --------------------------------------------------------------------------------


def _first_line(command: Sequence[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _debian_version(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    line = _first_line(["dpkg-query", "-W", "-f=${Version}", package])
    return None if line == "unknown" or "no packages" in line else line


def machine(
    mosquitto: Mosquitto | None = None, victoria: VictoriaMetrics | None = None
) -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "paho_mqtt": package_version("paho-mqtt"),
        "pydantic": package_version("pydantic"),
    }
    if mosquitto is not None:
        info["mosquitto"] = _first_line([mosquitto.binary, "-h"]).removeprefix("mosquitto version ")
    if victoria is not None:
        info["victoria_metrics"] = _debian_version("victoria-metrics") or "unknown"
    return info
