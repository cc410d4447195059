"""The fault-injection rig: real processes, a tap on the broker, and an accounting of every seq.

The edge agent and the hub run as ``anju edge run`` / ``anju hub run`` subprocesses with YAML
configs written to the test's directory, against a real Mosquitto and a real VictoriaMetrics.

What the gateway committed is known from two witnesses that do not depend on the code under
test being right:

- the :class:`Tap`, a plain MQTT subscriber with a persistent session of its own that records
  every data batch and event the gateway publishes, by seq.  It reconnects every few
  milliseconds after a broker restart, so it is subscribed again before the gateway (whose
  back-off starts at half a second) and the hub (a second) are back;
- the gateway's queue file at the end: empty once everything is acknowledged,
  ``sqlite_sequence`` holding the last seq handed out and ``counter`` the drops by class.

:func:`account` then checks, seq by seq, that each one is stored exactly once: its readings in
VictoriaMetrics (one sample per value, exact timestamp and value), its event in the hub's
``event`` table, and nothing else in either.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.server
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx
import orjson
import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from tests.servers import Mosquitto, VictoriaMetrics, tail
from wire import seq_ranges

SITE = "faults"
GATEWAY = "gw-f"
HUB_CLIENT_ID = "anju-hub-faults"
SECRET = "fault-suite-site-secret"  # noqa: S105 - a test key, not a credential
ANJU = Path(sys.executable).with_name("anju")
# Debian's package `faketime` (libfaketime), in the multiarch library directory.
LIBFAKETIME_GLOB = "*/faketime/libfaketime.so.1"

# -- the site ---------------------------------------------------------------------------------

LIFE_SAFETY_KINDS = frozenset(
    {"alarm.smoke", "alarm.water_leak", "emergency.button", "door.forced"}
)


def device_specs(*, temp_humidity: int = 24, co2: int = 8) -> list[dict[str, Any]]:
    """The simulated devices: a steady telemetry stream, and devices that raise events."""
    devices: list[dict[str, Any]] = [
        {"id": f"th-{i:02d}", "kind": "temp_humidity"} for i in range(temp_humidity)
    ]
    devices += [{"id": f"co2-{i:02d}", "kind": "co2"} for i in range(co2)]
    devices += [
        {"id": "smoke-1", "kind": "smoke"},
        {"id": "leak-1", "kind": "water_leak"},
        {"id": "button-1", "kind": "emergency_button"},
        # Random door reads and camera motion: ordinary events all along the stream.
        {"id": "door-1", "kind": "door_reader", "rate_per_hour": 1800},
        {"id": "cam-1", "kind": "camera", "rate_per_hour": 3600},
    ]
    return devices


def incidents(*offsets_s: float) -> list[dict[str, Any]]:
    """Life-safety incidents, one of each kind in turn, at the given offsets from the start.

    Smoke and water leak raise an event when they start and another when they end; the
    emergency button and a forced door raise one each (the door adds ordinary contact events).
    """
    kinds: list[dict[str, Any]] = [
        {"do": "smoke", "device": "smoke-1", "duration": "2s"},
        {"do": "emergency_button", "device": "button-1"},
        {"do": "water_leak", "device": "leak-1", "duration": "2s"},
        {"do": "door_forced", "device": "door-1", "open_s": "1s"},
    ]
    return [{**kinds[i % len(kinds)], "at": f"{offset:g}s"} for i, offset in enumerate(offsets_s)]


def site_document(devices: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The hub's site file for these devices, each in a unit of its own."""
    return {
        "site": {"id": SITE, "name": "Fault Garden", "timezone": "Asia/Shanghai"},
        "people": [{"id": "li", "name": "Li Wei", "role": "grid_worker"}],
        "grids": [
            {"id": "g1", "name": "Grid 1", "worker": "li", "buildings": [{"id": "1"}]},
        ],
        "gateways": [{"id": GATEWAY}],
        "devices": [
            {
                "id": d["id"],
                "gateway": GATEWAY,
                "kind": d["kind"],
                "building": "1",
                "floor": 1 + i // 10,
                "unit": f"{1 + i // 10}{i % 10:02d}",
            }
            for i, d in enumerate(devices)
        ],
    }


