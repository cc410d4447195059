"""Fake UART sensors on real pseudo-terminals and TCP sockets, and a driver output collector.

No real PMS5003 or MH-Z19 can run here: the fakes below write the byte-exact frames of
reference/device-protocols.md (sections 3.6 and 3.7) from a thread, the way the sensors do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from device_drivers import DeviceEvent, Driver, DriverOutput, ManualClock, Sample
from device_drivers.uart.mhz19 import mhz19_checksum
from device_drivers.uart.pms5003 import pms5003_checksum

START_MS = 1_772_409_600_000

PMS_REFERENCE_FRAME = bytes.fromhex(
    "42 4D 00 1C 00 00 00 08 00 08 00 00 00 08 00 08 00 D2 00 46 00 2D 00 1E 00 00 00 00 97 00 02 C5"
)
MHZ19_READ = bytes.fromhex("FF 01 86 00 00 00 00 00 79")
MHZ19_REFERENCE_REPLY = bytes.fromhex("FF 86 02 7C 42 00 00 00 BA")


def pms_frame(
    standard: tuple[int, int, int] = (0, 8, 8),
    atmospheric: tuple[int, int, int] = (0, 8, 8),
    counts: tuple[int, ...] = (210, 70, 45, 30, 0, 0),
    version: int = 0x97,
    error_code: int = 0,
) -> bytes:
    """A valid PMS5003 data frame with the given values."""
    body = b"\x42\x4d\x00\x1c" + b"".join(
        v.to_bytes(2, "big") for v in (*standard, *atmospheric, *counts)
    )
    body += bytes((version, error_code))
    return body + pms5003_checksum(body).to_bytes(2, "big")


def mhz19_reply(ppm: int, temperature_c: int = 26, status: int = 0) -> bytes:
    """A valid MH-Z19 reply to "read CO2"."""
    frame = bytes((0xFF, 0x86, ppm >> 8, ppm & 0xFF, temperature_c + 40, status, 0, 0, 0))
    return frame[:8] + bytes((mhz19_checksum(frame),))


def corrupt_checksum(frame: bytes) -> bytes:
    """The frame with its last byte changed."""
    return frame[:-1] + bytes(((frame[-1] + 1) & 0xFF,))


class PtyLink:
    """A pseudo-terminal pair reached through a symlink, like ``/dev/serial/by-id/...``.

    :meth:`vanish` closes both sides and removes the link (an unplugged USB adapter);
    :meth:`appear` makes a new pair at the same link path (plugged in again).
    """

    def __init__(self, link: Path) -> None:
        self.link = link
        self.controller = -1
        self._peripheral = -1
        self.appear()

    def appear(self) -> None:
        controller, peripheral = os.openpty()
        tty.setraw(peripheral)
        os.set_blocking(controller, False)
        tmp = self.link.with_suffix(".new")
        tmp.symlink_to(os.ttyname(peripheral))
        tmp.replace(self.link)
        self.controller, self._peripheral = controller, peripheral

    def vanish(self) -> None:
        for fd in (self.controller, self._peripheral):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.controller = self._peripheral = -1
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()


class FakeSensor(threading.Thread):
    """A fake UART sensor in a thread, on the controller side of a pty.

    ``stream`` (if given) is written every ``period_s``; ``answer`` maps the bytes received so
    far to a reply (and consumes them), for sensors that are asked.  ``inject`` queues raw
    bytes (noise, damaged frames) written before the next regular output.  ``silent`` mutes
    both, like a sensor that stopped answering.
    """

    def __init__(
        self,
        fd: int,
        *,
        stream: Callable[[], bytes] | None = None,
        answer: Callable[[bytearray], bytes] | None = None,
        period_s: float = 0.01,
    ) -> None:
        super().__init__(daemon=True, name="fake-sensor")
        self.fd = fd
        self.stream = stream
        self.answer = answer
        self.period_s = period_s
        self.received = bytearray()
        self.silent = threading.Event()
        self._pending = bytearray()
        self._inject: list[bytes] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def inject(self, data: bytes) -> None:
        with self._lock:
            self._inject.append(data)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.fd, data)

    def run(self) -> None:
        while not self._halt.is_set():
            with contextlib.suppress(OSError, ValueError):
                readable, _, _ = select.select([self.fd], [], [], self.period_s)
                if readable:
                    data = os.read(self.fd, 1024)
                    self.received += data
                    self._pending += data
            with self._lock:
                injected, self._inject = self._inject, []
            for chunk in injected:
                self._write(chunk)
            if self.silent.is_set():
                self._pending.clear()
                continue
            if self.answer is not None and self._pending:
                reply = self.answer(self._pending)
                if reply:
                    self._write(reply)
            if self.stream is not None:
                self._write(self.stream())


def answer_commands(replies: dict[bytes, Callable[[], bytes]]) -> Callable[[bytearray], bytes]:
    """An ``answer`` function: each complete known command in the buffer gets its reply."""

    def answer(pending: bytearray) -> bytes:
        out = bytearray()
        while pending:
            for command, reply in replies.items():
                if pending.startswith(command):
                    del pending[: len(command)]
                    out += reply()
                    break
            else:
                if any(command.startswith(pending) for command in replies):
                    break  # wait for the rest of the command
                del pending[:1]
        return bytes(out)

    return answer


class Collector:
    """Runs a driver's outputs in a task and lets a test wait for the ones it expects."""

    def __init__(self, driver: Driver[Any], clock: ManualClock) -> None:
        self.driver = driver
        self.clock = clock
        self.outputs: list[DriverOutput] = []
        self._seen = 0
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

    async def next(
        self,
        predicate: Callable[[DriverOutput], bool],
        *,
        advance_s: float = 0.0,
        pause_s: float = 0.01,
        timeout_s: float = 5.0,
    ) -> DriverOutput:
        """The next unseen output matching ``predicate``.

        Each try moves the clock ``advance_s``, then gives the devices ``pause_s`` of real time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            for index in range(self._seen, len(self.outputs)):
                if predicate(self.outputs[index]):
                    self._seen = index + 1
                    return self.outputs[index]
            if self._task is not None and self._task.done():
                self._task.result()
                raise AssertionError(f"driver ended; outputs: {self.outputs}")
            if loop.time() > deadline:
                raise AssertionError(f"no matching output; outputs: {self.outputs}")
            if advance_s:
                await self.clock.advance(advance_s)
            await asyncio.sleep(pause_s)

    async def sample(self, **wait: float) -> Sample:
        """The next unseen sample (``wait``: as for :meth:`next`)."""
        output = await self.next(is_sample, **wait)
        assert isinstance(output, Sample)
        return output

    async def event(self, kind: str, **wait: float) -> DeviceEvent:
        """The next unseen event of ``kind`` (``wait``: as for :meth:`next`)."""
        output = await self.next(is_event(kind), **wait)
        assert isinstance(output, DeviceEvent)
        return output

    def since(self, kind: str | None = None) -> list[DriverOutput]:
        """Outputs after the last one returned by :meth:`next`, optionally events of ``kind``."""
        rest = self.outputs[self._seen :]
        if kind is None:
            return rest
        return [out for out in rest if isinstance(out, DeviceEvent) and out.kind == kind]


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait in real time until ``condition()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def is_sample(output: DriverOutput) -> bool:
    return isinstance(output, Sample)


def is_event(kind: str) -> Callable[[DriverOutput], bool]:
    def match(output: DriverOutput) -> bool:
        return isinstance(output, DeviceEvent) and output.kind == kind

    return match


def events_of(outputs: list[DriverOutput], kind: str) -> list[DeviceEvent]:
    return [out for out in outputs if isinstance(out, DeviceEvent) and out.kind == kind]
