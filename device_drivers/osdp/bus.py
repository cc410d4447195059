"""libosdp's control panel on a thread of its own, bridged to asyncio by byte queues.

libosdp needs ``refresh()`` every few milliseconds and calls back into Python for channel I/O
and events from inside it.  :class:`OsdpBus` runs that loop on a dedicated thread and never
blocks there: the channel reads from a buffer that the event loop fills from the serial port,
and hands what it writes to the event loop, which writes it to the port.  Events and outgoing
bytes reach the event loop with ``call_soon_threadsafe``; commands and re-probes go the other
way through a queue that the thread serves between refreshes.  The event loop never takes a
lock that the thread holds while refreshing.

The driver talks to libosdp's ``osdp_sys.ControlPanel`` (the class that ``osdp.ControlPanel``
wraps) directly: the wrapper keeps every event in an unbounded queue that nobody reads here
(memory growth on a gateway that runs for months) and prints callback errors to stdout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import osdp  # type: ignore[import-untyped]
import osdp_sys  # type: ignore[import-not-found]

__all__ = ["BusReader", "OsdpBus", "OsdpEvent"]

_LOG = logging.getLogger(__name__)

# Kinds of libosdp events (osdp.Event) and notifications (osdp.EventNotification).
EVENT_CARD_READ: Final[int] = osdp.Event.CardRead
EVENT_KEYPRESS: Final[int] = osdp.Event.KeyPress
EVENT_MFG_REPLY: Final[int] = osdp.Event.ManufacturerReply
EVENT_STATUS: Final[int] = osdp.Event.Status
EVENT_NOTIFICATION: Final[int] = osdp.Event.Notification
NOTIFY_COMMAND: Final[int] = osdp.EventNotification.Command
NOTIFY_SC_STATUS: Final[int] = osdp.EventNotification.SecureChannelStatus
NOTIFY_PD_STATUS: Final[int] = osdp.EventNotification.PeripheralDeviceStatus
STATUS_INPUT: Final[int] = osdp.StatusReportType.Input
STATUS_OUTPUT: Final[int] = osdp.StatusReportType.Output
STATUS_LOCAL: Final[int] = osdp.StatusReportType.Local
STATUS_REMOTE: Final[int] = osdp.StatusReportType.Remote
CARD_FORMAT_RAW: Final[int] = osdp.CardFormat.Unspecified
CARD_FORMAT_WIEGAND: Final[int] = osdp.CardFormat.Wiegand
COMMAND_OUTPUT: Final[int] = osdp.Command.Output
OUTPUT_TEMPORARY_ON: Final[int] = 5  # osdp_OUT control code: on for the timer, then back

LOG_LEVELS: Final[Mapping[str, int]] = {
    "emergency": osdp.LogLevel.Emergency,
    "alert": osdp.LogLevel.Alert,
    "critical": osdp.LogLevel.Critical,
    "error": osdp.LogLevel.Error,
    "warning": osdp.LogLevel.Warning,
    "notice": osdp.LogLevel.Notice,
    "info": osdp.LogLevel.Info,
    "debug": osdp.LogLevel.Debug,
}

RX_BUFFER_MAX = 64 * 1024

OsdpEvent = dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class BusReader:
    """One peripheral device on the bus, as libosdp needs it."""

    name: str
    address: int
    scbk: bytes | None = dataclasses.field(default=None, repr=False)


class _Channel(osdp.Channel):  # type: ignore[misc]
    """libosdp's channel; called on the bus thread only, from inside ``refresh()``."""

    def __init__(self, bus: OsdpBus) -> None:
        super().__init__()
        self._bus = bus

    def read(self, max_bytes: int) -> bytes:
        return self._bus._take_rx(max_bytes)  # noqa: SLF001 - the bus's own channel

    def write(self, buf: bytes) -> int:
        self._bus._put_tx(bytes(buf))  # noqa: SLF001
        return len(buf)

    def flush(self) -> None:
        self._bus._drop_rx()  # noqa: SLF001