def gateway_document(
    data_dir: Path,
    broker: Mosquitto,
    devices: Sequence[Mapping[str, Any]],
    *,
    scenario: Sequence[Mapping[str, Any]] = (),
    queue: Mapping[str, Any] | None = None,
    replay_rate: float = 20.0,
    seed: int = 7,
) -> dict[str, Any]:
    """A gateway config with quick batching, resends and reconnects, so faults heal fast."""
    drivers: list[dict[str, Any]] = []
    if devices:
        drivers.append(
            {
                "type": "simulated",
                "id": "sim",
                "seed": seed,
                "interval_s": 1,
                "timezone": "Asia/Shanghai",
                "devices": list(devices),
                "scenario": {"incidents": list(scenario)},
            }
        )
    return {
        "site": SITE,
        "gateway": GATEWAY,
        "data_dir": str(data_dir),
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "keepalive_s": 5,
            "reconnect_max_s": 2,
        },
        "privacy": {"site_secret": "${ANJU_SITE_SECRET}"},
        "batch": {"max_delay_s": 0.2},
        "queue": dict(queue or {}),
        "replay": {"max_messages_per_s": replay_rate},
        "resend_after_s": 3,
        "ack_timeout_s": 20,
        "health_interval_s": 1,
        "drivers": drivers,
    }


def hub_document(
    site_file: Path,
    data_dir: Path,
    broker: Mosquitto,
    victoria: VictoriaMetrics,
    *,
    ingest: Mapping[str, Any] | None = None,
    store_url: str | None = None,
) -> dict[str, Any]:
    """A hub config writing to VictoriaMetrics through the InfluxDB v2 write API."""
    influx: dict[str, Any] = {"url": store_url or victoria.url, "timeout_s": 5}
    return {
        "site_file": str(site_file),
        "data_dir": str(data_dir),
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": HUB_CLIENT_ID},
        "influx": influx,
        "ingest": dict(ingest or {}),
        "notifiers": {"log": False},
    }


def write_yaml(path: Path, document: Mapping[str, Any]) -> Path:
    """Write ``document`` as YAML to ``path`` and return the path."""
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False), encoding="utf-8")
    return path


# -- processes ----------------------------------------------------------------------------------


class DaemonError(AssertionError):
    """A daemon exited when it should not have, or did not stop cleanly."""


