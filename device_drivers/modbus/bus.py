"""One Modbus RTU bus through pymodbus, with pymodbus's errors translated at this boundary.

pymodbus reports a missing answer, a garbled answer (bad CRC, line noise) and a lost port in
different ways: the first two both end in ``ModbusIOException`` once its retries are used up
(a frame with a bad CRC is silently dropped, so the request just times out), a lost port shows
as ``ConnectionException`` or as a client that is no longer connected, and a device that
refuses a request answers with an exception response.  Here they become :class:`ReadError`
with a ``kind`` (``timeout``, ``noise``, ``exception``, ``protocol``) for one device, or
:class:`BusLostError` for the whole bus.  Garbled answers are also counted when a retry then
succeeds, so a noisy line shows up before devices start to fault.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import termios

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from device_drivers.errors import DriverIOError
from device_drivers.modbus.profiles import FunctionCode
from device_drivers.serial_port import SerialSettings

__all__ = ["EXCEPTION_NAMES", "BusLostError", "ModbusBus", "ReadError", "ReadResult"]

EXCEPTION_NAMES: dict[int, str] = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "device failure",
    0x05: "acknowledge",
    0x06: "device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target failed to respond",
}
_GATEWAY_NO_RESPONSE = 0x0B


class _DropUnanswered(logging.Filter):
    """Drops pymodbus's ERROR (with a dump of recent frames) for every unanswered request.

    A silent device is reported through its health (``device.fault``) instead; on a gateway
    these lines would otherwise fill the journal once per poll per dead device.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "No response received" not in str(record.msg)


def _install_log_filter() -> None:
    logger = logging.getLogger("pymodbus.logging")
    if not any(isinstance(f, _DropUnanswered) for f in logger.filters):
        logger.addFilter(_DropUnanswered())


