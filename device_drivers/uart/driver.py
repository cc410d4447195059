"""UART sensor drivers: one serial port, one sensor, read on the injected clock.

The transport is :class:`~device_drivers.serial_port.SerialPort`; the frames are parsed by the
sans-IO parsers of :mod:`device_drivers.uart.pms5003` and :mod:`device_drivers.uart.mhz19`.
Every interval without a valid frame and every port error is one failure for
:class:`~device_drivers.health.DeviceHealth`: consecutive failures give one ``device.fault``, the
next valid frame one ``device.recovered``.  A port that breaks or disappears is closed and
reopened on a back-off that starts at 1 s and doubles up to ``reconnect_max_s``.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from device_drivers.base import Driver, DriverConfig, DriverOutput, Sample
from device_drivers.clock import Clock
from device_drivers.errors import DriverIOError
from device_drivers.health import DeviceHealth
from device_drivers.serial_port import SerialPort, SerialSettings
from device_drivers.uart import mhz19, pms5003
from device_drivers.uart.config import Mhz19Config, Pms5003Config, UartSensorConfig
from device_drivers.uart.frames import FrameStats

__all__ = ["FrameParser", "Mhz19Driver", "Pms5003Driver", "SerialSensorDriver"]

_LOG = logging.getLogger(__name__)
_FIRST_BACKOFF_S = 1.0

UC = TypeVar("UC", bound=UartSensorConfig)
F = TypeVar("F")
F_co = TypeVar("F_co", covariant=True)


class FrameParser(Protocol[F_co]):
    """A sans-IO frame parser: bytes in, checked frames out, errors counted."""

    @property
    def stats(self) -> FrameStats:
        """Counters of frames and errors."""
        ...

    @property
    def last_error(self) -> str:
        """What was wrong with the last rejected frame."""
        ...

    def clear(self) -> None:
        """Drop buffered bytes, keep the counters."""
        ...

    def feed(self, data: bytes) -> Sequence[F_co]:
        """Add bytes; return the frames they complete."""
        ...


class SerialSensorDriver(Driver[UC], Generic[UC, F]):
    """A sensor on its own serial port that streams frames or answers a query each interval.

    Subclasses give the parser, the commands sent when the port opens, the query (``None`` for
    a sensor that streams by itself) and the mapping from a frame to reading values.
    """

    def __init__(self, config: UC, *, clock: Clock, parser: FrameParser[F]) -> None:
        super().__init__(config, clock=clock)
        self.health = DeviceHealth(config.device_id, failures_to_fault=config.failures_to_fault)
        self.reopens = 0
        self._parser = parser
        self._query = self._query_command()
        self._port: SerialPort | None = None
        self._read_task: asyncio.Future[bytes] | None = None
        self._closed = asyncio.Event()
        self._pending: collections.deque[DriverOutput] = collections.deque()
        self._backoff_s = _FIRST_BACKOFF_S
        self._reopen_at_ms = 0
        self._warm_at_ms = 0
        self._next_poll_ms = 0
        self._next_sample_ms = 0
        # Polled sensors: when the pending answer is due (None: nothing asked).  Streaming
        # sensors: when the silence becomes a failure.
        self._deadline_ms: int | None = None
        # The parser's counters at the last valid frame, to tell what went wrong since.
        self._since_good = FrameStats()

    # -- what a sensor defines -------------------------------------------------------------

    def _setup_commands(self) -> tuple[bytes, ...]:
        """Commands written whenever the port opens."""
        return ()

    def _query_command(self) -> bytes | None:
        """The command that asks for one frame, or ``None`` if the sensor streams."""
        return None

    @abc.abstractmethod
    def _values(self, frame: F) -> dict[str, float] | None:
        """Reading values of a frame, or ``None`` if it carries no measurement."""

    # -- the contract ------------------------------------------------------------------------

    @property
    def device_ids(self) -> tuple[str, ...]:
        """The one device on this port."""
        return (self.config.device_id,)

    @property
    def frame_stats(self) -> FrameStats:
        """The parser's counters."""
        return self._parser.stats

    def counters(self) -> dict[str, int]:
        """Frame counters, failures by kind (``timeout_failures``, ``io_failures``...), reopens."""
        out = self._parser.stats.as_dict()
        for kind, count in sorted(self.health.errors.items()):
            out[f"{kind}_failures"] = count
        out["reopens"] = self.reopens
        return out

    async def open(self) -> None:
        """Open the port and send the setup commands.

        Raises:
            DriverIOError: if the port cannot be opened or written.
            RuntimeError: if the driver was closed.
        """
        if self._closed.is_set():
            msg = "a closed driver cannot be opened again"
            raise RuntimeError(msg)
        if self._opened:
            return
        await self._connect()
        self._opened = True

    async def aclose(self) -> None:
        """Close the port; a pending :meth:`outputs` iteration ends promptly.  Idempotent."""
        self._closed.set()
        await self._release_port()

    async def outputs(self) -> AsyncGenerator[DriverOutput, None]:
        """Yield samples and health events until closed; port failures never end it.

        Raises:
            RuntimeError: if the driver is not open, or is already being iterated.
        """
        with self._consuming():
            closed = asyncio.ensure_future(self._closed.wait())
            try:
                while True:
                    while self._pending:
                        yield self._pending.popleft()
                        if self._closed.is_set():
                            return
                    if self._closed.is_set():
                        return
                    await self._step(closed)
            finally:
                closed.cancel()
                if self._read_task is not None:
                    self._read_task.cancel()
                    self._read_task = None

    # -- the loop ----------------------------------------------------------------------------

    async def _step(self, closed: asyncio.Future[Any]) -> None:
        """Do the next thing that is due, or wait for bytes or the clock."""
        now = self.clock.now_ms()
        port = self._port
        if port is None:
            if now >= self._reopen_at_ms:
                await self._reopen()
            else:
                await self._wait(self._reopen_at_ms, closed)
            return
        if self._deadline_ms is not None and now >= self._deadline_ms:
            self._missed(now)
            return
        query = self._query
        if query is not None and now >= self._next_poll_ms:
            await self._ask(port, query, now)
            return
        if self._read_task is None:
            self._read_task = asyncio.ensure_future(port.read())
        wake = [self._deadline_ms] if self._deadline_ms is not None else []
        if self._query is not None:
            wake.append(self._next_poll_ms)
        reader = self._read_task
        await self._wait(min(wake) if wake else None, closed, reader)
        if self._closed.is_set() or not reader.done():
            return
        self._read_task = None
        try:
            data = reader.result()
        except DriverIOError as exc:
            await self._drop_port(exc.reason)
            return
        self._received(data)

    async def _wait(
        self,
        until_ms: int | None,
        closed: asyncio.Future[Any],
        reader: asyncio.Future[bytes] | None = None,
    ) -> None:
        """Wait until the clock reaches ``until_ms``, bytes arrive, or the driver closes."""
        waiters: set[asyncio.Future[Any]] = {closed}
        if reader is not None:
            waiters.add(reader)
        sleeper = None
        if until_ms is not None:
            sleeper = asyncio.ensure_future(self.clock.sleep_until(until_ms))
            waiters.add(sleeper)
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if sleeper is not None:
                sleeper.cancel()

    async def _ask(self, port: SerialPort, query: bytes, now: int) -> None:
        try:
            await port.write(query)
        except DriverIOError as exc:
            await self._drop_port(exc.reason)
            return
        self._deadline_ms = now + round(self.config.timeout_s * 1000)
        interval_ms = round(self.config.interval_s * 1000)
        self._next_poll_ms += interval_ms
        if self._next_poll_ms <= now:
            self._next_poll_ms = now + interval_ms

    def _received(self, data: bytes) -> None:
        now = self.clock.now_ms()
        for frame in self._parser.feed(data):
            values = self._values(frame)
            if values is None:
                continue
            event = self.health.success(now)
            if event is not None:
                _LOG.info("%s answers again", self.config.device_id)
                self._pending.append(event)
            self._backoff_s = _FIRST_BACKOFF_S
            self._since_good = self._parser.stats.copy()
            if self._query is not None:
                report = self._deadline_ms is not None  # the answer to our query
                self._deadline_ms = None
            else:
                self._deadline_ms = now + round(self.config.timeout_s * 1000)
                report = now >= self._next_sample_ms
            if report and now >= self._warm_at_ms:
                self._pending.append(Sample(self.config.device_id, now, values))
                if self._query is None:
                    self._schedule_next_sample(now)

    def _schedule_next_sample(self, now: int) -> None:
        interval_ms = round(self.config.interval_s * 1000)
        self._next_sample_ms += interval_ms
        if self._next_sample_ms <= now:
            self._next_sample_ms = now + interval_ms

    def _missed(self, now: int) -> None:
        stats = self._parser.stats
        kind = stats.worst_since(self._since_good)
        reason = f"no valid frame within {self.config.timeout_s:g} s"
        detail = stats.describe_since(self._since_good)
        if detail:
            reason += f" ({detail} since the last one; last: {self._parser.last_error})"
        self._fail(now, kind, reason)
        if self._query is None:
            self._deadline_ms = now + round(self.config.timeout_s * 1000)
        else:
            self._deadline_ms = None

    def _fail(self, now: int, kind: str, reason: str) -> None:
        event = self.health.failure(now, kind, reason)
        if event is not None:
            _LOG.warning("%s faulted: %s", self.config.device_id, reason)
            self._pending.append(event)

    # -- the port ----------------------------------------------------------------------------

    async def _connect(self) -> None:
        config = self.config
        port = SerialPort(
            config.port, SerialSettings(baudrate=config.baudrate), owner=config.device_id
        )
        await port.open()
        try:
            for command in self._setup_commands():
                await port.write(command)
        except DriverIOError:
            await port.aclose()
            raise
        if self._closed.is_set():  # closed while opening
            await port.aclose()
            return
        self._parser.clear()
        self._port = port
        now = self.clock.now_ms()
        self._warm_at_ms = now + round(config.warmup_s * 1000)
        self._next_poll_ms = now
        self._since_good = self._parser.stats.copy()
        self._deadline_ms = (
            None if self._query is not None else now + round(config.timeout_s * 1000)
        )

    async def _reopen(self) -> None:
        try:
            await self._connect()
        except DriverIOError as exc:
            self._schedule_reopen(exc.reason)
            return
        self.reopens += 1
        _LOG.info("%s: reopened %s", self.config.device_id, self.config.port)

    async def _drop_port(self, reason: str) -> None:
        _LOG.info("%s: port %s failed: %s", self.config.device_id, self.config.port, reason)
        await self._release_port()
        self._deadline_ms = None
        self._schedule_reopen(reason)

    def _schedule_reopen(self, reason: str) -> None:
        now = self.clock.now_ms()
        self._fail(now, "io", reason)
        self._reopen_at_ms = now + round(self._backoff_s * 1000)
        self._backoff_s = min(self._backoff_s * 2, self.config.reconnect_max_s)

    async def _release_port(self) -> None:
        if self._read_task is not None:
            self._read_task.cancel()
            self._read_task = None
        port, self._port = self._port, None
        if port is not None:
            await port.aclose()


