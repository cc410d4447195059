"""The GPIO driver: debounced inputs and relay outputs through gpiozero, on the injected clock.

gpiozero calls its callbacks in its own threads; they only hand the pin's index to the event
loop (``call_soon_threadsafe``).  The driver then debounces on the clock: a change counts once
the pin has been steady for ``bounce_ms`` (capped at ten times that for a pin that chatters),
and it reads the pin's level at that moment, so a burst of bounces gives one event, a glitch
that returns to the old level gives none, and an edge gpiozero's own ``bounce_time`` swallowed
is not missed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import importlib.metadata
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any, ClassVar

import gpiozero  # type: ignore[import-untyped]
import gpiozero.exc  # type: ignore[import-untyped]

from device_drivers.base import DeviceEvent, Driver, DriverConfig, DriverOutput, Sample
from device_drivers.clock import Clock
from device_drivers.errors import DriverConfigError, DriverIOError
from device_drivers.gpio.config import GpioConfig, GpioInput, GpioOutput, InputKind

__all__ = ["GpioDriver"]

_LOG = logging.getLogger(__name__)
_CHATTER_FACTOR = 10  # a pin that never settles is read at most this many bounce times late
_MAX_PULSE_S = 3_600.0
# Mistakes in the settings that gpiozero only finds when it claims the pin.
_CONFIG_ERRORS = (gpiozero.exc.PinError, gpiozero.exc.GPIOPinInUse, gpiozero.exc.GPIOPinMissing)
_VALUE_NAMES = {InputKind.DOOR_CONTACT: "door_open", InputKind.LEAK_PROBE: "water_leak"}


@dataclasses.dataclass(slots=True)
class _Input:
    spec: GpioInput
    device: Any  # gpiozero.DigitalInputDevice
    reported: bool = False  # door open / button pressed / leak, as last reported
    settle_at_ms: int | None = None  # when to read the pin after a burst of edges
    burst_ms: int = 0  # first edge of the burst: the event's time

    def condition(self) -> bool:
        """The pin's meaning now: door open, button pressed, or leak."""
        active = bool(self.device.is_active)
        if self.spec.kind is InputKind.DOOR_CONTACT:
            active = not active  # a closed contact is a closed door
        return active != self.spec.invert


@dataclasses.dataclass(slots=True)
class _Output:
    spec: GpioOutput
    device: Any  # gpiozero.OutputDevice
    pulse: asyncio.Task[None] | None = None


def _load_factory(name: str) -> Any:
    for entry_point in importlib.metadata.entry_points(group="gpiozero_pin_factories"):
        if entry_point.name == name:
            return entry_point.load()()
    msg = f"gpiozero pin factory {name!r} is not installed"
    raise LookupError(msg)


