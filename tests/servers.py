"""Real servers for integration tests: Mosquitto, VictoriaMetrics and a webhook receiver.

Each server runs on a free loopback port with its files in a directory of its own, and is stopped
by the fixture that started it (see ``conftest.py``), even when a test fails. A missing binary is an
error that says to run ``make servers``, never a skip: CI runs every test.
"""

from __future__ import annotations

import atexit
import contextlib
import http.server
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import parse_qs, urlsplit

import httpx

LOOPBACK = "127.0.0.1"
INSTALL_HINT = "run `make servers` (scripts/install-servers.sh) to install it"


class ServerNotInstalledError(RuntimeError):
    """A server binary the tests need is not installed."""


class ServerStartError(RuntimeError):
    """A server did not come up in time; the message carries the tail of its log."""


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str, env_var: str, *fallbacks: str) -> str:
    """Locate a server binary: ``$env_var``, then ``PATH``, then the given absolute fallbacks."""
    override = os.environ.get(env_var)
    if override:
        if os.access(override, os.X_OK):
            return override
        msg = f"{env_var}={override!r} is not an executable file"
        raise ServerNotInstalledError(msg)
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if os.access(candidate, os.X_OK):
            return candidate
    searched = ", ".join(("PATH", *fallbacks))
    msg = f"{name} is not installed (searched {searched}); {INSTALL_HINT}"
    raise ServerNotInstalledError(msg)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def _tcp_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on TCP ``port`` (Linux ``/proc``).

    A bare connect is not enough to know that a server came up: another process may hold the
    port, and then the new server fails to bind while the connect succeeds. Where ``/proc`` does
    not tell, this answers True and the connect alone decides.
    """
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return True
    inodes: set[str] = set()
    for table in tables:
        with contextlib.suppress(OSError):
            for line in table.read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(f"socket:[{inode}]")
    if not inodes:
        return False
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return True
    for fd in fds:
        with contextlib.suppress(OSError):
            if str(fd.readlink()) in inodes:
                return True
    return False


# Every server started in this process, so that none outlives the test run even when a fixture's
# finalizer never ran (an interrupted session): they are killed at interpreter exit.
_live: set[_ServerProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.kill()


class _ServerProcess:
    """A server subprocess with its output in a file, stoppable, killable and restartable."""

    name = "server"
    stop_timeout = 10.0

    def __init__(self, workdir: Path, host: str, port: int | None, start_timeout: float) -> None:
        self.workdir = workdir
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.start_timeout = start_timeout
        self.output_path = workdir / f"{self.name}.out"
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    # -- to be provided by subclasses

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write whatever the server needs before each start."""

    def _ready(self) -> bool:
        raise NotImplementedError

    def _diagnostics(self) -> str:
        return f"--- {self.output_path} ---\n{tail(self.output_path)}"

    # -- lifecycle

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the server on its port and wait until it serves; return ``self``."""
        if self.is_running:
            msg = f"{self.name} on port {self.port} is already running"
            raise RuntimeError(msg)
        self._reap()
        command = self._command()
        self._prepare()
        self._output = self.output_path.open("ab")
        self._output.write(f"=== {time.strftime('%H:%M:%S')} {' '.join(command)}\n".encode())
        self._output.flush()
        self._proc = subprocess.Popen(
            command,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        _live.add(self)
        deadline = time.monotonic() + self.start_timeout
        while not (_listens(self._proc.pid, self.port) and self._ready()):
            code = self._proc.poll()
            if code is not None:
                self._reap()
                msg = (
                    f"{self.name} exited with code {code} while starting on {self.host}:{self.port}"
                )
                raise ServerStartError(f"{msg}\n{self._diagnostics()}")
            if time.monotonic() > deadline:
                self.kill()
                msg = f"{self.name} did not serve on {self.host}:{self.port} in {self.start_timeout:g}s"
                raise ServerStartError(f"{msg}\n{self._diagnostics()}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully (SIGTERM), killing the process if it does not exit in time."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()

    def kill(self) -> None:
        """Kill at once (SIGKILL), as a crash or a power cut would: no graceful shutdown."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self._reap()

    def restart(self) -> Self:
        """Stop, then start again on the same port with the same files."""
        self.stop()
        return self.start()

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
            _live.discard(self)
        if self._proc is None and self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self) -> Self:
        return self if self.is_running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"


