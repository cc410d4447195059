"""Clocks for drivers: the system clock, a scaled one for demos, a manual one for tests."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Source of timestamps and of waiting, so simulations and tests can run on virtual time."""

    def now_ms(self) -> int:
        """Current time in epoch milliseconds."""
        ...

    async def sleep_until(self, ts_ms: int) -> None:
        """Return once :meth:`now_ms` has reached ``ts_ms``."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now_ms(self) -> int:
        """Current wall-clock time in epoch milliseconds."""
        return time.time_ns() // 1_000_000

    def delay_s(self, ts_ms: int) -> float:
        """Real seconds until the clock reaches ``ts_ms`` (negative when it has)."""
        return (ts_ms - self.now_ms()) / 1000

    async def sleep_until(self, ts_ms: int) -> None:
        """Sleep until the wall clock reaches ``ts_ms``."""
        delay = self.delay_s(ts_ms)
        if delay > 0:
            await asyncio.sleep(delay)


class ScaledClock:
    """Time that starts at ``start_ms`` and runs ``speed`` times faster than real time.

    Used by the demo to play a night's scenario in a minute.  Timestamps stay in the past as long
    as ``start_ms`` is far enough behind the wall clock.
    """

    def __init__(self, start_ms: int, speed: float = 1.0) -> None:
        if speed <= 0:
            msg = "speed must be positive"
            raise ValueError(msg)
        self._start_ms = start_ms
        self._speed = speed
        self._origin = time.monotonic()

    @property
    def speed(self) -> float:
        """How many virtual seconds pass per real second."""
        return self._speed

    def now_ms(self) -> int:
        """Current virtual time in epoch milliseconds."""
        return self._start_ms + int((time.monotonic() - self._origin) * 1000 * self._speed)

    def delay_s(self, ts_ms: int) -> float:
        """Real seconds until virtual time reaches ``ts_ms`` (negative when it has)."""
        return (ts_ms - self.now_ms()) / 1000 / self._speed

    async def sleep_until(self, ts_ms: int) -> None:
        """Sleep in real time until virtual time reaches ``ts_ms``."""
        delay = self.delay_s(ts_ms)
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock:
    """Virtual time that moves only when a test calls :meth:`advance` or :meth:`set`."""

    def __init__(self, start_ms: int) -> None:
        self._now_ms = start_ms
        self._changed = asyncio.Condition()

    def now_ms(self) -> int:
        """Current virtual time."""
        return self._now_ms

    async def sleep_until(self, ts_ms: int) -> None:
        """Wait until a test has moved the clock to ``ts_ms`` or beyond."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._now_ms >= ts_ms)

    async def set(self, ts_ms: int) -> None:
        """Move time to ``ts_ms`` and wake every sleeper that is due, in order."""
        while True:
            async with self._changed:
                self._now_ms = ts_ms
                self._changed.notify_all()
            # Let woken tasks run (and schedule new sleeps) before returning.
            for _ in range(5):
                await asyncio.sleep(0)
            return

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        await self.set(self._now_ms + int(seconds * 1000))
