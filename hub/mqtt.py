"""The hub's broker connection (paho-mqtt on its own network thread).

Messages are handed to the event loop in bursts: the network thread appends to a deque and
wakes the loop only when no drain is scheduled, so a busy stream costs one wake-up per burst
rather than one per message.  Events and presence go in a lane of their own that is drained
first, so an alarm never waits behind a backlog of telemetry; telemetry is drained in slices,
so flushes and acknowledgements go on while a backlog is worked off.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from hub.config import HubMqttSettings
from wire import HUB_STATE_TOPIC, Channel, HubState, encode, uplink_filter
from wire.topics import GATEWAY_UPLINK_CHANNELS

logger = logging.getLogger(__name__)

Handler = Callable[[str, bytes, int], None]

# Time spent on telemetry per turn of the event loop while a backlog is worked off.
_SLICE_S = 0.005
# Back-pressure: past this many telemetry messages waiting for the event loop, the network
# thread stops reading (and acknowledging) until the loop has worked the inbox down to half.
# The broker keeps the rest in the hub's persistent session; memory stays bounded.
MAX_INBOX = 20_000
_URGENT_SUFFIXES = ("/event", "/state")
_URGENT_CHANNELS = (Channel.EVENT, Channel.STATE)
_URGENT_FILTERS = tuple(uplink_filter(c) for c in _URGENT_CHANNELS)
_BULK_FILTERS = tuple(
    uplink_filter(c) for c in GATEWAY_UPLINK_CHANNELS if c not in _URGENT_CHANNELS
)


class HubMqtt:
    """A persistent-session subscriber to every gateway's uplink topics."""

    def __init__(
        self,
        settings: HubMqttSettings,
        handler: Handler,
        *,
        version: str,
        on_burst: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._handler = handler
        self._on_burst = on_burst
        self._version = version
        self._inbox: collections.deque[tuple[str, bytes, int]] = collections.deque()
        self._urgent: collections.deque[tuple[str, bytes, int]] = collections.deque()
        self._lock = threading.Lock()
        self._room = threading.Event()
        self._room.set()
        self._closing = False
        self.backpressure_waits = 0
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._up = asyncio.Event()
        self.connected = threading.Event()
        self.connects = 0
        # Two connections: events and presence have one of their own, so the broker never
        # queues an alarm behind a burst of telemetry on the same socket.
        self._client = self._make_client(settings.client_id, _BULK_FILTERS, will=True)
        self._alarms = self._make_client(
            f"{settings.client_id}-alarms", _URGENT_FILTERS, will=False
        )
        self._clients = (self._client, self._alarms)
        self._up_count = 0

    def _make_client(self, client_id: str, filters: tuple[str, ...], *, will: bool) -> paho.Client:
        settings = self._settings
        # A fixed client id with clean_session=False: the broker keeps our subscriptions and
        # queues QoS 1 messages while the hub restarts.
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
            userdata=filters,
        )
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if settings.tls_ca_file is not None:
            client.tls_set_context(ssl.create_default_context(cafile=str(settings.tls_ca_file)))
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if will:
            offline = HubState(online=False, ts=_now_ms(), version=self._version)
            client.will_set(HUB_STATE_TOPIC, encode(offline), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Connect in the background; paho reconnects by itself."""
        self._loop = loop
        for client in self._clients:
            client.connect_async(self._settings.host, self._settings.port, keepalive=30)
            client.loop_start()

    async def wait_connected(self) -> None:
        """Wait until a connection is up (wrap in ``asyncio.timeout`` to bound it)."""
        await self._up.wait()

    def stop(self) -> None:
        """Say goodbye on the hub's state topic and disconnect."""
        self._closing = True
        self._room.set()  # a network thread held back by back-pressure must not block the stop
        if self.connected.is_set():
            info = self._client.publish(
                HUB_STATE_TOPIC,
                encode(HubState(online=False, ts=_now_ms(), version=self._version)),
                qos=1,
                retain=True,
            )
            info.wait_for_publish(timeout=2)
        for client in self._clients:
            client.disconnect()
            client.loop_stop()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Publish from any thread (paho queues it while disconnected)."""
        self._client.publish(topic, payload, qos=qos, retain=retain)

    # -- paho callbacks (network thread) -------------------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        filters: tuple[str, ...],
        flags: Any,
        reason: ReasonCode,
        _props: Any,
    ) -> None:
        if reason.is_failure:
            logger.error("broker refused the hub: %s", reason)
            return
        self.connects += 1
        # Acks and alarms are small: do not let Nagle hold them for a delayed ACK (~40 ms).
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Subscribe on every connect: a broker that lost its state must not leave us silent.
        client.subscribe([(topic, 1) for topic in filters])
        if client is self._client:
            client.publish(
                HUB_STATE_TOPIC,
                encode(HubState(online=True, ts=_now_ms(), version=self._version)),
                qos=1,
                retain=True,
            )
        # Ready only once the broker has confirmed the subscriptions (see _on_subscribe).
        logger.info("hub connected to broker (session present: %s)", flags.session_present)

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        if any(getattr(r, "is_failure", False) for r in reasons):
            logger.error("broker refused a subscription of the hub: %s", reasons)
            return
        with self._lock:
            self._up_count += 1
            ready = self._up_count >= len(self._clients)
        if ready:
            self.connected.set()
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._up.set)

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        with self._lock:
            self._up_count = max(0, self._up_count - 1)
        self.connected.clear()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._up.clear)
        logger.warning("hub disconnected from broker: %s", reason)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        if topic.endswith(_URGENT_SUFFIXES):
            lane = self._urgent
        else:
            lane = self._inbox
            if len(lane) >= MAX_INBOX and not self._closing:
                self.backpressure_waits += 1
                self._room.clear()
                self._wake_loop()
                # Returning later means acknowledging later: the broker holds what follows.
                while not self._room.wait(1.0) and not self._closing:
                    pass
        lane.append((topic, bytes(msg.payload), _now_ms()))
        self._wake_loop()

    def _wake_loop(self) -> None:
        with self._lock:
            if self._scheduled or self._loop is None:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._drain)

    # -- event loop --------------------------------------------------------------------------

    def _drain(self) -> None:
        with self._lock:
            self._scheduled = False
        handler, urgent, inbox = self._handler, self._urgent, self._inbox
        while urgent:
            handler(*urgent.popleft())
        # A time budget, not a count: every turn of the loop stays short, so an alarm's webhook
        # request (which needs several turns) is not slowed down by a telemetry backlog.
        deadline = time.perf_counter() + _SLICE_S
        while inbox and time.perf_counter() < deadline:
            handler(*inbox.popleft())
        if not self._room.is_set() and len(inbox) <= MAX_INBOX // 2:
            self._room.set()
        if self._on_burst is not None:
            self._on_burst()
        if urgent or inbox:
            with self._lock:
                if self._scheduled or self._loop is None:
                    return
                self._scheduled = True
            # call_soon, not a loop: the writer and the acknowledgements get their turn.
            self._loop.call_soon(self._drain)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