class Mosquitto(_ServerProcess):
    """A Mosquitto broker on a loopback port, configured from scratch in ``workdir``.

    Args:
        workdir: directory for the config, log, output and persistence files.
        port: listener port; a free one by default.
        extra_config: lines appended after the listener (TLS options there apply to it; global
            options such as ``acl_file`` or ``password_file`` work anywhere).
        allow_anonymous: whether clients may connect without a user name.
        persistence: keep queued and retained messages in ``workdir`` across a graceful restart.
    """

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        extra_config: Sequence[str] = (),
        allow_anonymous: bool = True,
        persistence: bool = False,
        start_timeout: float = 10.0,
    ) -> None:
        super().__init__(workdir, host, port, start_timeout)
        self.binary = find_binary(
            "mosquitto", "ANJU_MOSQUITTO", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"
        )
        self.extra_config = list(extra_config)
        self.allow_anonymous = allow_anonymous
        self.persistence = persistence
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"

    def config_text(self) -> str:
        """The configuration written before each start."""
        lines = [
            # Run as whoever runs the tests: as root, Mosquitto would otherwise switch to the
            # `mosquitto` user, which cannot write into pytest's private temporary directories.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.log_path}",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"listener {self.port} {self.host}",
            *self.extra_config,
        ]
        return "\n".join(lines) + "\n"

    def _prepare(self) -> None:
        self.config_path.write_text(self.config_text())

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def _ready(self) -> bool:
        return _tcp_accepts(self.host, self.port)

    def _diagnostics(self) -> str:
        return f"--- {self.log_path} ---\n{tail(self.log_path)}\n{super()._diagnostics()}"

    def log_text(self) -> str:
        """Everything the broker has logged so far (all starts)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def url(self) -> str:
        """``mqtt://host:port``."""
        return f"mqtt://{self.host}:{self.port}"


Series = dict[str, Any]
"""One exported series: ``{"metric": {labels}, "values": [...], "timestamps": [ms, ...]}``."""

# VictoriaMetrics refuses samples more than two days in the future; export up to that bound.
_EXPORT_FUTURE_S = 2 * 86400


