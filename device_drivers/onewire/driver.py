"""The DS18B20 driver: reads each sensor's ``w1_slave`` file in a worker thread, on the clock.

A read blocks for the conversion (up to 750 ms at 12 bits), so it runs in
:func:`asyncio.to_thread`, one sensor after another (the bus does one conversion at a time).
Every failed read (file gone, I/O error, CRC error, power-on value, all-zero scratchpad,
out of range, no answer in time) is one failure of that sensor's
:class:`~device_drivers.health.DeviceHealth`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, ClassVar

from device_drivers.base import DeviceEvent, Driver, DriverConfig, DriverOutput, Sample
from device_drivers.clock import Clock
from device_drivers.errors import DriverIOError
from device_drivers.health import DeviceHealth
from device_drivers.onewire.config import Ds18b20Config, Ds18b20Sensor
from device_drivers.onewire.w1_therm import W1Error, parse_w1_slave

__all__ = ["Ds18b20Driver"]

_LOG = logging.getLogger(__name__)
_MAX_FILE_BYTES = 4096  # w1_slave is under 100 bytes; anything longer is not one


def _read_w1_slave(path: Path) -> str:
    with path.open("rb") as file:
        return file.read(_MAX_FILE_BYTES).decode("ascii", errors="replace")


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Collect the outcome of a read nobody waits for any more, so it is never reported."""
    if not future.cancelled():
        future.exception()


class Ds18b20Driver(Driver[Ds18b20Config]):
    """DS18B20 temperature sensors on a 1-Wire bus, through the kernel's ``w1_therm`` sysfs files.

    Each sensor is its own device: it reports ``temperature`` in °C every ``interval_s``, and
    faults and recovers on its own.
    """

    type_key: ClassVar[str] = "ds18b20"
    config_model: ClassVar[type[DriverConfig]] = Ds18b20Config

    def __init__(self, config: Ds18b20Config, *, clock: Clock) -> None:
        super().__init__(config, clock=clock)
        self.health = {
            sensor.device: DeviceHealth(sensor.device, failures_to_fault=config.failures_to_fault)
            for sensor in config.sensors
        }
        self._closed = asyncio.Event()
        # Reads that outlived read_timeout_s and still occupy a worker thread, by 1-Wire id.
        self._hung: dict[str, asyncio.Future[str]] = {}

    @property
    def device_ids(self) -> tuple[str, ...]:
        """One device per sensor, in config order."""
        return tuple(sensor.device for sensor in self.config.sensors)

    def w1_slave_path(self, sensor: Ds18b20Sensor) -> Path:
        """Where ``sensor`` is read."""
        return self.config.root / sensor.w1_id / "w1_slave"

    async def open(self) -> None:
        """Check that the bus is there; sensors missing from it fault on their own later.

        Raises:
            DriverIOError: if ``root`` is not a directory (no 1-Wire bus master).
            RuntimeError: if the driver was closed.
        """
        if self._closed.is_set():
            msg = "a closed driver cannot be opened again"
            raise RuntimeError(msg)
        if self._opened:
            return
        root = self.config.root
        if not await asyncio.to_thread(root.is_dir):
            raise DriverIOError(
                self.config.id, f"no 1-Wire bus at {root} (is the w1-gpio overlay loaded?)"
            )
        self._opened = True

    async def aclose(self) -> None:
        """Stop reading; a pending :meth:`outputs` iteration ends promptly.  Idempotent.

        A read already running in a worker thread finishes on its own; its result is dropped.
        """
        self._closed.set()

    async def outputs(self) -> AsyncGenerator[DriverOutput, None]:
        """Read every sensor each ``interval_s`` and yield samples and health events.

        Raises:
            RuntimeError: if the driver is not open, or is already being iterated.
        """
        with self._consuming():
            closed = asyncio.ensure_future(self._closed.wait())
            interval_ms = round(self.config.interval_s * 1000)
            due = self.clock.now_ms()
            try:
                while not self._closed.is_set():
                    if self.clock.now_ms() < due:
                        await self._wait({closed}, due)
                        continue
                    for sensor in self.config.sensors:
                        for output in await self._read(sensor, closed):
                            yield output
                        if self._closed.is_set():
                            return
                    due += interval_ms
                    now = self.clock.now_ms()
                    if due <= now:
                        due = now + interval_ms
            finally:
                closed.cancel()

    async def _wait(self, futures: set[asyncio.Future[Any]], until_ms: int) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep_until(until_ms))
        try:
            await asyncio.wait({*futures, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()

    async def _read(self, sensor: Ds18b20Sensor, closed: asyncio.Future[Any]) -> list[DriverOutput]:
        """Read one sensor; the outputs are a sample or a failure, and maybe a health event."""
        try:
            text = await self._fetch(sensor, closed)
            if text is None:
                return []  # closed while reading
            celsius = self._check(sensor, text)
        except W1Error as exc:
            return self._failed(sensor, exc.kind, exc.reason)
        now = self.clock.now_ms()
        outputs: list[DriverOutput] = []
        event = self.health[sensor.device].success(now)
        if event is not None:
            _LOG.info("%s answers again", sensor.device)
            outputs.append(event)
        outputs.append(
            Sample(sensor.device, now, {"temperature": round(celsius + sensor.offset_c, 4)})
        )
        return outputs

    async def _fetch(self, sensor: Ds18b20Sensor, closed: asyncio.Future[Any]) -> str | None:
        """The content of the sensor's ``w1_slave``; ``None`` if the driver closed meanwhile.

        Raises:
            W1Error: ``missing``, ``io`` or ``timeout``.
        """
        hung = self._hung.pop(sensor.w1_id, None)
        if hung is not None and not hung.done():
            self._hung[sensor.w1_id] = hung
            raise W1Error("timeout", f"{sensor.w1_id}: the previous read has not returned yet")
        timeout_s = self.config.read_timeout_s
        read = asyncio.ensure_future(asyncio.to_thread(_read_w1_slave, self.w1_slave_path(sensor)))
        await self._wait({read, closed}, self.clock.now_ms() + round(timeout_s * 1000))
        if not read.done():
            read.add_done_callback(_retrieve)
            self._hung[sensor.w1_id] = read
            if self._closed.is_set():
                return None
            raise W1Error("timeout", f"{sensor.w1_id}: no answer within {timeout_s:g} s")
        try:
            return read.result()
        except FileNotFoundError:
            raise W1Error("missing", f"{sensor.w1_id} is not on the 1-Wire bus") from None
        except OSError as exc:
            raise W1Error("io", f"reading {sensor.w1_id}: {exc.strerror or exc}") from None

    def _check(self, sensor: Ds18b20Sensor, text: str) -> float:
        """The temperature in °C, before the offset.

        Raises:
            W1Error: the content is malformed or damaged, or the value is impossible.
        """
        try:
            celsius = parse_w1_slave(text).celsius
        except W1Error as exc:
            raise W1Error(exc.kind, f"{sensor.w1_id}: {exc.reason}") from None
        if not self.config.min_c <= celsius <= self.config.max_c:
            raise W1Error(
                "range",
                f"{sensor.w1_id}: {celsius:g} °C is outside "
                f"{self.config.min_c:g}..{self.config.max_c:g} °C",
            )
        return celsius

    def _failed(self, sensor: Ds18b20Sensor, kind: str, reason: str) -> list[DriverOutput]:
        _LOG.debug("%s: %s", sensor.device, reason)
        event: DeviceEvent | None = self.health[sensor.device].failure(
            self.clock.now_ms(), kind, reason
        )
        if event is None:
            return []
        _LOG.warning("%s faulted: %s", sensor.device, reason)
        return [event]
