"""A real Mosquitto running the generated configuration, and MQTT clients that report outcomes.

``provisioned_broker`` runs ``init_broker`` with free loopback ports and starts Mosquitto on the
``mosquitto.conf`` it wrote (nothing added or changed), so the tests exercise exactly what an
installer gets.
"""

from __future__ import annotations

import getpass
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from hub.broker import BrokerPaths, BrokerSettings, init_broker
from tests.servers import LOOPBACK, Mosquitto, free_port

SECRET_VARS = ("ANJU_MQTT_PASSWORD", "ANJU_SITE_SECRET")


class GeneratedMosquitto(Mosquitto):
    """Mosquitto on the generated config of a provisioning directory (its TLS port is ``port``)."""

    name = "mosquitto"

    def __init__(self, paths: BrokerPaths, settings: BrokerSettings) -> None:
        super().__init__(paths.root, port=settings.tls_port)
        self.paths = paths
        self.settings = settings

    def _prepare(self) -> None:
        """Keep the generated ``mosquitto.conf`` as it is."""

    def config_text(self) -> str:
        return self.paths.conf.read_text()


def broker_settings(workdir: Path, **changes: Any) -> BrokerSettings:
    """Settings for a test broker: free loopback ports, run as whoever runs the tests."""
    values: dict[str, Any] = {
        "hosts": ("127.0.0.1", "localhost"),
        "bind_address": LOOPBACK,
        "tls_port": free_port(),
        "mtls_port": free_port(),
        "local_port": free_port(),
        # As root Mosquitto would switch to `mosquitto`, which cannot read pytest's tmp dirs.
        "run_as_user": getpass.getuser(),
        "log_file": workdir / "mosquitto.log",
        "autosave_interval_s": 5,
    }
    values.update(changes)
    return BrokerSettings.model_validate(values)


def provisioned_broker(
    root: Path, *, sites: tuple[str, ...] = ("s1",), **changes: Any
) -> GeneratedMosquitto:
    """``init_broker`` in ``root``, then a (not yet started) Mosquitto on what it wrote."""
    paths = BrokerPaths(root)
    settings = broker_settings(root, **changes)
    init_broker(paths, settings, sites=sites)
    return GeneratedMosquitto(paths, settings)


def hub_password(paths: BrokerPaths) -> str:
    """The hub's password from ``hub.env``."""
    return read_env(paths.hub_env)["ANJU_HUB_MQTT_PASSWORD"]


def read_env(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an environment file (unquoted values, as the tests write them)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


@dataclass
class Outcome:
    """What happened to a connection attempt."""

    connected: bool
    reason: str


@dataclass
class Client:
    """A paho client on its own network thread that records everything it receives."""

    client: paho.Client
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        """Subscribe and return the SUBACK's reason codes."""
        done = threading.Event()
        codes: list[ReasonCode] = []

        def on_subscribe(_c: Any, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Any) -> None:
            codes.extend(reasons)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe(topic, qos)
        assert done.wait(5), f"no SUBACK for {topic}"
        return codes

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> ReasonCode | None:
        """Publish and wait for the PUBACK; return its reason code (MQTT 5) or None."""
        codes: list[ReasonCode] = []
        done = threading.Event()

        def on_publish(_c: Any, _u: Any, _mid: int, reason: ReasonCode, _p: Any) -> None:
            codes.append(reason)
            done.set()

        self.client.on_publish = on_publish
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=5)
        assert info.is_published(), f"no PUBACK for {topic}"
        done.wait(5)
        if self.client.protocol == paho.MQTTv5 and codes:
            return codes[0]
        return None

    def wait_for(self, topic: str, payload: bytes, timeout: float = 5.0) -> None:
        """Wait until ``payload`` arrived on ``topic``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (topic, payload) not in self.messages:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{payload!r} on {topic} never arrived; got {self.messages}"
                self._changed.wait(remaining)

    def wait_disconnected(self, timeout: float = 5.0) -> None:
        """Wait until the broker closed the connection."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self.disconnects:
                remaining = deadline - time.monotonic()
                assert remaining > 0, "the broker did not disconnect the client"
                self._changed.wait(remaining)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def _tls(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if ca is None:
        return None
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def connect(
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    client_id: str = "",
    protocol: MQTTProtocolVersion = paho.MQTTv311,
    timeout: float = 5.0,
) -> tuple[Outcome, Client | None]:
    """Connect and report the broker's answer; on success the client is returned running."""
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
    )
    if username is not None:
        client.username_pw_set(username, password)
    context = _tls(ca, cert, key)
    if context is not None:
        client.tls_set_context(context)
    wrapper = Client(client)
    answered = threading.Event()
    outcome = Outcome(connected=False, reason="no answer")

    def on_connect(_c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        outcome.connected = not reason.is_failure
        outcome.reason = str(reason)
        answered.set()

    def on_disconnect(_c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        with wrapper._changed:
            wrapper.disconnects.append(str(reason))
            wrapper._changed.notify_all()
        if not answered.is_set():
            outcome.reason = f"disconnected: {reason}"
            answered.set()

    def on_message(_c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        with wrapper._changed:
            wrapper.messages.append((message.topic, bytes(message.payload)))
            wrapper._changed.notify_all()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    try:
        client.connect(LOOPBACK, port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        return Outcome(connected=False, reason=f"{type(exc).__name__}: {exc}"), None
    client.loop_start()
    answered.wait(timeout)
    if not outcome.connected:
        client.loop_stop()
        client.disconnect()
        return outcome, None
    return outcome, wrapper