class Daemon:
    """One ``anju`` daemon as a subprocess, its output appended to a log file."""

    def __init__(
        self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = dict(env) if env is not None else None
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while one was started."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Self:
        """Start (again); the previous process must have ended."""
        if self.running:
            raise DaemonError(f"{self.name} is already running")
        self._close_log()
        self._out = self.log.open("ab")
        self._out.write(f"=== {time.strftime('%H:%M:%S')} start {self.starts}\n".encode())
        self._out.flush()
        self._proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut would: no graceful shutdown."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)
        self._close_log()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful) and wait; return the exit code."""
        proc = self._proc
        if proc is None:
            raise DaemonError(f"{self.name} was never started")
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                raise DaemonError(
                    f"{self.name} did not stop within {timeout:g} s of SIGTERM\n{self.log_tail()}"
                ) from None
        self._close_log()
        return int(proc.returncode)

    def check_alive(self) -> None:
        """Raise with the log's tail if the process has exited."""
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            raise DaemonError(f"{self.name} exited with code {code}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the daemon's log."""
        return f"--- {self.log} ---\n{tail(self.log, lines)}"

    def log_text(self) -> str:
        """Everything the daemon logged (all starts)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _close_log(self) -> None:
        if self._out is not None and (self._proc is None or self._proc.poll() is not None):
            self._out.close()
            self._out = None


def agent_env(faketime_file: Path | None = None) -> dict[str, str]:
    """The edge agent's environment: the site secret, and optionally a faked wall clock.

    With ``faketime_file``, libfaketime offsets the agent's wall clock by what the file says
    (``+240``, ``-3600``: seconds), re-read at most once a second, so a test can move the clock
    while the agent runs.  The monotonic clock stays real: asyncio timers, MQTT keep-alives and
    the queue's commit timer behave, only timestamps jump, as with a real clock step.
    """
    env = {**os.environ, "ANJU_SITE_SECRET": SECRET}
    if faketime_file is not None:
        found = sorted(Path("/usr/lib").glob(LIBFAKETIME_GLOB))
        if not found:
            raise AssertionError(
                f"libfaketime is not installed (/usr/lib/{LIBFAKETIME_GLOB}); run `make servers`"
            )
        env.update(
            LD_PRELOAD=str(found[0]),
            FAKETIME_TIMESTAMP_FILE=str(faketime_file),
            FAKETIME_CACHE_DURATION="1",
            FAKETIME_DONT_FAKE_MONOTONIC="1",
        )
    return env


# -- the tap ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Sighting:
    """One data batch or event as the broker delivered it."""

    seq: int
    channel: str  # "data" or "event"
    body: dict[str, Any]  # the payload without its replay flag
    replay: bool
    at: float  # time.monotonic()


class Tap:
    """A plain subscriber with its own persistent session, recording what the gateway publishes.

    It never waits for paho's reconnect back-off: after a lost connection it retries every
    10 ms, and it subscribes on every connect (a broker without persistence forgets sessions).
    """

    def __init__(self, broker: Mosquitto, client_id: str = "fault-tap") -> None:
        self._broker = broker
        base = f"anju/v1/{SITE}/{GATEWAY}"
        self._topics = [
            (f"{base}/data", 1),
            (f"{base}/event", 1),
            (f"{base}/ack", 1),
            (f"{base}/state", 1),
            (f"{base}/health", 0),
            ("anju/v1/hub/state", 1),
        ]
        self._lock = threading.Lock()
        self.sightings: dict[int, list[Sighting]] = collections.defaultdict(list)
        self.acks: list[tuple[float, dict[str, Any]]] = []
        self.health: list[tuple[float, dict[str, Any]]] = []
        self.gateway_states: list[tuple[float, dict[str, Any]]] = []
        self.hub_states: list[tuple[float, dict[str, Any]]] = []
        self.connects = 0
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
        )
        self._client.max_inflight_messages_set(1000)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._thread = threading.Thread(target=self._run, name="fault-tap", daemon=True)
        self._thread.start()
        if not self._subscribed.wait(10):
            self.close()
            raise AssertionError("the tap could not subscribe")

    def _run(self) -> None:
        client = self._client
        connected_once = False
        while not self._stop.is_set():
            try:
                if connected_once:
                    client.reconnect()
                else:
                    client.connect(self._broker.host, self._broker.port, keepalive=5)
                    connected_once = True
            except OSError:
                time.sleep(0.01)
                continue
            while not self._stop.is_set():
                if client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        with contextlib.suppress(Exception):
            client.disconnect()

    def _on_connect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if not reason.is_failure:
            self.connects += 1
            client.subscribe(self._topics)

    def _on_subscribe(self, *_args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        payload = orjson.loads(msg.payload)
        channel = msg.topic.rsplit("/", 1)[1]
        with self._lock:
            if msg.topic.startswith("anju/v1/hub/"):
                self.hub_states.append((now, payload))
            elif channel in {"data", "event"}:
                replay = bool(payload.pop("replay", False))
                seq = int(payload["seq"])
                self.sightings[seq].append(Sighting(seq, channel, payload, replay, now))
            elif channel == "ack":
                self.acks.append((now, payload))
            elif channel == "health":
                self.health.append((now, payload))
            elif channel == "state":
                self.gateway_states.append((now, payload))

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._stop.set()
        self._thread.join(5)

    # -- reading what was recorded (thread-safe snapshots) --

    def gateway_online_count(self) -> int:
        """How many times the gateway has announced itself online."""
        with self._lock:
            return sum(1 for _, state in self.gateway_states if state.get("online"))

    def seqs(self) -> set[int]:
        """Every seq seen so far."""
        with self._lock:
            return set(self.sightings)

    def last_seq(self) -> int:
        """The highest seq seen so far (0 if none)."""
        with self._lock:
            return max(self.sightings, default=0)

    def acked(self) -> set[int]:
        """Every seq the hub has acknowledged so far."""
        with self._lock:
            acks = [payload for _, payload in self.acks]
        done: set[int] = set()
        for ack in acks:
            for first, last in ack.get("ranges") or [[0, ack["seq"]]]:
                done.update(range(first, last + 1))
        return done

    def ack_count(self) -> int:
        """How many acknowledgements were seen."""
        with self._lock:
            return len(self.acks)

    def hub_online_count(self) -> int:
        """How many times the hub announced itself online (retained copies included)."""
        with self._lock:
            return sum(1 for _, p in self.hub_states if p.get("online"))

    def snapshot(self) -> dict[int, list[Sighting]]:
        """A copy of every sighting, by seq."""
        with self._lock:
            return {seq: list(found) for seq, found in self.sightings.items()}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# -- the files of the gateway and the hub ---------------------------------------------------------


@contextlib.contextmanager
def _sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    # A reader beside the daemon's writer (WAL): it never writes, and closes at once.
    conn = sqlite3.connect(path, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


@dataclasses.dataclass(frozen=True, slots=True)
class QueueState:
    """What the gateway's queue file holds (committed state only)."""

    seqs: list[int]
    last_seq: int
    dropped: dict[str, int]

    @property
    def depth(self) -> int:
        """Messages held."""
        return len(self.seqs)


def queue_path(data_dir: Path) -> Path:
    """Where the edge agent keeps its queue."""
    return data_dir / f"{SITE}.{GATEWAY}.queue.sqlite3"


def read_queue(data_dir: Path) -> QueueState:
    """The committed state of the gateway's queue."""
    path = queue_path(data_dir)
    if not path.exists():
        return QueueState([], 0, {})
    with _sqlite(path) as conn:
        seqs = [int(r[0]) for r in conn.execute("SELECT seq FROM message ORDER BY seq")]
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'message'").fetchone()
        dropped = {str(n): int(v) for n, v in conn.execute("SELECT name, value FROM counter")}
    return QueueState(seqs, int(row[0]) if row else 0, dropped)


@dataclasses.dataclass(frozen=True, slots=True)
class SpoolState:
    """The hub's spool: batches waiting for the time-series store."""

    batches: int
    points: int
    first_id: int | None
    last_id: int | None

    @property
    def contiguous(self) -> bool:
        """Whether the waiting batches are one run of ids (drained oldest first)."""
        if self.first_id is None or self.last_id is None:
            return self.batches == 0
        return self.last_id - self.first_id + 1 == self.batches


def hub_db_path(data_dir: Path) -> Path:
    """Where the hub keeps its state."""
    return data_dir / "hub.sqlite3"


def read_spool(data_dir: Path) -> SpoolState:
    """The hub's spool as committed."""
    path = hub_db_path(data_dir)
    if not path.exists():
        return SpoolState(0, 0, None, None)
    with _sqlite(path) as conn:
        count, points, first, last = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(points), 0), MIN(id), MAX(id) FROM spool_message"
        ).fetchone()
    return SpoolState(int(count), int(points), first, last)


