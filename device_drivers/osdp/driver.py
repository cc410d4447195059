"""The OSDP driver: the gateway as control panel of the readers on one RS-485 line."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import AsyncGenerator, Coroutine, Iterable
from typing import Any, ClassVar

from device_drivers.base import DeviceEvent, Driver, DriverConfig, DriverOutput
from device_drivers.clock import Clock
from device_drivers.doors import (
    Authorise,
    DoorLogic,
    DoorSettings,
    DoorState,
    KeypadBuffer,
    access_event,
    decide,
    pin_credential,
)
from device_drivers.errors import DriverIOError
from device_drivers.health import DeviceHealth
from device_drivers.osdp.bus import (
    CARD_FORMAT_RAW,
    CARD_FORMAT_WIEGAND,
    COMMAND_OUTPUT,
    EVENT_CARD_READ,
    EVENT_KEYPRESS,
    EVENT_MFG_REPLY,
    EVENT_NOTIFICATION,
    EVENT_STATUS,
    NOTIFY_COMMAND,
    NOTIFY_PD_STATUS,
    NOTIFY_SC_STATUS,
    OUTPUT_TEMPORARY_ON,
    STATUS_INPUT,
    STATUS_LOCAL,
    STATUS_REMOTE,
    BusReader,
    OsdpBus,
    OsdpEvent,
)
from device_drivers.osdp.config import OsdpConfig, OsdpReader
from device_drivers.osdp.phy import ReplyMonitor
from device_drivers.serial_port import SerialPort, SerialSettings
from device_drivers.wiegand.bits import (
    PARITY_FORMATS,
    check_parity,
    credential,
    format_name,
    from_msb_first,
)

__all__ = ["OsdpDriver"]

_LOG = logging.getLogger(__name__)

_Item = DriverOutput | BaseException | None  # None marks the end of the outputs

MAX_CARD_BITS = 256  # door.access carries at most 256 bits
RAW_FORMAT = "osdp_raw"  # a card read whose bits are not a Wiegand frame this driver knows
KEYPAD_FORMAT = "keypad"
# osdp_KEYPPAD key codes (reference §1.4); ASCII '*' and '#' are accepted too.
_KEYS = {0x7F: "*", 0x2A: "*", 0x0D: "#", 0x23: "#"} | {
    code: chr(code) for code in (*range(0x30, 0x3A), *range(0x41, 0x45))
}


@dataclasses.dataclass(eq=False)
class _Reader:
    """What the driver knows of one reader."""

    index: int
    config: OsdpReader
    health: DeviceHealth
    keypad: KeypadBuffer
    door: DoorLogic | None
    backoff_s: float
    replies: int = 0  # valid replies since the last check
    answered: bool = False  # any valid reply since the reader was last fine
    waiting: bool = False  # libosdp took it offline and waits (minutes) before trying again
    next_probe_ms: int = 0
    rex_active: bool = False
    conditions: dict[str, int] = dataclasses.field(default_factory=dict)  # fault -> since


class OsdpDriver(Driver[OsdpConfig]):
    """The gateway as OSDP control panel (through libosdp) of the readers on one line.

    * Card reads become ``door.access`` with ``format`` (``wiegand26``/``wiegand34`` when the
      bits are such a frame with good parity, else ``osdp_raw``) and ``bits``; PINs typed on
      the keypad and submitted with ``#`` become ``door.access`` with ``format: keypad``.  The
      raw credential (``<bits>:<hex>`` or ``pin:<digits>``, see
      :mod:`device_drivers.wiegand.bits`) is in :attr:`DeviceEvent.credential`, never in
      ``data``.
    * The reader's inputs drive a :class:`~device_drivers.doors.DoorLogic`: ``door.contact``,
      ``door.forced``, ``door.held_open``, ``door.exit_request``.  The door is assumed closed
      at start, since readers report inputs only when they change.
    * A reader that gives no valid reply for ``offline_after_s`` (silent, unplugged, a wrong
      secure-channel key, a dead port) gets one ``device.fault``, and ``device.recovered``
      once it is online again.  libosdp waits minutes before probing an offline reader again,
      so the driver re-probes it itself with a capped back-off.  Tamper and power failure
      reported by the reader are ``device.fault`` with reason ``tamper`` / ``power failure``
      and ``device.recovered`` when they clear.
    * With an ``authorise`` callable the driver decides locally: ``granted`` in
      ``door.access``, and on a grant the door's strike output is pulsed.

    Args:
        config: the driver's settings.
        clock: source of timestamps and of waiting.
        authorise: optional local access decision on the raw credential (see
            :data:`~device_drivers.doors.Authorise`).

    Attributes:
        monitor: the reply monitor, whose counters tell how noisy the line is.
        counters: card reads, PINs, events, port errors, strike commands and more.
    """

    type_key: ClassVar[str] = "osdp"
    config_model: ClassVar[type[DriverConfig]] = OsdpConfig
    tick_s: ClassVar[float] = 0.25  # how often readers' health and door timers are checked

    def __init__(
        self, config: OsdpConfig, *, clock: Clock, authorise: Authorise | None = None
    ) -> None:
        super().__init__(config, clock=clock)
        self.authorise = authorise
        self.counters: collections.Counter[str] = collections.Counter()
        self.monitor = ReplyMonitor()
        ticks_to_fault = max(1, round(config.offline_after_s / self.tick_s))
        self._readers = [
            _Reader(
                index=index,
                config=reader,
                health=DeviceHealth(reader.id, failures_to_fault=ticks_to_fault),
                keypad=KeypadBuffer(timeout_s=reader.keypad_timeout_s),
                door=_door_logic(reader),
                backoff_s=config.retry_min_s,
            )
            for index, reader in enumerate(config.readers)
        ]
        self._by_address = {reader.config.address: reader for reader in self._readers}
        self._by_id = {reader.config.id: reader for reader in self._readers}
        self._port = SerialPort(config.port, SerialSettings(baudrate=config.baud), owner=config.id)
        self._port_error: str | None = None
        self._bus: OsdpBus | None = None
        self._tx: asyncio.Queue[bytes] = asyncio.Queue()
        self._out: asyncio.Queue[_Item] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Future[bool]] = set()
        self._closed = False

    @property
    def device_ids(self) -> tuple[str, ...]:
        """The readers, in config order."""
        return tuple(reader.id for reader in self.config.readers)

    def health(self, device_id: str) -> DeviceHealth:
        """The health of one reader.

        Raises:
            KeyError: for a device this driver does not have.
        """
        return self._by_id[device_id].health

    # -- life cycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the port and start polling the readers.

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
        bus = OsdpBus(
            [
                BusReader(reader.id, reader.address, reader.scbk_bytes)
                for reader in self.config.readers
            ],
            loop=asyncio.get_running_loop(),
            on_event=self._on_event,
            on_tx=self._tx.put_nowait,
            on_failure=self._out.put_nowait,
            log_level=self.config.log_level,
        )
        try:
            bus.start()
        except BaseException:
            await self._port.aclose()
            raise
        self._bus = bus
        self._opened = True
        now = self.clock.now_ms()
        for reader in self._readers:
            reader.next_probe_ms = now + round(reader.backoff_s * 1000)
        self._tasks = [
            self._start(self._read_loop(), "read"),
            self._start(self._write_loop(), "write"),
            self._start(self._supervise(), "supervise"),
        ]

    async def aclose(self) -> None:
        """Stop polling and release the port; a pending :meth:`outputs` ends.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        bus, self._bus = self._bus, None
        try:
            if bus is not None:
                await asyncio.to_thread(bus.stop)
        finally:
            await self._port.aclose()
            self._out.put_nowait(None)

    async def outputs(self) -> AsyncGenerator[DriverOutput, None]:
        """Yield the readers' events until the driver is closed.

        Raises:
            RuntimeError: if the driver is not open or already being iterated.
            Exception: an unexpected failure inside the driver, re-raised so that the agent
                restarts it.
        """
        with self._consuming():
            while True:
                item = await self._out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

    async def unlock(self, device_id: str) -> bool:
        """Release a door as for a granted access (an operator's remote opening).

        The door's grant window opens and its strike output, if any, is pulsed.

        Returns:
            Whether the reader took the strike command (``False`` when it is offline or has
            no strike output).

        Raises:
            KeyError: for a device this driver does not have.
            RuntimeError: if the driver is not open.
        """
        reader = self._by_id[device_id]
        if self._bus is None:
            msg = "the driver is not open"
            raise RuntimeError(msg)
        now = self.clock.now_ms()
        if reader.door is not None:
            self._emit_all(reader.door.access(now, granted=True))
        pulse = self._pulse_strike(reader)
        return False if pulse is None else await pulse

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

        return asyncio.create_task(guarded(), name=f"osdp:{self.config.id}:{name}")

    def _emit(self, event: DeviceEvent | None) -> None:
        if event is not None:
            self._out.put_nowait(event)

    def _emit_all(self, events: Iterable[DeviceEvent]) -> None:
        for event in events:
            self._out.put_nowait(event)

    async def _read_loop(self) -> None:
        while True:
            try:
                data = await self._port.read()
            except DriverIOError as exc:
                await self._recover_port(exc)
                continue
            self._received(data)

    async def _write_loop(self) -> None:
        while True:
            data = await self._tx.get()
            if self._port_error is not None:
                self.counters["tx_dropped"] += 1
                continue
            try:
                await self._port.write(data)
            except DriverIOError:
                self.counters["tx_dropped"] += 1
                # Closing makes the reader's pending read fail, and the reader reopens.
                await self._port.aclose()

    async def _recover_port(self, error: DriverIOError) -> None:
        self._port_error = error.reason
        self.counters["port_errors"] += 1
        _LOG.warning("driver %s: %s; reopening", self.config.id, error.reason)
        await self._port.aclose()
        delay = self.config.retry_min_s
        while True:
            _drain(self._tx)
            await self.clock.sleep_until(self.clock.now_ms() + round(delay * 1000))
            try:
                await self._port.open()
            except DriverIOError as exc:
                self._port_error = exc.reason
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            break
        _drain(self._tx)
        self._port_error = None
        _LOG.info("driver %s: %s open again", self.config.id, self.config.port)
        now = self.clock.now_ms()
        for reader in self._readers:
            # Whatever libosdp is waiting for, try every reader that is not online at once.
            reader.backoff_s = self.config.retry_min_s
            reader.waiting = True
            reader.next_probe_ms = now

    async def _supervise(self) -> None:
        tick_ms = round(self.tick_s * 1000)
        due = self.clock.now_ms()
        while True:
            due = max(due + tick_ms, self.clock.now_ms())
            await self.clock.sleep_until(due)
            now = self.clock.now_ms()
            for reader in self._readers:
                self._check(reader, now)

    # -- health ---------------------------------------------------------------------------------

    def _check(self, reader: _Reader, now: int) -> None:
        bus = self._bus
        online = bus is not None and bus.is_online(reader.index)
        replied, reader.replies = reader.replies > 0, 0
        if online and replied and self._port_error is None:
            reader.answered = False
            reader.backoff_s = self.config.retry_min_s
            self._emit(reader.health.success(now))
        else:
            kind, reason = self._diagnose(reader, online=online)
            self._emit(reader.health.failure(now, kind, reason))
            if (
                bus is not None
                and not online
                and reader.waiting
                and now >= reader.next_probe_ms
                and self._port_error is None
            ):
                self.counters["reprobes"] += 1
                reader.waiting = False
                reader.next_probe_ms = now + round(reader.backoff_s * 1000)
                reader.backoff_s = min(reader.backoff_s * 2, self.config.retry_max_s)
                bus.reprobe(reader.index)
        if reader.door is not None:
            self._emit_all(reader.door.tick(now))
        reader.keypad.expire(now)

    def _diagnose(self, reader: _Reader, *, online: bool) -> tuple[str, str]:
        if self._port_error is not None:
            return "io", f"port failed: {self._port_error}"
        address = reader.config.address
        if not reader.answered or online:
            return "timeout", f"no reply from the reader at OSDP address {address}"
        if reader.config.scbk is not None:
            return "secure_channel", (
                f"the reader at OSDP address {address} answers but the secure channel "
                "cannot be established (wrong scbk?)"
            )
        return "offline", f"the reader at OSDP address {address} answers but does not come online"

    def _received(self, data: bytes) -> None:
        self.counters["rx_bytes"] += len(data)
        for reply in self.monitor.feed(data):
            reader = self._by_address.get(reply.address)
            if reader is None:
                self.counters["foreign_replies"] += 1
                continue
            reader.replies += 1
            reader.answered = True
        if self._bus is not None:
            self._bus.feed_rx(data)

    # -- libosdp events -------------------------------------------------------------------------

    def _on_event(self, index: int, event: OsdpEvent) -> None:
        if self._closed:
            return
        try:
            reader = self._readers[index]
            self._dispatch(reader, event, self.clock.now_ms())
        except Exception:  # noqa: BLE001 - a malformed event must not stop the driver
            self.counters["bad_events"] += 1
            _LOG.exception("driver %s: cannot handle an OSDP event", self.config.id)

    def _dispatch(self, reader: _Reader, event: OsdpEvent, now: int) -> None:
        kind = event.get("event")
        if kind == EVENT_CARD_READ:
            self._card(reader, event, now)
        elif kind == EVENT_KEYPRESS:
            self._keypress(reader, event, now)
        elif kind == EVENT_STATUS:
            self._status(reader, event, now)
        elif kind == EVENT_NOTIFICATION:
            self._notification(reader, event, now)
        elif kind == EVENT_MFG_REPLY:
            self.counters["mfg_replies"] += 1
        else:
            self.counters["unknown_events"] += 1

    def _card(self, reader: _Reader, event: OsdpEvent, now: int) -> None:
        bits, data, fmt = event.get("length"), event.get("data"), event.get("format")
        if (
            fmt not in {CARD_FORMAT_RAW, CARD_FORMAT_WIEGAND}
            or not isinstance(bits, int)
            or not 1 <= bits <= MAX_CARD_BITS
            or not isinstance(data, bytes)
            or len(data) * 8 < bits
        ):
            self.counters["unsupported_cards"] += 1
            return
        value = from_msb_first(data, bits)
        name = RAW_FORMAT
        if bits in PARITY_FORMATS:
            if check_parity(value, bits):
                name = format_name(bits)
            elif fmt == CARD_FORMAT_WIEGAND:
                self.counters["parity_mismatches"] += 1
        self.counters["cards"] += 1
        self._access(reader, now, credential(bits, value), name, bits)

    def _keypress(self, reader: _Reader, event: OsdpEvent, now: int) -> None:
        data = event.get("data")
        if not isinstance(data, bytes):
            self.counters["bad_events"] += 1
            return
        keys = "".join(_KEYS.get(code, "?") for code in data)
        self.counters["keys"] += len(data)
        for digits in reader.keypad.keys(now, keys):
            self.counters["pins"] += 1
            self._access(reader, now, pin_credential(digits), KEYPAD_FORMAT, None)

    def _access(self, reader: _Reader, now: int, raw: str, fmt: str, bits: int | None) -> None:
        config = reader.config
        granted = decide(self.authorise, config.id, raw)
        self._emit(
            access_event(
                config.id,
                now,
                credential=raw,
                fmt=fmt,
                bits=bits,
                door=config.door,
                granted=granted,
            )
        )
        if granted:
            if reader.door is not None:
                self._emit_all(reader.door.access(now, granted=True))
            self._pulse_strike(reader)

    def _status(self, reader: _Reader, event: OsdpEvent, now: int) -> None:
        report = event.get("report")
        if not isinstance(report, bytes):
            self.counters["bad_events"] += 1
            return
        status_type = event.get("type")
        if status_type == STATUS_INPUT:
            self._inputs(reader, report, now)
        elif status_type == STATUS_LOCAL:
            self._condition(reader, "tamper", len(report) > 0 and report[0] != 0, now)
            self._condition(reader, "power failure", len(report) > 1 and report[1] != 0, now)
        elif status_type == STATUS_REMOTE:
            self._condition(reader, "reader tamper", any(report), now)

    def _inputs(self, reader: _Reader, report: bytes, now: int) -> None:
        door, config = reader.door, reader.config
        if door is None:
            return
        rex = config.rex_input
        if rex is not None and rex < len(report):
            active = report[rex] != 0
            if active and not reader.rex_active:
                self._emit_all(door.exit_request(now))
            reader.rex_active = active
        contact = config.contact_input
        if contact is not None and contact < len(report):
            active = report[contact] != 0
            self._emit_all(door.contact(now, is_open=active == config.contact_open_when_active))

    def _condition(self, reader: _Reader, reason: str, active: bool, now: int) -> None:
        since = reader.conditions.get(reason)
        device = reader.config.id
        if active and since is None:
            reader.conditions[reason] = now
            self._emit(DeviceEvent(device, now, "device.fault", {"reason": reason}))
        elif not active and since is not None:
            del reader.conditions[reason]
            after_s = max(0.0, (now - since) / 1000)
            self._emit(DeviceEvent(device, now, "device.recovered", {"after_s": after_s}))

    def _notification(self, reader: _Reader, event: OsdpEvent, now: int) -> None:
        kind, arg0, arg1 = event.get("type"), event.get("arg0"), event.get("arg1")
        if kind == NOTIFY_PD_STATUS:
            if arg0:
                self.counters["online"] += 1
                reader.waiting = False
                reader.backoff_s = self.config.retry_min_s
            else:
                self.counters["offline"] += 1
                reader.waiting = True
                reader.next_probe_ms = now + round(reader.backoff_s * 1000)
        elif kind == NOTIFY_SC_STATUS:
            self.counters["secure_channel_up" if arg0 else "secure_channel_down"] += 1
        elif kind == NOTIFY_COMMAND and arg0 == COMMAND_OUTPUT and not arg1:
            self.counters["strike_failed"] += 1
            _LOG.warning(
                "driver %s: reader %s refused the strike", self.config.id, reader.config.id
            )

    # -- strike ---------------------------------------------------------------------------------

    def _pulse_strike(self, reader: _Reader) -> asyncio.Future[bool] | None:
        output = reader.config.strike_output
        if output is None or self._bus is None:
            return None
        command = {
            "command": COMMAND_OUTPUT,
            "output_no": output,
            "control_code": OUTPUT_TEMPORARY_ON,
            "timer_count": round(reader.config.strike_s * 10),  # 100 ms units
        }
        self.counters["strike_commands"] += 1
        future = asyncio.wrap_future(self._bus.submit(reader.index, command))
        self._pending.add(future)

        def done(fut: asyncio.Future[bool]) -> None:
            self._pending.discard(fut)
            if fut.cancelled() or fut.exception() is not None or not fut.result():
                self.counters["strike_failed"] += 1
                _LOG.warning(
                    "driver %s: cannot pulse the strike of %s", self.config.id, reader.config.id
                )

        future.add_done_callback(done)
        return future


def _door_logic(reader: OsdpReader) -> DoorLogic | None:
    if not reader.has_door:
        return None
    settings = DoorSettings(
        door=reader.door,
        grant_window_s=reader.grant_window_s,
        held_open_s=reader.held_open_s,
    )
    initial = DoorState.CLOSED if reader.contact_input is not None else DoorState.UNKNOWN
    return DoorLogic(reader.id, settings, initial=initial)


def _drain(queue: asyncio.Queue[bytes]) -> None:
    while not queue.empty():
        queue.get_nowait()
