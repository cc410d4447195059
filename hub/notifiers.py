"""Notification channels.  First cut: a generic webhook (Alertmanager-compatible) and the log."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any, Protocol

import httpx

from hub.errors import HubError
from hub.store import AlertRecord

logger = logging.getLogger(__name__)

_ZERO_TIME = "0001-01-01T00:00:00Z"


class NotifyError(HubError):
    """A notification could not be delivered (it is retried)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Contact:
    """How to reach a routed person, as the site file gives it."""

    name: str
    phone: str | None = None
    email: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Notification:
    """One transition of one alert, for a set of recipients."""

    alert: AlertRecord
    transition: str  # "firing" | "resolved" | "flapping" | "flapping-end"
    recipients: tuple[str, ...]  # human-readable names of who should act
    note: str = ""  # why it is sent again: an escalation step, a repeat, a re-trigger
    others: tuple[AlertRecord, ...] = ()  # the rest of a group notified together
    key: str = ""  # idempotency key of this delivery, for receivers that deduplicate
    contacts: tuple[Contact, ...] = ()  # the recipients' phones and addresses from the site file


class Notifier(Protocol):
    """A channel that delivers notifications."""

    name: str

    async def send(self, notification: Notification) -> None:
        """Deliver or raise :class:`NotifyError`."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def _rfc3339(ts_ms: int | None) -> str:
    if ts_ms is None:
        return _ZERO_TIME
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def alertmanager_payload(notification: Notification, receiver: str) -> dict[str, Any]:
    """The payload Alertmanager's webhook receiver sends (version 4); a group is one payload."""
    alert = notification.alert
    status = "resolved" if notification.transition == "resolved" else "firing"
    shared = {"recipients": ", ".join(notification.recipients)}
    if notification.note:
        shared["note"] = notification.note
    first = _am_alert(alert, status, shared)
    alerts = [first, *(_am_alert(a, status, shared) for a in notification.others)]
    return {
        "version": "4",
        "groupKey": f"{{}}:{{alertname={alert.rule_id!r}, grid={alert.labels.get('grid', '')!r}}}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": alert.rule_id},
        # With one alert everything is common; a group shares its rule name.
        "commonLabels": first["labels"]
        if not notification.others
        else {"alertname": alert.rule_id},
        "commonAnnotations": first["annotations"],
        "externalURL": "",
        "alerts": alerts,
    }


def _am_alert(alert: AlertRecord, status: str, shared: dict[str, str]) -> dict[str, Any]:
    labels = {
        "alertname": alert.rule_id,
        "severity": alert.severity,
        "issue_class": alert.issue_class,
        **{k: v for k, v in alert.labels.items() if v},
    }
    annotations = {
        "summary": alert.summary,
        "description": alert.message,
        "place": alert.labels.get("place", ""),
        **shared,
    }
    if alert.value is not None:
        annotations["value"] = f"{alert.value:g}"
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": _rfc3339(alert.firing_ms or alert.started_ms),
        "endsAt": _rfc3339(alert.resolved_ms),
        "generatorURL": "",
        "fingerprint": alert.id,
    }


class WebhookNotifier:
    """POSTs an Alertmanager-compatible JSON payload."""

    def __init__(
        self, name: str, url: str, *, headers: dict[str, str] | None = None, timeout_s: float = 5.0
    ) -> None:
        self.name = f"webhook:{name}"
        self._receiver = name
        self._url = url
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=headers or {})

    async def send(self, notification: Notification) -> None:
        """POST the payload; any non-2xx answer is a failure."""
        try:
            response = await self._client.post(
                self._url,
                json=alertmanager_payload(notification, self._receiver),
                headers={"Idempotency-Key": notification.key} if notification.key else None,
            )
        except httpx.HTTPError as exc:
            raise NotifyError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:  # noqa: PLR2004
            raise NotifyError(f"{self.name}: HTTP {response.status_code}")

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


class LogNotifier:
    """Writes every notification to the log (always on in the demo)."""

    name = "log"

    async def send(self, notification: Notification) -> None:
        """Log one line."""
        alert = notification.alert
        logger.warning(
            "ALERT %s [%s] %s: %s (to: %s)",
            notification.transition.upper(),
            alert.severity,
            alert.rule_id,
            alert.message,
            ", ".join(notification.recipients) or "-",
        )
        if notification.note:
            logger.warning("ALERT %s note: %s", notification.alert.id, notification.note)

    async def aclose(self) -> None:
        """Nothing to release."""
