"""Real OSDP peers for the driver's tests: libosdp PeripheralDevices behind a pty line.

``Line`` joins the port the driver opens (a pty) to one or more PDs (each on a pty of its
own) through a relay thread that can pass, mute or corrupt the bytes, like a flaky RS-485
bus.  ``SocketLine`` puts a TCP server (``socket://``) in front of a PD instead, which can
go away and come back.  ``FakeReader`` is one libosdp PeripheralDevice with helpers to
present cards, type keys and change inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import select
import socket
import threading
import time
import tty
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import osdp  # type: ignore[import-untyped]

from device_drivers import DeviceEvent, Driver, DriverOutput, SystemClock
from device_drivers.doors import Authorise
from device_drivers.osdp import OsdpConfig, OsdpDriver
from wire import validate_event_data

DEFAULT_CAPS = [
    (osdp.Capability.OutputControl, 1, 1),
    (osdp.Capability.ContactStatusMonitoring, 1, 2),
    (osdp.Capability.LEDControl, 1, 1),
    (osdp.Capability.CheckCharacter, 1, 0),
    (osdp.Capability.CommunicationSecurity, 1, 0),
]
CARD_FC123_CN4567 = bytes.fromhex("bd88eb80")  # reference §1.5: osdp_RAW data, 26 bits
CREDENTIAL_FC123_CN4567 = "26:02f623ae"
KEY_A = bytes(range(16))
KEY_B = bytes(range(16, 32))
FAKE_PSEUDONYM = "h1:" + "0" * 32


def _nonblocking(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)


def _raw_pty() -> tuple[int, int]:
    controller, peripheral = os.openpty()
    tty.setraw(controller)
    tty.setraw(peripheral)
    return controller, peripheral


class FdChannel(osdp.Channel):  # type: ignore[misc]
    """A libosdp channel on a file descriptor, never blocking, never raising."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        _nonblocking(fd)

    def read(self, max_bytes: int) -> bytes:
        try:
            return os.read(self.fd, max_bytes)
        except OSError:
            return b""

    def write(self, buf: bytes) -> int:
        try:
            return os.write(self.fd, buf)
        except OSError:
            return -1

    def flush(self) -> None:
        pass


class FakeReader:
    """A libosdp PeripheralDevice on ``fd``."""

    def __init__(
        self,
        fd: int,
        address: int,
        *,
        scbk: bytes | None = None,
        caps: Sequence[tuple[int, int, int]] = DEFAULT_CAPS,
    ) -> None:
        self.fd = fd
        self.address = address
        self.scbk = scbk
        self.caps = list(caps)
        self.pd: Any = None

    def start(self) -> FakeReader:
        info = osdp.PDInfo(self.address, FdChannel(self.fd), scbk=self.scbk)
        self.pd = osdp.PeripheralDevice(
            info, osdp.PDCapabilities(self.caps), log_level=osdp.LogLevel.Emergency
        )
        self.pd.start()
        return self

    def stop(self) -> None:
        if self.pd is not None:
            self.pd.stop()
            self.pd = None

    def card(self, data: bytes = CARD_FC123_CN4567, bits: int = 26, *, wiegand: bool = True):
        fmt = osdp.CardFormat.Wiegand if wiegand else osdp.CardFormat.Unspecified
        self.pd.submit_event(
            {
                "event": osdp.Event.CardRead,
                "reader_no": 0,
                "format": fmt,
                "direction": 0,
                "length": bits,
                "data": data,
            }
        )

    def keys(self, keys: bytes) -> None:
        self.pd.submit_event({"event": osdp.Event.KeyPress, "reader_no": 0, "data": keys})

    def inputs(self, *states: int) -> None:
        self.pd.submit_event(
            {
                "event": osdp.Event.Status,
                "type": osdp.StatusReportType.Input,
                "nr_entries": len(states),
                "report": bytes(states),
            }
        )

    def local_status(self, *, tamper: bool, power_failure: bool = False) -> None:
        self.pd.submit_event(
            {
                "event": osdp.Event.Status,
                "type": osdp.StatusReportType.Local,
                "nr_entries": 2,
                "report": bytes([tamper, power_failure]),
            }
        )

    def commands(self) -> list[dict[str, Any]]:
        found = []
        while (command := self.pd.get_command(timeout=-1)) is not None:
            found.append(command)
        return found