class StoreProxy:
    """An HTTP relay between the hub and VictoriaMetrics that can kill the hub mid-write.

    Armed with :meth:`kill_after_write`, it relays the hub's next write request, and once the
    store has accepted it, SIGKILLs the hub before answering: the hub dies between a write and
    the removal of its messages from the spool, every time, not when a race happens to fall.
    """

    def __init__(self, victoria: VictoriaMetrics) -> None:
        self._target = victoria.url
        self._armed: Daemon | None = None
        self.killed = threading.Event()
        self._lock = threading.Lock()
        self._stored: collections.Counter[bytes] = collections.Counter()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    reply = httpx.post(
                        proxy._target + self.path,
                        content=body,
                        headers={"Content-Type": self.headers.get("Content-Type", "text/plain")},
                        timeout=10,
                    )
                    status = reply.status_code
                except httpx.HTTPError:
                    status = 503
                if status < 300:
                    with proxy._lock:
                        proxy._stored.update(body.splitlines())
                armed = proxy._armed
                if armed is not None and status < 300:
                    proxy._armed = None
                    armed.kill()
                    proxy.killed.set()
                    return
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def written_twice(self) -> int:
        """Lines the store accepted more than once."""
        with self._lock:
            return sum(1 for count in self._stored.values() if count > 1)

    def kill_after_write(self, hub: Daemon) -> None:
        """SIGKILL ``hub`` once the store has taken its next write, before it hears so."""
        self.killed.clear()
        self._armed = hub

    def close(self) -> None:
        """Stop relaying."""
        self._server.shutdown()
        self._server.server_close()