class VictoriaMetrics(_ServerProcess):
    """A single-node VictoriaMetrics on a loopback port, with its data in ``workdir / "data"``.

    It accepts InfluxDB line protocol on ``/api/v2/write`` (what ``influxdb-client`` sends) and
    ``/write``. A sample only becomes searchable once VictoriaMetrics has flushed its in-memory
    buffers (about a second for a known series, up to ten for a new one), so the read helpers here
    force a flush first: with it, a point is visible to the very next request.
    """

    name = "victoria-metrics"
    stop_timeout = 30.0

    FLAGS: tuple[str, ...] = (
        # Tests write points with any timestamp (fixed clocks in the past): keep everything.
        "-retentionPeriod=100y",
        # No response cache: a query must see points written a moment earlier.
        "-search.disableCache",
        # Do not hide the last 30 s of points from /api/v1/query and query_range.
        "-search.latencyOffset=0s",
        # Several instances may run at once on a small machine: bound the caches.
        "-memory.allowedBytes=256MiB",
    )

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        host: str = LOOPBACK,
        extra_flags: Sequence[str] = (),
        start_timeout: float = 10.0,
    ) -> None:
        super().__init__(workdir, host, port, start_timeout)
        self.binary = find_binary(
            "victoria-metrics", "ANJU_VICTORIA_METRICS", "/usr/bin/victoria-metrics"
        )
        self.extra_flags = list(extra_flags)
        self.data_path = workdir / "data"
        self.log_path = self.output_path

    @property
    def url(self) -> str:
        """``http://host:port``, the URL to give ``InfluxDBClient`` and HTTP clients."""
        return f"http://{self.host}:{self.port}"

    def _command(self) -> list[str]:
        return [
            self.binary,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.data_path}",
            *self.FLAGS,
            *self.extra_flags,
        ]

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code == httpx.codes.OK
        except httpx.TransportError:
            return False

    def log_text(self) -> str:
        """Everything the server has logged so far (all starts)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- data helpers

    def flush(self) -> None:
        """Make every sample received so far searchable (``/internal/force_flush``)."""
        httpx.get(f"{self.url}/internal/force_flush", timeout=10.0).raise_for_status()

    def write_lines(self, lines: str | Iterable[str], precision: str = "ms") -> httpx.Response:
        """Write InfluxDB line protocol through ``/api/v2/write``; return the response."""
        body = lines if isinstance(lines, str) else "\n".join(lines)
        response = httpx.post(
            f"{self.url}/api/v2/write",
            params={"org": "anju", "bucket": "anju", "precision": precision},
            content=body.encode(),
            timeout=10.0,
        )
        response.raise_for_status()
        return response

    def _range(self, start: float | None, end: float | None) -> dict[str, str]:
        # start=0 means "unset" to some handlers (/api/v1/series then looks back 5 minutes only);
        # the default end is "now" rounded to the second, which hides the newest points.
        return {
            "start": str(1 if start is None else start),
            "end": str(time.time() + _EXPORT_FUTURE_S if end is None else end),
        }

    def export(
        self,
        match: str | Sequence[str],
        *,
        start: float | None = None,
        end: float | None = None,
        flush: bool = True,
    ) -> list[Series]:
        """Raw samples of the series matching a selector, e.g. ``'{__name__=~"reading_.*"}'``.

        Each series appears once, its samples in time order; the list is sorted by labels.
        ``start`` and ``end`` are Unix seconds; by default all time.
        """
        if flush:
            self.flush()
        matches = [match] if isinstance(match, str) else list(match)
        response = httpx.get(
            f"{self.url}/api/v1/export",
            params={"match[]": matches, **self._range(start, end)},
            timeout=30.0,
        )
        response.raise_for_status()
        merged: dict[tuple[tuple[str, str], ...], list[tuple[int, Any]]] = {}
        for line in response.text.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key = tuple(sorted(item["metric"].items()))
            merged.setdefault(key, []).extend(zip(item["timestamps"], item["values"], strict=True))
        result: list[Series] = []
        for key in sorted(merged):
            samples = sorted(merged[key], key=lambda sample: sample[0])
            result.append(
                {
                    "metric": dict(key),
                    "values": [value for _, value in samples],
                    "timestamps": [ts for ts, _ in samples],
                }
            )
        return result

    def series(self, match: str | Sequence[str], *, flush: bool = True) -> list[dict[str, str]]:
        """Label sets of the series matching a selector, over all time (``/api/v1/series``)."""
        if flush:
            self.flush()
        matches = [match] if isinstance(match, str) else list(match)
        response = httpx.get(
            f"{self.url}/api/v1/series",
            params={"match[]": matches, **self._range(None, None)},
            timeout=30.0,
        )
        response.raise_for_status()
        data: list[dict[str, str]] = response.json()["data"]
        return data

    def series_count(self, match: str | Sequence[str], *, flush: bool = True) -> int:
        """How many series match a selector."""
        return len(self.series(match, flush=flush))

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant MetricsQL/PromQL query (``/api/v1/query``); returns ``data.result``.

        ``at`` is Unix seconds, now (to the millisecond) by default. VictoriaMetrics would
        otherwise take now rounded down to the second, and without ``nocache=1`` it moves a time
        within the last second back to now - 1 s (``-search.latencyOffset`` is raised to at least
        1 s): either would hide a point written a moment ago.
        """
        self.flush()
        params = {"query": promql, "nocache": "1", "time": f"{time.time() if at is None else at}"}
        response = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=30.0)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def wait_for(
        self,
        match: str | Sequence[str],
        predicate: Callable[[list[Series]], bool] | None = None,
        timeout: float = 10.0,
        interval: float = 0.05,
    ) -> list[Series]:
        """Poll :meth:`export` until ``predicate(series)`` holds (default: any series at all).

        Returns the series that satisfied it; raises ``TimeoutError`` with the last ones seen.
        """
        check = predicate if predicate is not None else bool
        deadline = time.monotonic() + timeout
        while True:
            found = self.export(match)
            if check(found):
                return found
            if time.monotonic() > deadline:
                msg = f"no match for {match!r} in {timeout:g}s; last export: {found!r}"
                raise TimeoutError(msg)
            time.sleep(interval)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the webhook receiver got."""

    method: str
    path: str
    """The path without the query string."""
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes
    json: Any
    """The body parsed as JSON, or ``None`` when it is empty or not JSON."""
    received_at: float = field(default_factory=time.time)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _ReceiverHTTPServer

    def _record(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        split = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            json=parsed,
        )
        status, delay, payload = receiver._respond(request)
        if delay:
            time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = _record  # noqa: N815 (the name http.server dispatches to)
    do_PUT = _record  # noqa: N815

    def do_GET(self) -> None:
        self.send_response(http.HTTPStatus.OK)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Stay quiet: the receiver records what matters."""


