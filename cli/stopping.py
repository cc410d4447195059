"""SIGTERM and SIGINT as a request to stop, from the first line of a daemon's entry point.

A service manager may stop a unit a few milliseconds after starting it, while the interpreter
still imports the hub or the agent and long before an event loop exists. Python's defaults
(death by SIGTERM, ``KeyboardInterrupt`` wherever SIGINT lands) would leave a queue half
committed or a broker running. So the entry point installs :data:`STOP` first; a signal is
recorded, and the daemon honours it at its next checkpoint: at once if none has started yet,
through its own ``stop()`` (called on its event loop) once it runs.

Only standard-library imports here: this module is loaded before anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Records stop signals and forwards them to the running daemon's ``stop``."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._callback: Callable[[], None] | None = None
        self._wakeup: tuple[socket.socket, socket.socket] | None = None

    @property
    def requested(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signal is not None

    def install(self) -> None:
        """Take over SIGTERM and SIGINT (main thread only)."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)

    def attach(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        """Call ``callback`` on ``loop`` for a stop signal; at once if one came already.

        Call it from the loop's thread (the main thread), and :meth:`detach` before the loop
        closes.
        """
        # A signal may be delivered to any thread (SQLite's, paho's); the C handler then
        # writes to the wake-up socket, so the loop wakes and the main thread runs our handler
        # instead of sleeping until its next timer.
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        loop.add_reader(reader.fileno(), _drain, reader)
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        with self._lock:
            self._loop, self._callback = loop, callback
            self._wakeup = (reader, writer)
            already = self.requested
        if already:
            loop.call_soon(callback)

    def detach(self) -> None:
        """Forget the loop; later signals are only recorded."""
        with self._lock:
            loop, wakeup = self._loop, self._wakeup
            self._loop = self._callback = self._wakeup = None
        if wakeup is None:
            return
        signal.set_wakeup_fd(-1)
        reader, writer = wakeup
        if loop is not None and not loop.is_closed():
            loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes; it must not raise into whatever
        # the interpreter was doing (an import, a SQLite commit), only record and hand on.
        self.signal = signum
        with self._lock:
            loop, callback = self._loop, self._callback
        if loop is not None and callback is not None and not loop.is_closed():
            # Thread-safe form: it also wakes a loop blocked in select().
            loop.call_soon_threadsafe(callback)


def _drain(reader: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while reader.recv(64):
            pass


STOP = StopRequest()

# Commands that run until stopped: they take the signals from the first line on.
DAEMON_COMMANDS = (("hub", "run"), ("edge", "run"), ("demo",))


def is_daemon_command(argv: list[str]) -> bool:
    """Whether the command line (without the program name) runs a daemon."""
    return any(tuple(argv[: len(command)]) == command for command in DAEMON_COMMANDS)