class OsdpBus:
    """A libosdp control panel polling ``readers`` on one RS-485 line.

    Args:
        readers: the PDs, in the order their indexes are reported.
        loop: the event loop that ``on_event`` and ``on_tx`` run on.
        on_event: ``(reader index, event dict)`` for every libosdp event and notification.
        on_tx: bytes libosdp wants on the line.
        on_failure: the bus thread died (a bug or a libosdp error); the driver must restart.
        log_level: libosdp's own log level (it logs to stderr, for the whole process).
        refresh_s: pause between two refreshes.
    """

    def __init__(
        self,
        readers: Sequence[BusReader],
        *,
        loop: asyncio.AbstractEventLoop,
        on_event: Callable[[int, OsdpEvent], None],
        on_tx: Callable[[bytes], None],
        on_failure: Callable[[BaseException], None],
        log_level: str = "error",
        refresh_s: float = 0.01,
    ) -> None:
        self.readers = tuple(readers)
        self._loop = loop
        self._on_event = on_event
        self._on_tx = on_tx
        self._on_failure = on_failure
        self._log_level = LOG_LEVELS[log_level]
        self._refresh_s = refresh_s
        self._rx = bytearray()
        self._rx_lock = threading.Lock()
        self._requests: queue.SimpleQueue[Callable[[Any], None]] = queue.SimpleQueue()
        self._to_enable: set[int] = set()
        self._waiting: set[concurrent.futures.Future[bool]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ctx: Any = None
        # Written by the bus thread after every refresh; a plain int is read atomically.
        self.online_mask = 0
        self.sc_mask = 0
        self.rx_dropped = 0

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Create the control panel and start polling."""
        if self._thread is not None:
            msg = "the bus is already running"
            raise RuntimeError(msg)
        osdp_sys.set_loglevel(self._log_level)
        channel = _Channel(self)
        infos = []
        for reader in self.readers:
            flags = [osdp.LibFlag.EnableNotification]
            if reader.scbk is not None:
                # Never fall back to a clear-text line when a key is configured.
                flags.append(osdp.LibFlag.EnforceSecure)
            info = osdp.PDInfo(
                reader.address, channel, scbk=reader.scbk, name=reader.name, flags=flags
            )
            infos.append(info.get())
        self._ctx = osdp_sys.ControlPanel(infos)
        self._ctx.set_event_callback(self._event_callback)
        self._thread = threading.Thread(target=self._run, name="osdp-cp", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the thread (blocking: call it through a thread)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self._ctx = None
        for result in list(self._waiting):  # never served: nobody waits for them forever
            result.cancel()
        self._waiting.clear()

    # -- event loop side ------------------------------------------------------------------------

    def feed_rx(self, data: bytes) -> None:
        """Bytes received from the line, for libosdp to read."""
        with self._rx_lock:
            self._rx += data
            excess = len(self._rx) - RX_BUFFER_MAX
            if excess > 0:
                del self._rx[:excess]
                self.rx_dropped += excess

    def is_online(self, index: int) -> bool:
        """Whether libosdp has reader ``index`` online."""
        return bool(self.online_mask >> index & 1)

    def is_secure(self, index: int) -> bool:
        """Whether reader ``index`` has an active secure channel."""
        return bool(self.sc_mask >> index & 1)

    def submit(self, index: int, command: Mapping[str, Any]) -> concurrent.futures.Future[bool]:
        """Queue an ``osdp_sys`` command dict for reader ``index``; the future says if taken."""
        result: concurrent.futures.Future[bool] = concurrent.futures.Future()
        payload = dict(command)

        def run(ctx: Any) -> None:
            self._waiting.discard(result)
            if result.set_running_or_notify_cancel():
                result.set_result(bool(ctx.submit_command(index, payload)))

        self._waiting.add(result)
        self._requests.put(_guarded(run, result))
        if self._stop.is_set():
            result.cancel()
        return result

    def reprobe(self, index: int) -> None:
        """Start talking to reader ``index`` afresh (libosdp waits minutes after an outage)."""

        def run(ctx: Any) -> None:
            ctx.disable_pd(index)
            self._to_enable.add(index)

        self._requests.put(run)

    # -- bus thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        ctx = self._ctx
        try:
            while not self._stop.is_set():
                self._serve_requests(ctx)
                ctx.refresh()
                self.online_mask = int(ctx.status())
                self.sc_mask = int(ctx.sc_status())
                if self._to_enable:
                    # A PD can be enabled once a refresh has taken it to the disabled state.
                    self._to_enable = {i for i in self._to_enable if not ctx.enable_pd(i)}
                self._stop.wait(self._refresh_s)
        except BaseException as exc:  # noqa: BLE001 - reported to the driver, which restarts
            _LOG.exception("OSDP control panel thread failed")
            self._call_soon(self._on_failure, exc)

    def _serve_requests(self, ctx: Any) -> None:
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                request(ctx)
            except Exception:  # noqa: BLE001 - one bad request must not stop the polling
                _LOG.exception("OSDP control panel request failed")

    def _event_callback(self, index: int, event: OsdpEvent) -> int:
        # Called by libosdp inside refresh(): an exception here would be left pending in C.
        try:
            self._call_soon(self._on_event, index, event)
        except Exception:  # noqa: BLE001
            _LOG.exception("cannot hand an OSDP event to the event loop")
        return 0

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the event loop is closed: the driver is gone
            self._stop.set()

    def _take_rx(self, max_bytes: int) -> bytes:
        try:
            with self._rx_lock:
                data = bytes(self._rx[:max_bytes])
                del self._rx[: len(data)]
        except Exception:  # noqa: BLE001 - never raise into libosdp
            return b""
        return data

    def _drop_rx(self) -> None:
        with self._rx_lock:
            self._rx.clear()

    def _put_tx(self, data: bytes) -> None:
        try:
            self._call_soon(self._on_tx, data)
        except Exception:  # noqa: BLE001 - never raise into libosdp
            _LOG.exception("cannot hand OSDP bytes to the event loop")


def _guarded(
    run: Callable[[Any], None], result: concurrent.futures.Future[bool]
) -> Callable[[Any], None]:
    def guarded(ctx: Any) -> None:
        try:
            run(ctx)
        except Exception as exc:  # noqa: BLE001 - handed to whoever waits on the result
            if not result.done():
                result.set_exception(exc)

    return guarded