@dataclasses.dataclass(frozen=True, slots=True)
class HubState:
    """What the hub's database says about the gateway at the end."""

    events: list[tuple[int, int, str, str, dict[str, Any]]]  # seq, ts, device, kind, data
    seen: list[int]
    quarantine: list[tuple[str, str, bytes]]  # field, reason, payload
    spool: SpoolState


def read_hub(data_dir: Path) -> HubState:
    """Events, dedup records and quarantine of the gateway in the hub's database."""
    with _sqlite(hub_db_path(data_dir)) as conn:
        events = [
            (int(seq), int(ts), str(dev), str(kind), orjson.loads(data))
            for seq, ts, dev, kind, data in conn.execute(
                "SELECT seq, ts, device, kind, data FROM event WHERE gateway = ? ORDER BY seq",
                (GATEWAY,),
            )
        ]
        seen = [
            int(r[0])
            for r in conn.execute("SELECT seq FROM seen WHERE gateway = ? ORDER BY seq", (GATEWAY,))
        ]
        quarantine = [
            (str(f), str(r), bytes(p))
            for f, r, p in conn.execute("SELECT field, reason, payload FROM quarantine ORDER BY id")
        ]
    return HubState(events, seen, quarantine, read_spool(data_dir))


# -- waiting ----------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str | Callable[[], str],
    *,
    watch: Sequence[Daemon] = (),
    interval: float = 0.05,
) -> float:
    """Poll ``condition`` until it holds; return the seconds it took.

    Fails at once, with its log, if a watched daemon exits meanwhile.
    """
    start = time.monotonic()
    while not condition():
        for daemon in watch:
            daemon.check_alive()
        if time.monotonic() - start > timeout:
            logs = "\n".join(d.log_tail() for d in watch)
            said = what if isinstance(what, str) else what()
            raise AssertionError(f"timed out after {timeout:g} s waiting for {said}\n{logs}")
        time.sleep(interval)
    return time.monotonic() - start


def run_for(seconds: float, *, watch: Sequence[Daemon] = ()) -> None:
    """Let the system run, failing at once if a watched daemon exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for daemon in watch:
            daemon.check_alive()
        time.sleep(0.05)


# -- accounting -------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Ledger:
    """The measured figures of one run, for the test's report."""

    last_seq: int = 0
    stored_seqs: int = 0
    data_messages: int = 0
    event_messages: int = 0
    life_safety_events: int = 0
    readings: int = 0
    values: int = 0
    vm_samples: int = 0
    vm_duplicates: int = 0
    event_points: int = 0
    sightings: int = 0
    resent: int = 0
    replayed: int = 0
    missing: list[int] = dataclasses.field(default_factory=list)
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    hub_duplicates: int = 0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def line(self, name: str) -> str:
        """One line for the test output."""
        fields = dataclasses.asdict(self)
        fields["missing"] = len(self.missing)
        extra = fields.pop("extra")
        return f"[faults] {name}: " + orjson.dumps({**fields, **extra}).decode()


def _same_message(found: list[Sighting]) -> bool:
    first = found[0]
    return all(s.channel == first.channel and s.body == first.body for s in found[1:])