class GpioDriver(Driver[GpioConfig]):
    """Door contacts, exit buttons and leak probes on GPIO inputs; relays on GPIO outputs.

    Outputs: ``door.contact {open, door}`` and the reading ``door_open`` (0/1);
    ``door.exit_request {door}``; ``alarm.water_leak {active}`` and the reading ``water_leak``
    (0/1).  At open each door contact and leak probe reports its state as a reading, and a leak
    already present is reported as ``alarm.water_leak``.  Relays are driven with
    :meth:`set_output` and :meth:`pulse_output`.

    Args:
        config: the settings.
        clock: time for timestamps, debouncing and pulses.
        pin_factory: a gpiozero pin factory to use instead of the one ``config`` names (tests
            pass a ``MockFactory`` here).
    """

    type_key: ClassVar[str] = "gpio"
    config_model: ClassVar[type[DriverConfig]] = GpioConfig

    def __init__(self, config: GpioConfig, *, clock: Clock, pin_factory: Any = None) -> None:
        super().__init__(config, clock=clock)
        self.pin_factory: Any = pin_factory
        self._own_factory = False
        self._inputs: list[_Input] = []
        self._outputs: dict[str, _Output] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        self._closed = asyncio.Event()
        self._pending: collections.deque[DriverOutput] = collections.deque()
        self._heartbeat_ms: int | None = None
        if config.heartbeat_s is not None:
            self._heartbeat_ms = round(config.heartbeat_s * 1000)
        self._next_heartbeat_ms: int | None = None

    @property
    def device_ids(self) -> tuple[str, ...]:
        """Devices of the inputs, in config order, each once."""
        return tuple(dict.fromkeys(spec.device for spec in self.config.inputs))

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the relay outputs."""
        return tuple(out.name for out in self.config.outputs)

    # -- open and close ----------------------------------------------------------------------

    async def open(self) -> None:
        """Claim the pins, set the relays to their initial values, read the inputs' states.

        Raises:
            DriverConfigError: if gpiozero rejects a pin (no such pin, already in use, fixed
                pull resistor).
            DriverIOError: if the pin factory cannot be loaded or the pins cannot be claimed.
            RuntimeError: if the driver was closed.
        """
        if self._closed.is_set():
            msg = "a closed driver cannot be opened again"
            raise RuntimeError(msg)
        if self._opened:
            return
        self._loop = asyncio.get_running_loop()
        try:
            self._claim_pins()
        except BaseException:
            self._release_pins()
            raise
        now = self.clock.now_ms()
        for inp in self._inputs:
            inp.reported = inp.condition()
            if inp.spec.kind is InputKind.LEAK_PROBE and inp.reported:
                self._pending.append(self._change_event(inp, now))
        self._pending.extend(self._readings(now))
        self._opened = True

    def _claim_pins(self) -> None:
        config = self.config
        if self.pin_factory is None and config.pin_factory is not None:
            try:
                self.pin_factory = _load_factory(config.pin_factory)
            except Exception as exc:
                raise DriverIOError(config.id, f"pin factory {config.pin_factory}: {exc}") from exc
            self._own_factory = True
        for index, spec in enumerate(config.inputs):
            bounce = spec.bounce_ms / 1000 if spec.bounce_ms else None
            device = self._gpiozero(
                f"inputs.{index}.pin",
                functools.partial(
                    gpiozero.DigitalInputDevice,
                    spec.pin,
                    pull_up=spec.pull_up,
                    active_state=spec.active_state,
                    bounce_time=bounce,
                    pin_factory=self.pin_factory,
                ),
            )
            self._inputs.append(_Input(spec, device))
            callback = self._callback(index)
            device.when_activated = callback
            device.when_deactivated = callback
        for index, out in enumerate(config.outputs):
            device = self._gpiozero(
                f"outputs.{index}.pin",
                functools.partial(
                    gpiozero.OutputDevice,
                    out.pin,
                    active_high=out.active_high,
                    initial_value=out.initial_value,
                    pin_factory=self.pin_factory,
                ),
            )
            self._outputs[out.name] = _Output(out, device)

    def _gpiozero(self, field: str, make: Callable[[], Any]) -> Any:
        try:
            return make()
        except _CONFIG_ERRORS as exc:
            raise DriverConfigError(self.config.id, field, str(exc)) from exc
        except Exception as exc:
            raise DriverIOError(self.config.id, f"{field}: {exc}") from exc

    async def aclose(self) -> None:
        """Return relays to their initial values and release every pin.  Idempotent.

        A pending :meth:`outputs` iteration ends promptly.
        """
        self._closed.set()
        for out in self._outputs.values():
            if out.pulse is not None:
                out.pulse.cancel()
                out.pulse = None
        self._release_pins()

    def _release_pins(self) -> None:
        for inp in self._inputs:
            with contextlib.suppress(Exception):
                inp.device.when_activated = None
                inp.device.when_deactivated = None
            self._close_quietly(inp.device)
        for out in self._outputs.values():
            with contextlib.suppress(Exception):
                out.device.value = out.spec.initial_value
            self._close_quietly(out.device)
        self._inputs.clear()
        self._outputs.clear()
        if self._own_factory and self.pin_factory is not None:
            self._close_quietly(self.pin_factory)
            self.pin_factory = None
            self._own_factory = False

    @staticmethod
    def _close_quietly(thing: Any) -> None:
        try:
            thing.close()
        except Exception:  # noqa: BLE001 - closing must never fail
            _LOG.warning("closing %r failed", thing, exc_info=True)

    # -- relays ------------------------------------------------------------------------------

    def output_state(self, name: str) -> bool:
        """Whether relay ``name`` is on.

        Raises:
            KeyError: if there is no such output (or the driver is not open).
        """
        return bool(self._output(name).device.is_active)

    async def set_output(self, name: str, on: bool) -> None:
        """Switch relay ``name`` on or off; a running pulse of it is cancelled.

        Raises:
            KeyError: if there is no such output (or the driver is not open).
        """
        out = self._output(name)
        self._cancel_pulse(out)
        out.device.value = on

    async def pulse_output(self, name: str, seconds: float) -> None:
        """Switch relay ``name`` on now and off ``seconds`` later (e.g. unlock a strike for 5 s).

        Returns at once; the driver switches it off on its clock.  A new pulse restarts the time.

        Raises:
            KeyError: if there is no such output (or the driver is not open).
            ValueError: if ``seconds`` is not in (0, 3600].
        """
        if not 0 < seconds <= _MAX_PULSE_S:
            msg = f"pulse length must be in (0, {_MAX_PULSE_S:g}] seconds"
            raise ValueError(msg)
        out = self._output(name)
        self._cancel_pulse(out)
        out.device.on()
        until_ms = self.clock.now_ms() + round(seconds * 1000)
        out.pulse = asyncio.create_task(self._end_pulse(out, until_ms), name=f"pulse-{name}")

    async def _end_pulse(self, out: _Output, until_ms: int) -> None:
        await self.clock.sleep_until(until_ms)
        out.pulse = None
        out.device.off()

    def _output(self, name: str) -> _Output:
        out = self._outputs.get(name)
        if out is None:
            known = ", ".join(self.output_names) or "none"
            msg = f"no output named {name!r} is open (outputs: {known})"
            raise KeyError(msg)
        return out

    @staticmethod
    def _cancel_pulse(out: _Output) -> None:
        if out.pulse is not None:
            out.pulse.cancel()
            out.pulse = None

    # -- inputs ------------------------------------------------------------------------------

    def _callback(self, index: int) -> Callable[[], None]:
        def changed() -> None:  # in a gpiozero thread, or wherever the mock pin was driven
            loop = self._loop
            if loop is None or self._closed.is_set():
                return
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._edge, index)

        return changed

    def _edge(self, index: int) -> None:
        if index >= len(self._inputs):
            return  # released meanwhile
        inp = self._inputs[index]
        now = self.clock.now_ms()
        bounce_ms = round(inp.spec.bounce_ms)
        if inp.settle_at_ms is None:
            inp.burst_ms = now
        inp.settle_at_ms = min(now + bounce_ms, inp.burst_ms + _CHATTER_FACTOR * bounce_ms)
        self._wakeup.set()

    def input_states(self) -> dict[str, dict[str, bool]]:
        """What each device's inputs last reported: ``{device: {kind: state}}``.

        ``door_contact`` is true when the door is open, ``exit_button`` when pressed,
        ``leak_probe`` when leaking; a door state machine starts from these.
        """
        states: dict[str, dict[str, bool]] = {}
        for inp in self._inputs:
            states.setdefault(inp.spec.device, {})[inp.spec.kind.value] = inp.reported
        return states

    async def outputs(self) -> AsyncGenerator[DriverOutput, None]:
        """Yield the initial readings, then events and readings as inputs change, until closed.

        Raises:
            RuntimeError: if the driver is not open, or is already being iterated.
        """
        with self._consuming():
            closed = asyncio.ensure_future(self._closed.wait())
            if self._heartbeat_ms is not None:
                self._next_heartbeat_ms = self.clock.now_ms() + self._heartbeat_ms
            try:
                while True:
                    while self._pending:
                        yield self._pending.popleft()
                        if self._closed.is_set():
                            return
                    if self._closed.is_set():
                        return
                    self._wakeup.clear()
                    due = self._tick(self.clock.now_ms())
                    if not self._pending:
                        await self._wait(due, closed)
            finally:
                closed.cancel()

    def _tick(self, now: int) -> int | None:
        """Settle inputs and send heartbeats that are due; return when the next thing is."""
        self._settle(now)
        period, next_heartbeat = self._heartbeat_ms, self._next_heartbeat_ms
        if period is not None and next_heartbeat is not None and now >= next_heartbeat:
            self._heartbeat(now)
            next_heartbeat += period
            self._next_heartbeat_ms = next_heartbeat if next_heartbeat > now else now + period
        due = [inp.settle_at_ms for inp in self._inputs if inp.settle_at_ms is not None]
        if self._next_heartbeat_ms is not None:
            due.append(self._next_heartbeat_ms)
        return min(due) if due else None

    async def _wait(self, until_ms: int | None, closed: asyncio.Future[Any]) -> None:
        waiters: set[asyncio.Future[Any]] = {closed, asyncio.ensure_future(self._wakeup.wait())}
        if until_ms is not None:
            waiters.add(asyncio.ensure_future(self.clock.sleep_until(until_ms)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters - {closed}:
                waiter.cancel()

    def _settle(self, now: int) -> None:
        for inp in self._inputs:
            if inp.settle_at_ms is None or now < inp.settle_at_ms:
                continue
            inp.settle_at_ms = None
            state = inp.condition()
            if state == inp.reported:
                continue  # a glitch that came back, or a released exit button
            inp.reported = state
            if inp.spec.kind is InputKind.EXIT_BUTTON and not state:
                continue
            self._pending.append(self._change_event(inp, inp.burst_ms))
            value_name = _VALUE_NAMES.get(inp.spec.kind)
            if value_name is not None:
                values = {value_name: 1.0 if state else 0.0}
                self._pending.append(Sample(inp.spec.device, inp.burst_ms, values))

    def _heartbeat(self, now: int) -> None:
        for inp in self._inputs:
            if inp.settle_at_ms is None and inp.condition() != inp.reported:
                # An edge went missing (gpiozero's own debounce, a lost interrupt): read it now.
                _LOG.info("%s: %s changed without an edge", inp.spec.device, inp.spec.kind)
                inp.burst_ms = now
                inp.settle_at_ms = now
        self._settle(now)
        self._pending.extend(self._readings(now))

    def _readings(self, now: int) -> list[Sample]:
        """Each device's door_open / water_leak as last reported."""
        values: dict[str, dict[str, float]] = {}
        for inp in self._inputs:
            value_name = _VALUE_NAMES.get(inp.spec.kind)
            if value_name is not None:
                values.setdefault(inp.spec.device, {})[value_name] = 1.0 if inp.reported else 0.0
        return [Sample(device, now, device_values) for device, device_values in values.items()]

    @staticmethod
    def _change_event(inp: _Input, ts_ms: int) -> DeviceEvent:
        spec = inp.spec
        door = {} if spec.door is None else {"door": spec.door}
        if spec.kind is InputKind.DOOR_CONTACT:
            return DeviceEvent(spec.device, ts_ms, "door.contact", {"open": inp.reported, **door})
        if spec.kind is InputKind.EXIT_BUTTON:
            return DeviceEvent(spec.device, ts_ms, "door.exit_request", door)
        return DeviceEvent(spec.device, ts_ms, "alarm.water_leak", {"active": inp.reported})
