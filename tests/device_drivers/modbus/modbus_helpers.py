"""A Modbus RTU bus for tests: pymodbus's own server behind a pseudo-terminal pair.

``PtyLink`` joins two pseudo-terminals with a relay thread, so the client opens one path and
pymodbus's server the other, with the relay in the middle able to garble what the devices
say.  ``ModbusSim`` is a ``ModbusSerialServer`` holding several units (one shared line, like an
RS-485 bus) whose units can be taken off and put back on the bus.  ``SimThread`` runs a
``ModbusSim`` on its own event loop, for synchronous callers such as typer's ``CliRunner``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
import tty
from collections.abc import Callable, Iterable
from typing import Any, Self

from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

# Raw words of the sensors used in the tests.
T_30_5 = 0x0131  # 305 -> 30.5 °C
RH_54_6 = 0x0222  # 546 -> 54.6 %RH
T_MINUS_12_5 = 0xFF83  # int16 -125 -> -12.5 °C


def sim_device(
    unit: int,
    *,
    input_registers: Iterable[int] = (0, T_30_5, RH_54_6, 0),
    holding_registers: Iterable[int] = (RH_54_6, T_30_5, 0, 0),
    inputs: Iterable[bool] = (False,) * 16,
) -> SimDevice:
    """A device with input registers, holding registers and discrete inputs from address 0."""
    return SimDevice(
        id=unit,
        simdata=(
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, values=list(inputs), datatype=DataType.BITS)],
            [SimData(0, values=list(holding_registers), datatype=DataType.REGISTERS)],
            [SimData(0, values=list(input_registers), datatype=DataType.REGISTERS)],
        ),
    )


class PtyLink:
    """Two pseudo-terminals and a relay thread between their controller ends.

    ``client_path`` is for the Modbus client (the driver), ``server_path`` for pymodbus's
    server.  ``garble(n)`` corrupts the next ``n`` chunks the server sends (one byte flipped,
    so the CRC fails); ``noise(n)`` puts stray bytes in front of the next ``n`` chunks.
    """

    def __init__(self) -> None:
        self._fds: list[int] = []
        self.client_fd, self.client_path, client_peer = self._pty()
        self.server_fd, self.server_path, _ = self._pty()
        self.client_peer_fd = client_peer  # for reading the client's line settings
        self._garble = 0
        self._noise = 0
        self.garbled = 0
        self.noised = 0
        self.sent = bytearray()  # everything the client wrote
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pty-relay", daemon=True)

    def _pty(self) -> tuple[int, str, int]:
        controller, peripheral = os.openpty()
        tty.setraw(peripheral)
        self._fds += [controller, peripheral]
        return controller, os.ttyname(peripheral), peripheral

    def start(self) -> PtyLink:
        self._thread.start()
        return self

    def garble(self, chunks: int) -> None:
        with self._lock:
            self._garble += chunks

    def noise(self, chunks: int) -> None:
        with self._lock:
            self._noise += chunks

    def _run(self) -> None:
        peers = {self.client_fd: self.server_fd, self.server_fd: self.client_fd}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(peers), [], [], 0.02)
            for fd in ready:
                try:
                    data = os.read(fd, 1024)
                except OSError:
                    continue
                if fd == self.server_fd:
                    data = self._tamper(data)
                else:
                    self.sent += data
                with contextlib.suppress(OSError):
                    os.write(peers[fd], data)

    def _tamper(self, data: bytes) -> bytes:
        with self._lock:
            if self._garble and data:
                self._garble -= 1
                self.garbled += 1
                middle = len(data) // 2
                return data[:middle] + bytes([data[middle] ^ 0x5A]) + data[middle + 1 :]
            if self._noise:
                self._noise -= 1
                self.noised += 1
                return b"\x00\xff\x13" + data
        return data

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class ModbusSim:
    """pymodbus's RTU server with several units on one line.

    Units that are not configured, or are in ``offline``, get no answer at all, as on a real
    bus where nobody has that address.  (pymodbus 3.16's server answers an unknown id with
    exception 0x04, device failure: ``ignore_missing_devices`` only works with the deprecated
    ``ModbusServerContext``, not with a list of ``SimDevice``.)

    Args:
        port: a serial path, or ``socket://host:port`` for an RTU-over-TCP server.
        devices: the units.
        settings: line settings for the server (baudrate, parity, ...).
    """

    def __init__(self, port: str, devices: Iterable[SimDevice], **settings: Any) -> None:
        self.port = port
        self.devices = list(devices)
        self.settings = settings
        self.units = {device.id for device in self.devices}
        self.offline: set[int] = set()
        self.requests: list[tuple[int, int, int, int]] = []  # unit, function, address, count
        self.server: ModbusSerialServer | None = None

    def _filter(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests.append((pdu.dev_id, pdu.function_code, pdu.address, pdu.count))
            if pdu.dev_id in self.offline or pdu.dev_id not in self.units:
                return None  # type: ignore[return-value] # pymodbus then sends nothing
        return pdu

    async def start(self) -> ModbusSim:
        self.server = ModbusSerialServer(
            self.devices, port=self.port, trace_pdu=self._filter, **self.settings
        )
        await self.server.serve_forever(background=True)
        return self

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def set_registers(self, unit: int, function: int, address: int, words: list[int]) -> None:
        assert self.server is not None
        await self.server.async_setValues(unit, 3 if function == 3 else 4, address, words)

    async def set_inputs(self, unit: int, address: int, bits: list[bool]) -> None:
        assert self.server is not None
        await self.server.async_setValues(unit, 2, address, bits)


class SimThread:
    """Runs a :class:`ModbusSim` on an event loop of its own, in a thread."""

    def __init__(self, factory: Callable[[], ModbusSim]) -> None:
        self._factory = factory
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.sim: ModbusSim | None = None

    def start(self) -> SimThread:
        self._thread.start()

        async def create() -> ModbusSim:
            return await self._factory().start()

        self.sim = asyncio.run_coroutine_threadsafe(create(), self._loop).result(timeout=5)
        return self

    def stop(self) -> None:
        if self.sim is not None:
            asyncio.run_coroutine_threadsafe(self.sim.stop(), self._loop).result(timeout=5)

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(drain(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


class Run:
    """An open driver whose outputs a background task collects."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.outputs: list[Any] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.driver.open()
        self._task = asyncio.create_task(self._consume())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.driver.aclose()
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout=5)

    async def _consume(self) -> None:
        async for output in self.driver.outputs():
            self.outputs.append(output)

    def samples(self, device: str) -> list[Any]:
        return [o for o in self.outputs if o.device == device and hasattr(o, "values")]

    def events(self, kind: str | None = None, device: str | None = None) -> list[Any]:
        return [
            o
            for o in self.outputs
            if hasattr(o, "kind")
            and (kind is None or o.kind == kind)
            and (device is None or o.device == device)
        ]

    def attempts(self, device: str) -> int:
        """Polls of ``device`` so far, successful or not."""
        return int(self.driver.polls(device) + sum(self.driver.errors(device).values()))

    async def until(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                if self._task is not None and self._task.done():
                    self._task.result()  # surface the driver's exception
                    msg = "outputs() ended"
                    raise AssertionError(msg)
                await asyncio.sleep(0.005)

    async def tick(self, clock: Any, seconds: float, devices: Iterable[str]) -> None:
        """Advance a manual clock and wait until each of ``devices`` has been polled again."""
        before = {device: self.attempts(device) for device in devices}
        await clock.advance(seconds)
        await self.until(lambda: all(self.attempts(d) > n for d, n in before.items()))