def account(
    tap: Tap,
    queue: QueueState,
    hub: HubState,
    victoria: VictoriaMetrics,
    *,
    victims: bool = False,
    vm_dedup: bool = False,
) -> Ledger:
    """Check that every seq the gateway committed is stored exactly once; return the figures.

    Args:
        tap: what the broker delivered (the gateway's output).
        queue: the gateway's queue file at the end (must be empty: everything acknowledged).
        hub: the hub's database at the end.
        victoria: the time-series store.
        victims: the queue's budget may have dropped messages (counted in ``queue.dropped``);
            otherwise none may be missing and no drop may be counted.
        vm_dedup: VictoriaMetrics runs with ``-dedup.minScrapeInterval``, so duplicate writes
            are invisible; otherwise none may exist.
    """
    ledger = Ledger(last_seq=queue.last_seq, dropped=dict(queue.dropped))
    assert queue.depth == 0, f"the gateway still holds seqs {queue.seqs[:20]} (not acknowledged)"
    sightings = tap.snapshot()
    ledger.sightings = sum(len(found) for found in sightings.values())
    ledger.resent = sum(len(found) - 1 for found in sightings.values())
    ledger.replayed = sum(1 for found in sightings.values() for s in found if s.replay)

    # 1. A seq that left the gateway always carries the same message (never reused).
    reused = sorted(seq for seq, found in sightings.items() if not _same_message(found))
    assert not reused, f"seqs published with different contents: {reused[:20]}"
    assert max(sightings, default=0) == queue.last_seq, (
        f"last seq published {max(sightings, default=0)} != last seq in the queue file "
        f"{queue.last_seq}"
    )
    assert min(sightings, default=1) >= 1

    # 2. What the hub accepted: each seq once; every committed seq unless a counted victim.
    stored = hub.seen
    assert len(stored) == len(set(stored))
    everything = set(range(1, queue.last_seq + 1))
    assert set(stored) <= everything, (
        f"hub accepted unknown seqs {sorted(set(stored) - everything)}"
    )
    missing = sorted(everything - set(stored))
    ledger.missing = missing
    ledger.stored_seqs = len(stored)
    unseen = sorted(set(stored) - set(sightings))
    assert not unseen, f"the tap missed seqs the hub stored: {unseen[:20]}"
    if victims:
        assert len(missing) == sum(queue.dropped.values()), (
            f"{len(missing)} seqs missing but {queue.dropped} counted as dropped"
        )
        # Victims never include a life-safety event, and a victim the tap saw was telemetry.
        assert queue.dropped.get("life_safety", 0) == 0, queue.dropped
        seen_victims = [sightings[s][0].channel for s in missing if s in sightings]
        assert all(channel == "data" for channel in seen_victims), seen_victims
    else:
        assert not missing, f"seqs never stored: {missing[:20]} ({len(missing)})"
        assert not queue.dropped, f"drops counted: {queue.dropped}"

    # 3. Events: in the hub's event table exactly once, as published.
    event_seqs = sorted(s for s in stored if sightings[s][0].channel == "event")
    data_seqs = sorted(s for s in stored if sightings[s][0].channel == "data")
    ledger.event_messages, ledger.data_messages = len(event_seqs), len(data_seqs)
    table = [row[0] for row in hub.events]
    assert len(table) == len(set(table)), "an event seq is in the event table twice"
    assert table == event_seqs, (
        f"event table seqs differ: extra {sorted(set(table) - set(event_seqs))[:20]}, "
        f"missing {sorted(set(event_seqs) - set(table))[:20]}"
    )
    for seq, ts, device, kind, data in hub.events:
        body = sightings[seq][0].body
        assert (ts, device, kind, data) == (body["ts"], body["dev"], body["kind"], body["data"])
    ledger.life_safety_events = sum(1 for e in hub.events if e[3] in LIFE_SAFETY_KINDS)

    # 4. Readings and event points: each in VictoriaMetrics exactly once, nothing else there.
    expected: dict[tuple[str, str, int], float] = {}
    for seq in data_seqs:
        for reading in sightings[seq][0].body["readings"]:
            ledger.readings += 1
            for name, value in reading["values"].items():
                key = (f"reading_{name}", reading["dev"], reading["ts"])
                assert key not in expected, f"two readings for {key} (seq {seq})"
                expected[key] = float(value)
    ledger.values = len(expected)
    expected_events: collections.Counter[tuple[str, str, int]] = collections.Counter(
        (sightings[s][0].body["dev"], sightings[s][0].body["kind"], sightings[s][0].body["ts"])
        for s in event_seqs
    )
    found: collections.Counter[tuple[str, str, int]] = collections.Counter()
    found_events: collections.Counter[tuple[str, str, int]] = collections.Counter()
    wrong: list[str] = []
    for series in victoria.export('{__name__!=""}'):
        labels = series["metric"]
        name = labels["__name__"]
        if name.startswith("gateway_"):
            continue  # the gateway's self-metrics (health, QoS 0): not seq-accounted
        assert labels.get("gateway") == GATEWAY, labels
        for ts, value in zip(series["timestamps"], series["values"], strict=True):
            if name == "event_count":
                found_events[(labels["device"], labels["kind"], ts)] += 1
                continue
            key = (name, labels["device"], ts)
            found[key] += 1
            if key in expected and float(value) != expected[key]:
                wrong.append(f"{key}: stored {value}, published {expected[key]}")
    ledger.vm_samples = sum(found.values())
    ledger.event_points = sum(found_events.values())
    ledger.vm_duplicates = sum(n - 1 for n in found.values() if n > 1) + sum(
        found_events[k] - n for k, n in expected_events.items() if found_events[k] > n
    )
    absent = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    assert not wrong, f"{len(wrong)} values differ: {wrong[:5]}"
    assert not absent, f"{len(absent)} published values are not in VictoriaMetrics: {absent[:5]}"
    assert not unexpected, f"{len(unexpected)} samples were never published: {unexpected[:5]}"
    events_absent = [k for k, n in expected_events.items() if found_events[k] < n]
    events_unexpected = [k for k in found_events if k not in expected_events]
    assert not events_absent, f"event points missing: {events_absent[:5]}"
    assert not events_unexpected, f"event points never published: {events_unexpected[:5]}"
    if not vm_dedup:
        assert ledger.vm_duplicates == 0, f"{ledger.vm_duplicates} duplicate samples"

    # 5. The hub took everything: nothing left in the spool, nothing quarantined but resends.
    assert hub.spool.batches == 0, f"the hub's spool still holds {hub.spool}"
    others = [(f, r) for f, r, _ in hub.quarantine if f != "seq"]
    assert not others, f"quarantined: {others[:5]}"
    ledger.hub_duplicates = sum(1 for f, _, _ in hub.quarantine if f == "seq")
    return ledger


