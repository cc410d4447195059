"""The Wiegand driver: reads one serial Wiegand converter and reports card reads and PINs."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncGenerator, Coroutine
from typing import Any, ClassVar

from device_drivers.base import DeviceEvent, Driver, DriverConfig, DriverOutput
from device_drivers.clock import Clock
from device_drivers.doors import Authorise, KeypadBuffer, access_event, decide, pin_credential
from device_drivers.errors import DriverIOError
from device_drivers.health import DeviceHealth
from device_drivers.serial_port import SerialPort, SerialSettings
from device_drivers.wiegand.config import WiegandConfig
from device_drivers.wiegand.formats import BadFrame, CardRead, KeyPress, make_parser

__all__ = ["WiegandDriver"]

_LOG = logging.getLogger(__name__)

_Item = DriverOutput | BaseException | None  # None marks the end of the outputs


class WiegandDriver(Driver[WiegandConfig]):
    """One serial Wiegand converter and the reader behind it.

    A reader is silent until a card is shown, so silence is never a fault.  Faults are bad
    frames (noise, bad parity or checksum, truncated frames) and a failing port: after
    ``bad_frames_to_fault`` of them in a row the reader gets one ``device.fault``, and the next
    good frame, or the port opening again, gives ``device.recovered``.  A failed port is
    reopened with a capped exponential back-off on the driver's clock; the driver itself never
    stops for it.

    Args:
        config: the driver's settings.
        clock: source of timestamps and of waiting.
        authorise: optional local access decision on the raw credential (see
            :data:`~device_drivers.doors.Authorise`); without it ``door.access`` has no
            ``granted``.

    Attributes:
        health: the reader's health, with counts of every kind of failure.
        counters: bytes, card reads, keys, PINs and bad frames by kind.
    """

    type_key: ClassVar[str] = "wiegand"
    config_model: ClassVar[type[DriverConfig]] = WiegandConfig

    def __init__(
        self, config: WiegandConfig, *, clock: Clock, authorise: Authorise | None = None
    ) -> None:
        super().__init__(config, clock=clock)
        self.authorise = authorise
        device = config.device_id
        self.health = DeviceHealth(device, failures_to_fault=config.bad_frames_to_fault)
        self.counters: collections.Counter[str] = collections.Counter()
        self._parser = make_parser(config.format, frame_bits=config.frame_bits)
        self._keypad = KeypadBuffer(timeout_s=config.keypad_timeout_s)
        self._keypad_changed = asyncio.Event()
        self._port = SerialPort(config.port, SerialSettings(baudrate=config.baud), owner=device)
        self._out: asyncio.Queue[_Item] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._last_rx_ms = 0
        self._frame_gap_ms = round(config.frame_gap_s * 1000)

    @property
    def device_ids(self) -> tuple[str, ...]:
        """The reader."""
        return (self.config.device_id,)

    async def open(self) -> None:
        """Open the port and start reading.

        Raises:
            DriverIOError: if the port cannot be opened.
            RuntimeError: if the driver was closed.
        """
        if self._closed:
            msg = "a closed driver cannot be opened again"
            raise RuntimeError(msg)
        if self._opened:
            return
        await self._port.open()
        self._opened = True
        self._tasks = [
            self._start(self._read_loop(), "read"),
            self._start(self._keypad_loop(), "keypad"),
        ]

    async def aclose(self) -> None:
        """Stop reading and release the port; a pending :meth:`outputs` ends.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._port.aclose()
        self._out.put_nowait(None)

    async def outputs(self) -> AsyncGenerator[DriverOutput, None]:
        """Yield the reader's events until the driver is closed.

        Raises:
            RuntimeError: if the driver is not open or already being iterated, or re-raised
                from an unexpected failure inside the driver (the agent then restarts it).
        """
        with self._consuming():
            while True:
                item = await self._out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

    # -- tasks ----------------------------------------------------------------------------------

    def _start(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - handed to outputs(), which re-raises it
                _LOG.exception("driver %s: %s task failed", self.config.id, name)
                self._out.put_nowait(exc)

        return asyncio.create_task(guarded(), name=f"wiegand:{self.config.id}:{name}")

    def _emit(self, event: DeviceEvent | None) -> None:
        if event is not None:
            self._out.put_nowait(event)

    async def _read_loop(self) -> None:
        while True:
            try:
                data = await self._port.read()
            except DriverIOError as exc:
                await self._recover_port(exc)
                continue
            self._received(data)

    async def _recover_port(self, error: DriverIOError) -> None:
        """Reopen the port with a capped back-off; the health sees every failed attempt."""
        await self._port.aclose()
        self._parser.reset()  # a frame cut by the port failing is lost, not noise
        self.counters["port_errors"] += 1
        _LOG.warning("driver %s: %s; reopening", self.config.id, error.reason)
        self._emit(self.health.failure(self.clock.now_ms(), "io", error.reason))
        delay = self.config.reconnect_min_s
        while True:
            await self.clock.sleep_until(self.clock.now_ms() + round(delay * 1000))
            try:
                await self._port.open()
            except DriverIOError as exc:
                self._emit(self.health.failure(self.clock.now_ms(), "io", exc.reason))
                delay = min(delay * 2, self.config.reconnect_max_s)
                continue
            _LOG.info("driver %s: %s open again", self.config.id, self.config.port)
            self._emit(self.health.success(self.clock.now_ms()))
            return

    async def _keypad_loop(self) -> None:
        """Drop an unfinished PIN once it times out, so it does not linger in memory."""
        while True:
            self._keypad_changed.clear()
            deadline = self._keypad.deadline_ms()
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._keypad_changed.wait())]
            if deadline is not None:
                waits.append(asyncio.ensure_future(self.clock.sleep_until(deadline)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter
            self._keypad.expire(self.clock.now_ms())

    # -- frames ---------------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        now = self.clock.now_ms()
        self.counters["bytes"] += len(data)
        if self._parser.pending and now - self._last_rx_ms > self._frame_gap_ms:
            truncated = self._parser.reset()
            if truncated is not None:
                self._bad(now, truncated)
        self._last_rx_ms = now
        for frame in self._parser.feed(data):
            if isinstance(frame, BadFrame):
                self._bad(now, frame)
                continue
            self._emit(self.health.success(now))
            if isinstance(frame, CardRead):
                self.counters["cards"] += 1
                self._emit(self._access(now, frame.credential, frame.format, frame.bits))
            elif isinstance(frame, KeyPress):
                self._keys(now, frame.keys)

    def _bad(self, now: int, frame: BadFrame) -> None:
        self.counters[f"bad_{frame.kind}"] += 1
        _LOG.debug("driver %s: %s", self.config.id, frame.reason)
        self._emit(self.health.failure(now, frame.kind, frame.reason))

    def _keys(self, now: int, keys: str) -> None:
        self.counters["keys"] += len(keys)
        for digits in self._keypad.keys(now, keys):
            self.counters["pins"] += 1
            self._emit(self._access(now, pin_credential(digits), "keypad", None))
        self._keypad_changed.set()

    def _access(self, now: int, credential: str, fmt: str, bits: int | None) -> DeviceEvent:
        device = self.config.device_id
        return access_event(
            device,
            now,
            credential=credential,
            fmt=fmt,
            bits=bits,
            door=self.config.door,
            granted=decide(self.authorise, device, credential),
        )