class Pms5003Driver(SerialSensorDriver[Pms5003Config, pms5003.Pms5003Frame]):
    """Plantower PMS5003: ``pm1``, ``pm25`` and ``pm10`` in µg/m³.

    In active mode the sensor streams a frame every 0.2-2.3 s and one per ``interval_s`` is
    reported; in passive mode the driver sends the read command every ``interval_s``.
    """

    type_key: ClassVar[str] = "pms5003"
    config_model: ClassVar[type[DriverConfig]] = Pms5003Config

    def __init__(self, config: Pms5003Config, *, clock: Clock) -> None:
        super().__init__(config, clock=clock, parser=pms5003.Pms5003Parser())

    def _setup_commands(self) -> tuple[bytes, ...]:
        if not self.config.set_mode:
            return ()
        return (pms5003.PASSIVE_MODE if self.config.mode == "passive" else pms5003.ACTIVE_MODE,)

    def _query_command(self) -> bytes | None:
        return pms5003.READ if self.config.mode == "passive" else None

    def _values(self, frame: pms5003.Pms5003Frame) -> dict[str, float] | None:
        return frame.values(self.config.particles)


class Mhz19Driver(SerialSensorDriver[Mhz19Config, mhz19.Mhz19Reply]):
    """Winsen MH-Z19 / MH-Z19B: ``co2`` in ppm (and ``temperature`` if configured)."""

    type_key: ClassVar[str] = "mhz19"
    config_model: ClassVar[type[DriverConfig]] = Mhz19Config

    def __init__(self, config: Mhz19Config, *, clock: Clock) -> None:
        super().__init__(config, clock=clock, parser=mhz19.Mhz19Parser())

    def _setup_commands(self) -> tuple[bytes, ...]:
        if self.config.abc is None:
            return ()
        return (mhz19.ABC_ON if self.config.abc else mhz19.ABC_OFF,)

    def _query_command(self) -> bytes | None:
        return mhz19.READ_CO2

    def _values(self, frame: mhz19.Mhz19Reply) -> dict[str, float] | None:
        reading = frame.reading()
        if reading is None:
            return None
        values = {"co2": float(reading.co2_ppm)}
        if self.config.temperature:
            values["temperature"] = float(reading.temperature_c)
        return values
