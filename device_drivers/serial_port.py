"""Serial ports by URL (pyserial's ``serial_for_url``), as asyncio streams.

``/dev/ttyUSB0``, ``socket://host:port`` (ser2net, tests) and ``rfc2217://host:port`` all work.
pyserial's errors become :class:`DriverIOError` here, at the boundary, so drivers handle one
kind of failure: a port that is absent, unplugged or broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Literal

import serial
import serial_asyncio_fast

from device_drivers.errors import DriverIOError

Parity = Literal["N", "E", "O"]


@dataclasses.dataclass(frozen=True, slots=True)
class SerialSettings:
    """Line settings of a serial port (8N1 at 9600 baud by default)."""

    baudrate: int = 9600
    bytesize: Literal[7, 8] = 8
    parity: Parity = "N"
    stopbits: Literal[1, 2] = 1

    @property
    def label(self) -> str:
        """E.g. ``9600 8N1``."""
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


class SerialPort:
    """One open serial port.  Reads and writes raise :class:`DriverIOError` when it breaks."""

    def __init__(self, url: str, settings: SerialSettings, *, owner: str) -> None:
        self.url = url
        self.settings = settings
        self._owner = owner
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Open the port."""
        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.url,
                baudrate=self.settings.baudrate,
                bytesize=self.settings.bytesize,
                parity=self.settings.parity,
                stopbits=self.settings.stopbits,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DriverIOError(self._owner, f"cannot open {self.url}: {exc}") from exc

    @property
    def is_open(self) -> bool:
        """Whether the port is open."""
        return self._writer is not None and not self._writer.is_closing()

    def _streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            raise DriverIOError(self._owner, f"{self.url} is not open")
        return self._reader, self._writer

    async def write(self, data: bytes) -> None:
        """Write and drain."""
        _, writer = self._streams()
        try:
            writer.write(data)
            await writer.drain()
        except (serial.SerialException, OSError, ConnectionError) as exc:
            raise DriverIOError(self._owner, f"write to {self.url} failed: {exc}") from exc

    async def read(self, max_bytes: int = 4096) -> bytes:
        """Whatever is available (at least one byte); the port closing is an error."""
        reader, _ = self._streams()
        try:
            data = await reader.read(max_bytes)
        except (serial.SerialException, OSError, ConnectionError) as exc:
            raise DriverIOError(self._owner, f"read from {self.url} failed: {exc}") from exc
        if not data:
            raise DriverIOError(self._owner, f"{self.url} closed")
        return data

    async def read_for(self, seconds: float, max_bytes: int = 4096) -> bytes:
        """What arrives within ``seconds`` (possibly nothing)."""
        try:
            async with asyncio.timeout(seconds):
                return await self.read(max_bytes)
        except TimeoutError:
            return b""

    async def aclose(self) -> None:
        """Close; idempotent, and never raises."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
