"""Grafana annotations through ``grafana-client``: one region per firing period.

On firing, ``POST /api/annotations`` with ``time`` = the firing time, tags (rule, severity, grid)
and the text; on resolve, ``PATCH /api/annotations/:id`` with ``timeEnd``, which turns the point
into a region.  The annotation id of each firing alert is kept in memory only: after a hub
restart the id is lost, and the resolve then creates a complete region (``time`` and
``timeEnd``) instead, so the board still shows the period, while the old point stays.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import niquests
from grafana_client.api import AsyncGrafanaApi
from grafana_client.client import GrafanaException

from hub.channels.settings import GrafanaAnnotationSettings
from hub.channels.text import render, wanted
from hub.notifiers import Notification, NotifyError

_MAX_REMEMBERED = 10_000


def _base_url(url: str) -> str:
    # grafana-client glues the path prefix straight onto "api": keep a trailing slash.
    parts = urllib.parse.urlsplit(url)
    path = parts.path if not parts.path or parts.path.endswith("/") else parts.path + "/"
    return urllib.parse.urlunsplit(parts._replace(path=path))


class GrafanaAnnotationNotifier:
    """Writes alert periods as Grafana region annotations."""

    def __init__(self, settings: GrafanaAnnotationSettings) -> None:
        self.name = f"grafana:{settings.name}"
        self._settings = settings
        credential: str | tuple[str, str] | None = None
        if settings.token is not None:
            credential = settings.token.get_secret_value()
        elif settings.username is not None and settings.password is not None:
            credential = (settings.username, settings.password.get_secret_value())
        self._api = AsyncGrafanaApi.from_url(
            _base_url(settings.url), credential=credential, timeout=settings.timeout_s
        )
        self.annotation_ids: dict[str, int] = {}
        """alert id → annotation id, for the resolve (lost on restart; see the module doc)."""

    def tags(self, notification: Notification) -> list[str]:
        """Rule, severity and grid, then the configured tags."""
        alert = notification.alert
        tags = [alert.rule_id, alert.severity, alert.labels.get("grid", "")]
        tags += [t for t in self._settings.tags if t not in tags]
        return [t for t in tags if t]

    async def send(self, notification: Notification) -> None:
        """Create or close the annotation, or raise :class:`NotifyError`."""
        if not wanted(self._settings, notification):
            return
        alert = notification.alert
        text = render(notification, self._settings.timezone).plain()
        start = alert.firing_ms or alert.started_ms
        known = self.annotation_ids.get(alert.id)
        if notification.transition == "resolved" and known is not None:
            await self._call(
                "PATCH", f"/annotations/{known}", {"timeEnd": alert.resolved_ms, "text": text}
            )
            del self.annotation_ids[alert.id]
            return
        if notification.transition != "resolved" and known is not None:
            return  # a retry after the create went through but its answer was lost
        payload: dict[str, Any] = {"time": start, "tags": self.tags(notification), "text": text}
        if notification.transition == "resolved" and alert.resolved_ms is not None:
            payload["timeEnd"] = alert.resolved_ms
        if self._settings.dashboard_uid is not None:
            payload["dashboardUID"] = self._settings.dashboard_uid
        if self._settings.panel_id is not None:
            payload["panelId"] = self._settings.panel_id
        answer = await self._call("POST", "/annotations", payload)
        annotation = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(annotation, int):
            raise NotifyError(f"{self.name}: no annotation id in the answer")
        if notification.transition != "resolved":
            self.annotation_ids[alert.id] = annotation
            while len(self.annotation_ids) > _MAX_REMEMBERED:
                del self.annotation_ids[next(iter(self.annotation_ids))]

    async def _call(self, method: str, path: str, payload: dict[str, Any]) -> Any:
        runner = getattr(self._api.client, method)
        try:
            return await runner(path, json=payload)
        except GrafanaException as exc:
            raise NotifyError(f"{self.name}: {exc.message}") from exc
        except (niquests.exceptions.RequestException, OSError, ValueError) as exc:
            raise NotifyError(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._api.client.s.close()
