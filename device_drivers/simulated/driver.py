"""The simulated driver: plays device models and a scenario on the injected clock."""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import AsyncGenerator
from typing import Any, ClassVar

from device_drivers.base import Driver, DriverConfig, DriverOutput
from device_drivers.clock import Clock, ScaledClock, SystemClock
from device_drivers.errors import DriverConfigError
from device_drivers.simulated.config import SimulatedConfig, check_incidents
from device_drivers.simulated.devices import (
    CardPool,
    DeviceModel,
    SimContext,
    TempHumidityModel,
    create_model,
)
from device_drivers.simulated.scenario import (
    Scenario,
    ScenarioError,
    SmokeIncident,
    load_scenario,
)

__all__ = ["SimulatedDriver"]

_LOG = logging.getLogger(__name__)
# On a real-time clock, routine work (telemetry ticks, random activity) waits for the next
# multiple of this many milliseconds, so 200 sensors at 1 Hz wake the event loop 20 times a
# second instead of 200.  Outputs keep their exact timestamps; incidents (alarms) are never held.
ROUTINE_QUANTUM_MS = 50


class SimulatedDriver(Driver[SimulatedConfig]):
    """Realistic, seeded simulators of every device family, driven by a scenario.

    Outputs come in non-decreasing time order and are identical for the same seed, devices,
    scenario and clock.  Incidents for devices this driver does not have are ignored, so one
    scenario can be given to every gateway of a demo.
    """

    type_key: ClassVar[str] = "simulated"
    config_model: ClassVar[type[DriverConfig]] = SimulatedConfig

    def __init__(self, config: SimulatedConfig, *, clock: Clock) -> None:
        super().__init__(config, clock=clock)
        self._closed = asyncio.Event()
        # What a wait on a real-time clock awaits; aclose() resolves it.
        self._waiter: asyncio.Future[None] | None = None
        # (due ms, position in the config, model): the position breaks ties deterministically.
        self._heap: list[tuple[int, int, DeviceModel]] = []
        # Due times of incident actions, which no quantum may delay (entries already run stay
        # until the heap's head passes them).
        self._urgent: list[int] = []

    @property
    def device_ids(self) -> tuple[str, ...]:
        """Ids of the simulated devices, in config order."""
        return tuple(device.id for device in self.config.devices)

    def _scenario(self) -> Scenario:
        config = self.config
        if config.scenario_file is not None:
            try:
                scenario = load_scenario(config.scenario_file)
                check_incidents(scenario, config.devices)
            except ScenarioError as exc:
                raise DriverConfigError(config.id, "scenario_file", str(exc)) from exc
            return scenario
        return config.scenario or Scenario()

    async def open(self) -> None:
        """Build the device models and schedule the scenario's incidents.

        Telemetry and random activity start now.  Incidents are played at ``epoch + at`` even
        when that is before now, so that every gateway of a demo plays the whole scenario.

        Raises:
            DriverConfigError: if ``scenario_file`` cannot be loaded or does not fit the devices.
            RuntimeError: if the driver was closed.
        """
        if self._closed.is_set():
            msg = "a closed driver cannot be opened again"
            raise RuntimeError(msg)
        if self._opened:
            return
        config = self.config
        scenario = self._scenario()
        now = self.clock.now_ms()
        ctx = SimContext(
            seed=config.seed,
            tz=config.tzinfo,
            interval_ms=round(config.interval_s * 1000),
            cards=CardPool(config.seed, config.cards),
        )
        models = {spec.id: create_model(spec, ctx, now) for spec in config.devices}
        self._schedule_incidents(scenario, models, now)
        for order, model in enumerate(models.values()):
            due = model.next_due()
            if due is not None:
                self._heap.append((due, order, model))
                if not model.next_is_routine():
                    self._urgent.append(due)
        heapq.heapify(self._heap)
        heapq.heapify(self._urgent)
        self._opened = True

    def _schedule_incidents(
        self, scenario: Scenario, models: dict[str, DeviceModel], now: int
    ) -> None:
        epoch = now if scenario.epoch_ms is None else scenario.epoch_ms
        for index, incident in enumerate(scenario.incidents):
            start = epoch + round(incident.at * 1000)
            model = models.get(incident.device or "")
            heated: list[TempHumidityModel] = []
            heat_s = 0.0
            if isinstance(incident, SmokeIncident):
                heat_s = incident.duration
                for ref in incident.heat:
                    target = models.get(ref) if isinstance(ref, str) else None
                    if isinstance(target, TempHumidityModel):
                        heated.append(target)
            if model is None and not heated:
                continue  # another gateway's incident
            if start < now:
                # Gateways of a demo open a little after the shared epoch; they still play the
                # whole scenario, stamped with its own times, before anything newer.
                _LOG.debug(
                    "driver %s: incident %d (%s) is %d ms late; played at its scenario time",
                    self.config.id,
                    index,
                    incident.do,
                    now - start,
                )
            if model is not None:
                model.apply(incident, start)
            for target in heated:
                target.add_heat(start, heat_s)

    async def aclose(self) -> None:
        """Stop the simulation; a pending :meth:`outputs` iteration ends promptly.  Idempotent."""
        self._closed.set()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def outputs(self) -> AsyncGenerator[DriverOutput, None]:
        """Yield samples and events in time order, waiting on the clock, until closed.

        Raises:
            RuntimeError: if the driver is not open, or is already being iterated.
        """
        with self._consuming():
            closed = asyncio.ensure_future(self._closed.wait())
            try:
                while not self._closed.is_set():
                    if not self._heap:
                        # Every device is dead for good; stay quiet until closed, like real ones.
                        await closed
                        return
                    due, order, model = self._heap[0]
                    if due > self.clock.now_ms() and not await self._wait_until(
                        self._wake_at(due, model), closed
                    ):
                        return
                    heapq.heappop(self._heap)
                    batch = model.run_due(due)
                    upcoming = model.next_due()
                    if upcoming is not None:
                        heapq.heappush(self._heap, (upcoming, order, model))
                        if not model.next_is_routine():
                            heapq.heappush(self._urgent, upcoming)
                    for output in batch:
                        yield output
                        if self._closed.is_set():
                            return
            finally:
                closed.cancel()

    def _wake_at(self, due: int, model: DeviceModel) -> int:
        """When to wake for the heap's head, due at ``due``: then, or a little later."""
        if not isinstance(self.clock, SystemClock | ScaledClock) or not model.next_is_routine():
            return due
        wake = -(-due // ROUTINE_QUANTUM_MS) * ROUTINE_QUANTUM_MS
        urgent = self._urgent
        while urgent and urgent[0] < due:  # before the head: already run
            heapq.heappop(urgent)
        return min(wake, urgent[0]) if urgent else wake

    async def _wait_until(self, due_ms: int, closed: asyncio.Future[Any]) -> bool:
        """Wait until the clock reaches ``due_ms``; ``False`` if the driver closed first."""
        clock = self.clock
        if isinstance(clock, SystemClock | ScaledClock):
            return await self._wait_real_time(clock.delay_s(due_ms))
        sleeper = asyncio.ensure_future(self.clock.sleep_until(due_ms))
        try:
            done, _ = await asyncio.wait({sleeper, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()  # no-op when it finished
        if sleeper in done:
            sleeper.result()
            return True
        return False

    async def _wait_real_time(self, delay_s: float) -> bool:
        """Wait ``delay_s`` real seconds; ``False`` if the driver closed first.

        One timer and one future: with a device due every few milliseconds, a task and an
        ``asyncio.wait`` per wait would cost the gateway more CPU than its readings.
        """
        if delay_s > 0 and not self._closed.is_set():
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter
            timer = loop.call_later(delay_s, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return not self._closed.is_set()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
