"""A broker for the demo: Mosquitto when installed, otherwise amqtt's in-process broker."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from pathlib import Path
from typing import Any, Protocol


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mosquitto_binary() -> str | None:
    """Path of the Mosquitto broker, if installed (Debian puts it in /usr/sbin)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


class DemoBroker(Protocol):
    """A running broker."""

    kind: str
    host: str
    port: int

    async def aclose(self) -> None:
        """Stop it."""
        ...


class MosquittoBroker:
    """Mosquitto as a child process on a free loopback port."""

    kind = "mosquitto"

    def __init__(self, binary: str, run_dir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._binary = binary
        self._run_dir = run_dir
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start and wait until it accepts connections."""
        conf = self._run_dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"log_dest file {self._run_dir / 'mosquitto.log'}\n"
            "max_queued_messages 100000\n"
            # Alarms and acks are small messages: send them now, not after a delayed ACK.
            "set_tcp_nodelay true\n",
            encoding="utf-8",
        )
        self._process = await asyncio.create_subprocess_exec(
            self._binary,
            "-c",
            str(conf),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await _wait_listening(self.host, self.port)

    async def aclose(self) -> None:
        """Terminate the process."""
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                async with asyncio.timeout(5):
                    await self._process.wait()
            except TimeoutError:
                self._process.kill()
                await self._process.wait()


class AmqttBroker:
    """amqtt's broker in this process, for machines without Mosquitto."""

    kind = "amqtt"

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._broker: Any = None

    async def start(self) -> None:
        """Start listening."""
        from amqtt.broker import Broker  # noqa: PLC0415 - optional dependency

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._broker = Broker(config)
        await self._broker.start()
        await _wait_listening(self.host, self.port)

    async def aclose(self) -> None:
        """Shut it down."""
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await self._broker.shutdown()


async def start_demo_broker(run_dir: Path) -> DemoBroker:
    """Start the best broker available here."""
    binary = mosquitto_binary()
    if binary is not None:
        mosquitto = MosquittoBroker(binary, run_dir)
        await mosquitto.start()
        return mosquitto
    amqtt = AmqttBroker()
    await amqtt.start()
    return amqtt


async def _wait_listening(host: str, port: int, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return
