"""MQTT for local sirens and displays: a compact JSON message per transition, QoS 1.

With ``retain``, a firing message is retained (a display that starts later still shows it) and
the resolve clears it: the resolved JSON goes out unretained, then an empty retained message on
the same topic removes the retained one (subscribers see that empty payload as "cleared").

Alerts are rare, so each send opens its own connection (under a lock, since the client id is
fixed); nothing is kept open between alerts.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from typing import Any

import aiomqtt
import orjson

from hub.channels.settings import MqttChannelSettings
from hub.channels.text import wanted
from hub.notifiers import Notification, NotifyError

_LEVEL_UNSAFE = re.compile(r"[/+#\s]+")
_LABELS = ("site", "grid", "grid_name", "building", "floor", "unit", "area", "place")


def alert_payload(notification: Notification) -> bytes:
    """The compact JSON a siren controller or display reads."""
    alert = notification.alert
    resolved = notification.transition == "resolved"
    body: dict[str, Any] = {
        "id": alert.id,
        "status": "resolved" if resolved else "firing",
        "severity": alert.severity,
        "rule": alert.rule_id,
        "device": alert.device,
        **{k: alert.labels[k] for k in _LABELS if alert.labels.get(k)},
        "summary": alert.summary,
        "message": alert.message,
        "since": alert.firing_ms or alert.started_ms,
    }
    if resolved:
        body["resolved"] = alert.resolved_ms
    return orjson.dumps(body)


def _level(value: str) -> str:
    return _LEVEL_UNSAFE.sub("_", value) or "-"


def alert_topic(template: str, notification: Notification) -> str:
    """``template`` with its placeholders filled, each made safe as one topic level."""
    alert = notification.alert
    values = {
        "site": alert.labels.get("site", ""),
        "severity": alert.severity,
        "rule": alert.rule_id,
        "device": alert.device,
        "grid": alert.labels.get("grid", ""),
        "building": alert.labels.get("building", ""),
        "alert_id": alert.id,
        "transition": notification.transition,
    }
    return re.sub(r"\{([a-z_]+)\}", lambda m: _level(values[m.group(1)]), template)


class MqttNotifier:
    """Publishes alerts to a broker."""

    def __init__(self, settings: MqttChannelSettings) -> None:
        self.name = f"mqtt:{settings.name}"
        self._settings = settings
        self._lock = asyncio.Lock()
        self._tls: ssl.SSLContext | None = None
        if settings.tls_ca_file is not None:
            self._tls = ssl.create_default_context(cafile=settings.tls_ca_file)

    def _client(self) -> aiomqtt.Client:
        s = self._settings
        return aiomqtt.Client(
            s.host,
            s.port,
            identifier=s.client_id,
            username=s.username,
            password=None if s.password is None else s.password.get_secret_value(),
            clean_session=True,
            timeout=s.timeout_s,
            tls_context=self._tls,
            logger=logging.getLogger(__name__),
        )

    async def send(self, notification: Notification) -> None:
        """Publish one transition (QoS 1, waits for PUBACK) or raise :class:`NotifyError`."""
        if not wanted(self._settings, notification):
            return
        s = self._settings
        topic = alert_topic(s.topic, notification)
        payload = alert_payload(notification)
        firing = notification.transition != "resolved"
        try:
            async with self._lock, asyncio.timeout(s.timeout_s * 3), self._client() as client:
                await client.publish(topic, payload, qos=1, retain=s.retain and firing)
                if s.retain and not firing:
                    await client.publish(topic, b"", qos=1, retain=True)
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            raise NotifyError(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Nothing to release: every send opens its own connection."""
