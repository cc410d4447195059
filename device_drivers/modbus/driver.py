"""The Modbus RTU driver: polls every device of one bus in turn and decodes its register map."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, Coroutine
from typing import Any, ClassVar

from device_drivers.base import DeviceEvent, Driver, DriverConfig, DriverOutput, Sample
from device_drivers.clock import Clock
from device_drivers.errors import DriverIOError
from device_drivers.health import DeviceHealth
from device_drivers.modbus.bus import BusLostError, ModbusBus, ReadError
from device_drivers.modbus.config import ModbusConfig, ModbusDevice
from device_drivers.modbus.profiles import ReadBlock, ValueSpec, decode_block, plan_reads

__all__ = ["ModbusRtuDriver"]

_LOG = logging.getLogger(__name__)

_RECONNECT_FIRST_S = 0.5


class _Debounce:
    """The settled state of an alarm input: it changes after ``polls`` agreeing polls.

    The state starts clear, so an alarm present at start-up is reported once it is confirmed,
    and a clear input at start-up reports nothing.
    """

    def __init__(self, polls: int) -> None:
        self.active = False
        self._polls = polls
        self._streak = 0

    def update(self, active: bool) -> bool:
        """Feed one poll; ``True`` when the settled state has just changed."""
        if active == self.active:
            self._streak = 0
            return False
        self._streak += 1
        if self._streak < self._polls:
            return False
        self.active = active
        self._streak = 0
        return True


@dataclasses.dataclass(slots=True)
class _Device:
    """What the driver keeps for one device on the bus."""

    config: ModbusDevice
    specs: tuple[ValueSpec, ...]
    blocks: tuple[ReadBlock, ...]
    interval_ms: int
    health: DeviceHealth
    debounce: dict[str, _Debounce]
    due_ms: int = 0
    polls: int = 0

    @property
    def id(self) -> str:
        return self.config.id


class ModbusRtuDriver(Driver[ModbusConfig]):
    """Reads temperature/humidity sensors, digital-input modules and other Modbus RTU devices.

    All devices of one bus share one pymodbus client and are polled one after another, each at
    its own interval, with ``request_gap_s`` of silence between requests.  A device that does
    not answer (or answers garbage, or refuses the request) is counted on its own
    :class:`DeviceHealth` and reports ``device.fault`` after ``failures_to_fault`` failed polls
    and ``device.recovered`` when it answers again; the others carry on.  When the port itself
    goes away, every failed reconnect attempt counts against every device, reconnects back off
    up to ``reconnect_max_s``, and devices recover as they answer again.

    Alarm inputs (values with an ``event``) are debounced across polls; the reading carries the
    settled state, and ``alarm.*`` ``{active}`` events are emitted when it changes.
    """

    type_key: ClassVar[str] = "modbus_rtu"
    config_model: ClassVar[type[DriverConfig]] = ModbusConfig

    def __init__(self, config: ModbusConfig, *, clock: Clock) -> None:
        super().__init__(config, clock=clock)
        self._bus = ModbusBus(
            config.port,
            config.line,
            timeout_s=config.timeout_s,
            retries=config.retries,
            owner=config.id,
        )
        self._devices = tuple(self._make_device(spec) for spec in config.devices)
        self._by_id = {device.id: device for device in self._devices}
        self._closed = asyncio.Event()
        self._bus_free_ms = 0
        self._reconnect_s = _RECONNECT_FIRST_S

    def _make_device(self, spec: ModbusDevice) -> _Device:
        specs = spec.value_specs()
        interval_s = spec.poll_interval_s or self.config.poll_interval_s
        return _Device(
            config=spec,
            specs=specs,
            blocks=plan_reads(specs),
            interval_ms=max(1, round(interval_s * 1000)),
            health=DeviceHealth(spec.id, failures_to_fault=self.config.failures_to_fault),
            debounce={s.name: _Debounce(spec.debounce_polls) for s in specs if s.event},
        )

    @property
    def device_ids(self) -> tuple[str, ...]:
        """Ids of the devices on the bus, in config order."""
        return tuple(device.id for device in self._devices)

    def value_units(self, device_id: str) -> dict[str, str]:
        """Unit of each value of a device (empty for flags), from its register map."""
        return {spec.name: spec.unit for spec in self._by_id[device_id].specs}

    def errors(self, device_id: str) -> dict[str, int]:
        """Counts of what went wrong with a device.

        Failed polls by cause (``timeout``, ``noise``, ``exception``, ``protocol``, ``port``),
        and ``garbled``: every garbled answer (bad CRC, line noise), including those a retry
        made up for.
        """
        return dict(self._by_id[device_id].health.errors)

    def polls(self, device_id: str) -> int:
        """Successful polls of a device since open."""
        return self._by_id[device_id].polls

    async def open(self) -> None:
        """Open the port.

        Raises:
            DriverIOError: naming the port, if it cannot be opened.
            RuntimeError: if the driver was closed.
        """
        if self._closed.is_set():
            msg = "a closed driver cannot be opened again"
            raise RuntimeError(msg)
        if self._opened:
            return
        await self._bus.connect()
        now = self.clock.now_ms()
        for device in self._devices:
            device.due_ms = now
        self._opened = True

    async def aclose(self) -> None:
        """Stop polling and release the port; a pending :meth:`outputs` ends.  Idempotent."""
        self._closed.set()
        self._bus.close()

    async def outputs(self) -> AsyncGenerator[DriverOutput, None]:
        """Poll the devices and yield readings and events until closed.

        Raises:
            RuntimeError: if the driver is not open, or is already being iterated.
        """
        with self._consuming():
            closed = asyncio.ensure_future(self._closed.wait())
            try:
                while not self._closed.is_set():
                    if not self._bus.connected:
                        batch, wait_ms = await self._reconnect()
                        for output in batch:
                            yield output
                        if wait_ms and not await self._wait_until(
                            self.clock.now_ms() + wait_ms, closed
                        ):
                            return
                        continue
                    device = min(self._devices, key=lambda d: d.due_ms)
                    start = max(device.due_ms, self._bus_free_ms)
                    if start > self.clock.now_ms() and not await self._wait_until(start, closed):
                        return
                    polled = await self._unless_closed(self._poll(device), closed)
                    if polled is None:
                        return
                    now = self.clock.now_ms()
                    device.due_ms = max(device.due_ms + device.interval_ms, now)
                    self._bus_free_ms = now + round(self.config.request_gap_s * 1000)
                    for output in polled:
                        yield output
            finally:
                closed.cancel()

    async def _reconnect(self) -> tuple[list[DriverOutput], int]:
        """One attempt to open the port again: outputs, and how long to wait before the next."""
        if self._closed.is_set():
            return [], 0
        try:
            await self._bus.connect()
        except DriverIOError as exc:
            reason = exc.reason
            now = self.clock.now_ms()
            outputs: list[DriverOutput] = []
            for device in self._devices:
                event = device.health.failure(now, "port", reason)
                if event is not None:
                    outputs.append(event)
            wait_ms = round(self._reconnect_s * 1000)
            _LOG.warning(
                "%s: %s; next attempt in %.1f s", self.config.id, reason, self._reconnect_s
            )
            self._reconnect_s = min(self._reconnect_s * 2, self.config.reconnect_max_s)
            return outputs, wait_ms
        _LOG.info("%s: %s open again", self.config.id, self.config.port)
        self._reconnect_s = _RECONNECT_FIRST_S
        now = self.clock.now_ms()
        for device in self._devices:
            device.due_ms = min(device.due_ms, now)
        return [], 0

    async def _poll(self, device: _Device) -> list[DriverOutput]:
        """Read every block of one device; never raises for the device's or the bus's faults."""
        unit = device.config.unit
        values: dict[str, float] = {}
        health = device.health
        try:
            for index, block in enumerate(device.blocks):
                if index:
                    await self._gap()
                result = await self._bus.read(unit, block.function, block.address, block.count)
                if result.garbled:
                    health.errors["garbled"] += result.garbled
                values.update(decode_block(block, result.words))
        except ReadError as exc:
            if exc.garbled:
                health.errors["garbled"] += exc.garbled
            return self._failed(device, exc.kind, exc.reason)
        except BusLostError as exc:
            return self._failed(device, "port", str(exc))
        except ValueError as exc:  # a value that does not decode (e.g. a float32 NaN)
            return self._failed(device, "protocol", str(exc))
        return self._answered(device, values)

    def _answered(self, device: _Device, values: dict[str, float]) -> list[DriverOutput]:
        now = self.clock.now_ms()
        device.polls += 1
        outputs: list[DriverOutput] = []
        recovered = device.health.success(now)
        if recovered is not None:
            outputs.append(recovered)
        for spec in device.specs:
            debounce = device.debounce.get(spec.name)
            if debounce is None or spec.event is None:
                continue
            if debounce.update(values[spec.name] != 0):
                outputs.append(DeviceEvent(device.id, now, spec.event, {"active": debounce.active}))
            values[spec.name] = 1.0 if debounce.active else 0.0
        outputs.append(Sample(device.id, now, values))
        return outputs

    def _failed(self, device: _Device, kind: str, reason: str) -> list[DriverOutput]:
        _LOG.debug("%s/%s: %s: %s", self.config.id, device.id, kind, reason)
        event = device.health.failure(self.clock.now_ms(), kind, reason)
        return [] if event is None else [event]

    async def _gap(self) -> None:
        gap_ms = round(self.config.request_gap_s * 1000)
        if gap_ms:
            await self.clock.sleep_until(self.clock.now_ms() + gap_ms)

    async def _unless_closed(
        self, poll: Coroutine[Any, Any, list[DriverOutput]], closed: asyncio.Future[Any]
    ) -> list[DriverOutput] | None:
        """Run one poll, abandoned (``None``) if the driver closes first.

        Closing the client does not wake a request pymodbus is waiting on; without this, a
        close would wait out the request's timeout and retries.
        """
        task = asyncio.ensure_future(poll)
        try:
            await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        return None if task.cancelled() else task.result()

    async def _wait_until(self, due_ms: int, closed: asyncio.Future[Any]) -> bool:
        """Wait until the clock reaches ``due_ms``; ``False`` if the driver closed first."""
        sleeper = asyncio.ensure_future(self.clock.sleep_until(due_ms))
        try:
            done, _ = await asyncio.wait({sleeper, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
        if sleeper in done:
            sleeper.result()
            return True
        return False
