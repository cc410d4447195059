"""Find the devices on a Modbus RTU bus: probe each address with one cheap read.

Every device that hears its address answers, either with data or with an exception response
(a device without holding register 0 says "illegal data address", which still proves it is
there), so one probe per address is enough.  Silence means nobody is at that address, or the
line settings are wrong: try the other usual settings (9600 8N1, 9600 8E1, 4800 8N1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator

from device_drivers.errors import DriverIOError
from device_drivers.modbus.bus import EXCEPTION_NAMES, BusLostError, ModbusBus, ReadError
from device_drivers.modbus.profiles import FunctionCode
from device_drivers.serial_port import SerialSettings

__all__ = ["DEFAULT_PROBE", "Probe", "ScanHit", "scan_bus"]


@dataclasses.dataclass(frozen=True, slots=True)
class Probe:
    """The read sent to every address."""

    function: FunctionCode = FunctionCode.READ_HOLDING_REGISTERS
    address: int = 0
    count: int = 1

    @property
    def label(self) -> str:
        """E.g. ``FC03 @0x0000 x1``."""
        return f"FC{int(self.function):02d} @{self.address:#06x} x{self.count}"


DEFAULT_PROBE = Probe()


@dataclasses.dataclass(frozen=True, slots=True)
class ScanHit:
    """What one address did when probed.

    Attributes:
        unit: the address probed.
        found: whether a device answered (data or an exception response).
        answer: what it said, e.g. ``registers 0x0131`` or ``exception 0x02 (illegal data
            address)``; why not, when nothing was found (``no answer``, ``garbled answer``).
        words: the registers or bits it returned, when it returned data.
    """

    unit: int
    found: bool
    answer: str
    words: tuple[int, ...] = ()


async def scan_bus(
    url: str,
    line: SerialSettings,
    *,
    first: int = 1,
    last: int = 247,
    timeout_s: float = 0.2,
    probe: Probe = DEFAULT_PROBE,
    owner: str = "scan",
) -> AsyncGenerator[ScanHit, None]:
    """Probe addresses ``first..last`` in order and yield one :class:`ScanHit` per address.

    Args:
        url: serial port or pyserial URL.
        line: line settings to try.
        first: first address (1..247).
        last: last address (``first``..247).
        timeout_s: wait this long for each address (no retries).
        probe: the read to send.
        owner: id named in errors.

    Raises:
        ValueError: if the range is not within 1..247.
        DriverIOError: if the port cannot be opened, or goes away during the scan.
    """
    if not 1 <= first <= last <= 247:  # noqa: PLR2004 - highest unicast address
        msg = f"addresses must satisfy 1 <= first <= last <= 247, got {first}..{last}"
        raise ValueError(msg)
    bus = ModbusBus(url, line, timeout_s=timeout_s, retries=0, owner=owner)
    await bus.connect()
    try:
        for unit in range(first, last + 1):
            yield await _probe(bus, unit, probe, owner)
    finally:
        bus.close()


async def _probe(bus: ModbusBus, unit: int, probe: Probe, owner: str) -> ScanHit:
    try:
        result = await bus.read(unit, probe.function, probe.address, probe.count)
    except ReadError as exc:
        if exc.kind == "exception" and exc.exception_code is not None:
            name = EXCEPTION_NAMES.get(exc.exception_code, "unknown")
            return ScanHit(unit, True, f"exception {exc.exception_code:#04x} ({name})")
        if exc.kind == "noise":
            return ScanHit(unit, False, "garbled answer (wrong baud rate or parity?)")
        if exc.kind == "protocol":
            return ScanHit(unit, True, f"odd answer: {exc.reason}")
        return ScanHit(unit, False, "no answer")
    except BusLostError as exc:
        raise DriverIOError(owner, str(exc)) from exc
    kind = "bits" if probe.function.reads_bits else "registers"
    shown = " ".join(f"{w:#06x}" if kind == "registers" else str(w) for w in result.words)
    return ScanHit(unit, True, f"{kind} {shown}", result.words)