class Line:
    """The driver's pty joined to ``pds`` PD ptys by a relay thread.

    Bytes from the driver go to every PD (a multi-drop bus); replies go back to the driver.
    ``mode`` is ``pass``, ``mute`` (the line is cut) or ``corrupt`` (each byte is flipped with
    probability ``corrupt_rate``).  ``tap`` records what the PDs sent.
    """

    def __init__(self, pds: int = 1, *, seed: int = 1) -> None:
        self._cp_controller, self._cp_peripheral = _raw_pty()
        self.port = os.ttyname(self._cp_peripheral)
        self._pd_ptys = [_raw_pty() for _ in range(pds)]
        self.pd_fds = [peripheral for _, peripheral in self._pd_ptys]
        self.mode = "pass"
        self.corrupt_rate = 0.0
        self.tap = bytearray()
        self.corrupted = 0
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        for fd in (self._cp_controller, *(c for c, _ in self._pd_ptys)):
            _nonblocking(fd)
        self._thread = threading.Thread(target=self._relay, name="line", daemon=True)
        self._thread.start()

    def inject(self, data: bytes) -> None:
        """Put bytes on the line towards the driver (noise between frames)."""
        os.write(self._cp_controller, data)

    def _mangle(self, data: bytes) -> bytes:
        if self.mode != "corrupt":
            return data
        out = bytearray(data)
        for i in range(len(out)):
            if self._rng.random() < self.corrupt_rate:
                out[i] ^= 1 << self._rng.randrange(8)
                self.corrupted += 1
        return bytes(out)

    def _relay(self) -> None:
        pd_controllers = [c for c, _ in self._pd_ptys]
        watched = [self._cp_controller, *pd_controllers]
        while not self._stop.is_set():
            ready, _, _ = select.select(watched, [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if self.mode == "mute" or not data:
                    continue
                if fd == self._cp_controller:
                    data = self._mangle(data)
                    for target in pd_controllers:
                        with contextlib.suppress(OSError):
                            os.write(target, data)
                else:
                    self.tap += data
                    with contextlib.suppress(OSError):
                        os.write(self._cp_controller, self._mangle(data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for controller, peripheral in [(self._cp_controller, self._cp_peripheral), *self._pd_ptys]:
            for fd in (controller, peripheral):
                with contextlib.suppress(OSError):
                    os.close(fd)


class SocketLine:
    """A TCP server (the driver's ``socket://`` port, like ser2net) in front of one PD pty.

    :meth:`go_away` closes the server and its connection; :meth:`come_back` listens again on
    the same port.
    """

    def __init__(self) -> None:
        self._pd_controller, self.pd_fd = _raw_pty()
        _nonblocking(self._pd_controller)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.tcp_port = probe.getsockname()[1]
        probe.close()
        self.port = f"socket://127.0.0.1:{self.tcp_port}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.come_back()

    def come_back(self) -> None:
        self._stop.clear()
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.tcp_port))
        server.listen(1)
        server.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, args=(server,), daemon=True)
        self._thread.start()

    def go_away(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _serve(self, server: socket.socket) -> None:
        conn: socket.socket | None = None
        try:
            while not self._stop.is_set():
                if conn is None:
                    try:
                        conn, _ = server.accept()
                    except TimeoutError:
                        continue
                    conn.setblocking(False)
                    self.connections += 1
                ready, _, _ = select.select([conn.fileno(), self._pd_controller], [], [], 0.05)
                for fd in ready:
                    if fd == conn.fileno():
                        try:
                            data = conn.recv(4096)
                        except OSError:
                            data = b""
                        if not data:
                            conn.close()
                            conn = None
                            break
                        os.write(self._pd_controller, data)
                    else:
                        with contextlib.suppress(OSError):
                            conn.sendall(os.read(self._pd_controller, 4096))
        finally:
            if conn is not None:
                conn.close()
            server.close()

    def close(self) -> None:
        self.go_away()
        for fd in (self._pd_controller, self.pd_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Collector:
    """Collects a driver's outputs in the background."""

    def __init__(self, driver: Driver[Any]) -> None:
        self.driver = driver
        self.outputs: list[DriverOutput] = []
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for output in self.driver.outputs():
            self.outputs.append(output)

    @property
    def events(self) -> list[DeviceEvent]:
        return [o for o in self.outputs if isinstance(o, DeviceEvent)]

    def of_kind(self, kind: str) -> list[DeviceEvent]:
        return [e for e in self.events if e.kind == kind]

    async def wait_for(
        self, predicate: Callable[[DeviceEvent], bool], timeout: float = 5.0
    ) -> DeviceEvent:
        """The first event matching ``predicate``, waiting for it up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                kinds = [(e.device, e.kind, dict(e.data)) for e in self.events]
                msg = f"no matching event within {timeout} s; got {kinds}"
                raise AssertionError(msg)
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)

    async def wait_kind(self, kind: str, timeout: float = 5.0, **data: Any) -> DeviceEvent:
        return await self.wait_for(
            lambda e: e.kind == kind and all(e.data.get(k) == v for k, v in data.items()),
            timeout,
        )

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def osdp_config(port: str, readers: Sequence[dict[str, Any]], **extra: Any) -> OsdpConfig:
    raw: dict[str, Any] = {
        "type": "osdp",
        "id": "osdp-line",
        "port": port,
        "readers": [dict(r) for r in readers],
        "offline_after_s": 1.5,
        "retry_min_s": 0.25,
        "retry_max_s": 1.0,
        "log_level": "emergency",
        **extra,
    }
    return OsdpConfig.model_validate(raw)


@contextlib.asynccontextmanager
async def running(
    config: OsdpConfig, *, authorise: Authorise | None = None
) -> AsyncIterator[tuple[OsdpDriver, Collector]]:
    driver = OsdpDriver(config, clock=SystemClock(), authorise=authorise)
    async with driver:
        collector = Collector(driver)
        try:
            yield driver, collector
        finally:
            await collector.stop()


async def wait_online(driver: OsdpDriver, index: int = 0, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    bus = driver._bus
    assert bus is not None
    while not bus.is_online(index):
        if time.monotonic() > deadline:
            msg = f"reader {index} did not come online within {timeout} s"
            raise AssertionError(msg)
        await asyncio.sleep(0.02)


def wire_checked(event: DeviceEvent) -> dict[str, Any]:
    """The event's data as the edge agent would publish it (credential pseudonymised)."""
    data = dict(event.data)
    if event.credential is not None:
        data["credential"] = FAKE_PSEUDONYM
    return validate_event_data(event.kind, data)