# -- the rig ----------------------------------------------------------------------------------


class Rig:
    """A hub and a gateway as real processes, with a tap, on the given broker and store."""

    def __init__(
        self,
        tmp_path: Path,
        broker: Mosquitto,
        victoria: VictoriaMetrics,
        *,
        devices: Sequence[Mapping[str, Any]] | None = None,
        scenario: Sequence[Mapping[str, Any]] = (),
        queue: Mapping[str, Any] | None = None,
        replay_rate: float = 20.0,
        ingest: Mapping[str, Any] | None = None,
        faketime_file: Path | None = None,
        store_proxy: bool = False,
    ) -> None:
        self.tmp_path = tmp_path
        self.broker = broker
        self.victoria = victoria
        self.devices = list(devices if devices is not None else device_specs())
        self.edge_dir = tmp_path / "edge"
        self.hub_dir = tmp_path / "hub"
        self.proxy = StoreProxy(victoria) if store_proxy else None
        site_file = write_yaml(tmp_path / "site.yaml", site_document(self.devices))
        hub_config = write_yaml(
            tmp_path / "hub.yaml",
            hub_document(
                site_file,
                self.hub_dir,
                broker,
                victoria,
                ingest=ingest,
                store_url=self.proxy.url if self.proxy is not None else None,
            ),
        )
        edge_config = write_yaml(
            tmp_path / "edge.yaml",
            gateway_document(
                self.edge_dir,
                broker,
                self.devices,
                scenario=scenario,
                queue=queue,
                replay_rate=replay_rate,
            ),
        )
        # The same gateway without drivers: at the end it sends what is left, adding nothing.
        drain_config = write_yaml(
            tmp_path / "edge-drain.yaml",
            gateway_document(self.edge_dir, broker, (), queue=queue, replay_rate=replay_rate),
        )
        self.tap = Tap(broker)
        self.hub = Daemon(
            "hub", [str(ANJU), "hub", "run", "--config", str(hub_config)], tmp_path / "hub.log"
        )
        self.agent = Daemon(
            "edge",
            [str(ANJU), "edge", "run", "--config", str(edge_config)],
            tmp_path / "edge.log",
            env=agent_env(faketime_file),
        )
        self.drain = Daemon(
            "edge-drain",
            [str(ANJU), "edge", "run", "--config", str(drain_config)],
            tmp_path / "edge-drain.log",
            env=agent_env(),
        )
        self.started = time.monotonic()
        self.caught_up_s = 0.0

    @property
    def daemons(self) -> list[Daemon]:
        """Those that should be running now."""
        return [d for d in (self.hub, self.agent) if d.running]

    def start_hub(self, timeout: float = 20) -> float:
        """Start the hub and wait until it announces itself online; return how long it took."""
        before = self.tap.hub_online_count()
        self.hub.start()
        return wait_until(
            lambda: self.tap.hub_online_count() > before, timeout, "the hub", watch=[self.hub]
        )

    def start_agent(self) -> None:
        """Start the edge agent."""
        self.agent.start()

    def wait_acks(self, count: int = 3, timeout: float = 30) -> float:
        """Wait until ``count`` more acknowledgements have gone to the gateway."""
        target = self.tap.ack_count() + count
        return wait_until(
            lambda: self.tap.ack_count() >= target,
            timeout,
            f"{count} acknowledgements",
            watch=self.daemons,
        )

    def run(self, seconds: float) -> None:
        """Let the stream flow, failing if a daemon dies."""
        run_for(seconds, watch=self.daemons)

    def finish(self, timeout: float = 60) -> tuple[QueueState, HubState]:
        """Stop the gateway, drain what it holds, stop the hub; return the final files.

        The agent stops gracefully (its last batch is committed, maybe not yet sent), then the
        same gateway runs once more without drivers until its queue is empty, so every seq it
        ever committed is either acknowledged or a counted victim.
        """
        if self.agent.running:
            # The running agent must catch up by itself: everything it committed until now is
            # acknowledged, backlog and resends included (a restart would hide a stuck queue).
            target = read_queue(self.edge_dir).last_seq
            self.caught_up_s = wait_until(
                lambda: all(seq > target for seq in read_queue(self.edge_dir).seqs),
                timeout,
                lambda: (
                    f"the running gateway to have every seq up to {target} acknowledged; "
                    f"it holds {_summary(read_queue(self.edge_dir).seqs)}, the tap saw "
                    f"{_summary(sorted(self.tap.seqs()))} and acknowledgements of "
                    f"{_summary(sorted(self.tap.acked()))}"
                ),
                watch=[self.hub, self.agent],
            )
            code = self.agent.terminate()
            assert code == 0, f"the edge agent exited with {code}\n{self.agent.log_tail()}"
        # Wait for the draining agent's own announcement before its queue counts: an empty
        # queue left by the first agent is true at once, while the new one is still starting.
        online_before = self.tap.gateway_online_count()
        self.drain.start()
        wait_until(
            lambda: (
                self.tap.gateway_online_count() > online_before
                and read_queue(self.edge_dir).depth == 0
            ),
            timeout,
            "the draining agent to come online and its queue to empty",
            watch=[self.hub, self.drain],
        )
        code = self.drain.terminate()
        assert code == 0, f"the draining agent exited with {code}\n{self.drain.log_tail()}"
        wait_until(
            lambda: read_spool(self.hub_dir).batches == 0,
            timeout,
            "the hub's spool to drain",
            watch=[self.hub],
        )
        code = self.hub.terminate()
        assert code == 0, f"the hub exited with {code}\n{self.hub.log_tail()}"
        return read_queue(self.edge_dir), read_hub(self.hub_dir)

    def account(self, **options: bool) -> Ledger:
        """:meth:`finish`, then :func:`account`."""
        queue, hub = self.finish()
        return account(self.tap, queue, hub, self.victoria, **options)

    def close(self) -> None:
        """Kill whatever still runs (after a failure) and close the tap."""
        for daemon in (self.agent, self.drain, self.hub):
            daemon.kill()
        self.tap.close()
        if self.proxy is not None:
            self.proxy.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _summary(seqs: Sequence[int]) -> str:
    """Seqs as compact ranges."""
    return " ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in seq_ranges(seqs)) or "none"


def deduplicated_samples(victoria: VictoriaMetrics) -> int:
    """Samples VictoriaMetrics has dropped as duplicates (``vm_deduplicated_samples_total``)."""
    victoria.flush()
    text = httpx.get(f"{victoria.url}/metrics", timeout=10).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("vm_deduplicated_samples_total")
    )