class ReadError(Exception):
    """One request to one device failed; the bus itself is fine.

    Attributes:
        kind: ``timeout`` (no answer), ``noise`` (bytes came but no valid frame: bad CRC,
            garbage), ``exception`` (the device refused: see ``exception_code``) or
            ``protocol`` (an answer that does not fit the request).
        reason: what happened, for ``device.fault`` and the installer.
        garbled: garbled answers seen during this request.
        exception_code: the Modbus exception code for ``kind == "exception"``.
    """

    def __init__(
        self, kind: str, reason: str, *, garbled: int = 0, exception_code: int | None = None
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.garbled = garbled
        self.exception_code = exception_code


class BusLostError(Exception):
    """The port is gone (unplugged, closed by the far end, refused); every device is affected."""


@dataclasses.dataclass(frozen=True, slots=True)
class ReadResult:
    """Words of a successful read (registers, or bits as 0/1) and how hard it was to get."""

    words: tuple[int, ...]
    attempts: int
    garbled: int


class _WireWatch:
    """Counts garbled answers: attempts on which bytes arrived but no frame decoded."""

    def __init__(self) -> None:
        self.active = False
        self.attempts = 0
        self.garbled = 0
        self._rx = False
        self._pdu = False

    def start(self) -> None:
        self.active = True
        self.attempts = 0
        self.garbled = 0
        self._rx = self._pdu = False

    def _close_attempt(self) -> None:
        if self._rx and not self._pdu:
            self.garbled += 1
        self._rx = self._pdu = False

    def finish(self) -> None:
        if self.active and self.attempts:
            self._close_attempt()
        self.active = False

    def packet(self, sending: bool, data: bytes) -> bytes:
        if self.active:
            if sending:
                if self.attempts:
                    self._close_attempt()
                self.attempts += 1
            elif data:
                self._rx = True
        return data

    def pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if self.active and not sending:
            self._pdu = True
        return pdu


class ModbusBus:
    """A pymodbus RTU client on one port, shared by every device on that bus.

    Requests go out one at a time (pymodbus holds a lock per client), which is what a half
    duplex RS-485 bus needs.  pymodbus's own reconnect is switched off: the driver decides
    when to reconnect, with its own back-off on its own clock.

    Args:
        url: serial port or pyserial URL (``/dev/ttyUSB0``, ``socket://h:p``, ``rfc2217://``).
        line: baud rate, data bits, parity, stop bits.
        timeout_s: wait for an answer this long per attempt.
        retries: attempts after the first.
        owner: id named in :class:`DriverIOError`.
    """

    def __init__(
        self,
        url: str,
        line: SerialSettings,
        *,
        timeout_s: float,
        retries: int,
        owner: str,
    ) -> None:
        self.url = url
        self.line = line
        self.timeout_s = timeout_s
        self.retries = retries
        self._owner = owner
        self._watch = _WireWatch()
        self._client: AsyncModbusSerialClient | None = None
        _install_log_filter()

    @property
    def connected(self) -> bool:
        """Whether the port is open."""
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        """Open the port (again).

        Raises:
            DriverIOError: naming the port, if it cannot be opened.
        """
        if self._client is None:
            # pymodbus binds its client to the running loop, so it is made here, not earlier.
            self._client = AsyncModbusSerialClient(
                self.url,
                framer=FramerType.RTU,
                baudrate=self.line.baudrate,
                bytesize=self.line.bytesize,
                parity=self.line.parity,
                stopbits=self.line.stopbits,
                timeout=self.timeout_s,
                retries=self.retries,
                reconnect_delay=0,  # no reconnect task of pymodbus's own
                name=self.url,
                trace_packet=self._watch.packet,
                trace_pdu=self._watch.pdu,
            )
        if self._client.connected:
            return
        # connect() returns False for OS errors and only logs why; say what we can.  A tty that
        # refuses the line settings raises termios.error, which pymodbus lets through.
        try:
            if await self._client.connect():
                return
        except (termios.error, ValueError) as exc:
            self.close()
            raise DriverIOError(
                self._owner, f"cannot open {self.url} at {self.line.label}: {exc}"
            ) from exc
        raise DriverIOError(self._owner, f"cannot open {self.url}: {_why_not(self.url)}")

    def close(self) -> None:
        """Close the port; idempotent, never raises."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError, ModbusException, RuntimeError):
                client.close()

    async def read(self, unit: int, function: FunctionCode, address: int, count: int) -> ReadResult:
        """Read ``count`` registers or bits of ``unit``.

        Raises:
            ReadError: the device did not answer, answered garbage or refused.
            BusLostError: the port is gone.
        """
        client = self._client
        if client is None or not client.connected:
            raise BusLostError(f"{self.url} is not open")
        self._watch.start()
        try:
            response = await self._execute(client, unit, function, address, count)
        except ConnectionException as exc:
            raise BusLostError(f"{self.url}: {_message(exc)}") from exc
        except ModbusIOException as exc:
            self._watch.finish()
            if not client.connected:
                raise BusLostError(f"{self.url} closed: {_message(exc)}") from exc
            raise self._no_answer(unit) from exc
        except ModbusException as exc:
            raise ReadError("protocol", _message(exc), garbled=self._watch.garbled) from exc
        finally:
            self._watch.finish()
        garbled = self._watch.garbled
        if response.isError():
            raise _refused(unit, function, address, count, response.exception_code, garbled)
        if function.reads_bits:
            words = tuple(1 if bit else 0 for bit in response.bits[:count])
        else:
            words = tuple(response.registers[:count])
        if len(words) < count:
            reason = f"unit {unit} sent {len(words)} of {count} item(s)"
            raise ReadError("protocol", reason, garbled=garbled)
        return ReadResult(words, response.retries + 1, garbled)

    def _no_answer(self, unit: int) -> ReadError:
        garbled = self._watch.garbled
        attempts = self.retries + 1
        if garbled:
            reason = f"garbled answer (bad CRC or line noise) on {garbled} of {attempts} tries"
            return ReadError("noise", reason, garbled=garbled)
        return ReadError("timeout", f"no answer from unit {unit} after {attempts} tries")

    @staticmethod
    async def _execute(
        client: AsyncModbusSerialClient,
        unit: int,
        function: FunctionCode,
        address: int,
        count: int,
    ) -> ModbusPDU:
        if function is FunctionCode.READ_COILS:
            return await client.read_coils(address, count=count, device_id=unit)
        if function is FunctionCode.READ_DISCRETE_INPUTS:
            return await client.read_discrete_inputs(address, count=count, device_id=unit)
        if function is FunctionCode.READ_HOLDING_REGISTERS:
            return await client.read_holding_registers(address, count=count, device_id=unit)
        return await client.read_input_registers(address, count=count, device_id=unit)


def _refused(
    unit: int, function: FunctionCode, address: int, count: int, code: int, garbled: int
) -> ReadError:
    if code == _GATEWAY_NO_RESPONSE:  # a TCP/RTU gateway saying the device is silent
        return ReadError("timeout", f"gateway: no answer from unit {unit}", garbled=garbled)
    name = EXCEPTION_NAMES.get(code, "unknown exception")
    reason = (
        f"unit {unit} refused function {int(function)} at {address:#06x} "
        f"x{count}: exception {code:#04x} ({name})"
    )
    return ReadError("exception", reason, garbled=garbled, exception_code=code)


def _message(exc: ModbusException) -> str:
    return exc.string.removeprefix("[Input/Output] ").removeprefix("[Connection] ")


def _why_not(url: str) -> str:
    if "://" in url:
        return "not reachable (is the converter or ser2net up?)"
    if not os.path.exists(url):  # noqa: PTH110 - a device path, not a project file
        return "no such device (unplugged? see ls /dev/serial/by-id)"
    if not os.access(url, os.R_OK | os.W_OK):
        return "permission denied (add the user to the dialout group)"
    return "busy or not a serial port (is another program using it?)"