class _ReceiverHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # The default listen backlog of 5 drops connections when an alert storm posts hundreds at
    # once; a real webhook endpoint would not.
    request_queue_size = 1024
    receiver: WebhookReceiver


class WebhookReceiver:
    """A real HTTP server on a loopback port that records every POST and PUT it gets.

    Responses are ``status`` (200 by default) with ``response_body``, after ``delay`` seconds;
    :meth:`set_responses` queues statuses to answer first (to test retries).
    """

    def __init__(self, host: str = LOOPBACK, port: int = 0, status: int = 200) -> None:
        self.status = status
        self.delay = 0.0
        self.response_body: bytes = b'{"ok": true}'
        self._queued: list[int] = []
        self._requests: list[RecordedRequest] = []
        self._changed = threading.Condition()
        self._server = _ReceiverHTTPServer((host, port), _Handler)
        self._server.receiver = self
        self.host: str = host
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` (append any path)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Serve in a background thread; return ``self``."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"webhook-receiver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def set_responses(self, statuses: Iterable[int]) -> None:
        """Answer the next requests with these statuses, then with ``status`` again."""
        with self._changed:
            self._queued.extend(statuses)

    def _respond(self, request: RecordedRequest) -> tuple[int, float, bytes]:
        with self._changed:
            status = self._queued.pop(0) if self._queued else self.status
            self._requests.append(request)
            self._changed.notify_all()
            return status, self.delay, self.response_body

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests recorded so far, oldest first."""
        with self._changed:
            return list(self._requests)

    def clear(self) -> None:
        """Forget the requests recorded so far."""
        with self._changed:
            self._requests.clear()

    def wait_for(
        self,
        predicate: Callable[[list[RecordedRequest]], bool] | None = None,
        timeout: float = 10.0,
    ) -> list[RecordedRequest]:
        """Wait until ``predicate(requests)`` holds (default: at least one request).

        Returns the requests at that moment; raises ``TimeoutError`` with what was recorded.
        """
        check = predicate if predicate is not None else bool
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check(list(self._requests)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    msg = f"webhook predicate not met in {timeout:g}s; got {self._requests!r}"
                    raise TimeoutError(msg)
                self._changed.wait(remaining)
            return list(self._requests)

    def __enter__(self) -> Self:
        return self if self._thread is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
