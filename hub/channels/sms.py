"""SMS through a configurable HTTP gateway: one short text per phone number.

Numbers already served for an (alert, transition) are remembered in memory, so a retry after a
partial failure only texts the numbers that did not get it (a restart forgets this).
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import httpx

from hub.channels.settings import SmsGatewaySettings
from hub.channels.text import person_names, render, wanted
from hub.notifiers import Notification, NotifyError

_CONTENT_TYPES = {
    "json": "application/json; charset=utf-8",
    "form": "application/x-www-form-urlencoded",
    "text": "text/plain; charset=utf-8",
}
_SENT_MEMORY = 10_000


def fill(template: str, values: dict[str, str], escape: str) -> str:
    """Replace ``{name}`` placeholders (only those in ``values``), escaped for their place."""
    out = template
    for key, value in values.items():
        if escape == "json":
            shown = json.dumps(value, ensure_ascii=False)[1:-1]
        elif escape in {"form", "url"}:
            shown = (
                urllib.parse.quote_plus(value) if escape == "form" else urllib.parse.quote(value)
            )
        else:
            shown = value
        out = out.replace("{" + key + "}", shown)
    return out


def _dig(answer: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(answer, dict) or part not in answer:
            return None
        answer = answer[part]
    return answer


class SmsGatewayNotifier:
    """Texts every configured and routed phone number through an HTTP gateway."""

    def __init__(self, settings: SmsGatewaySettings) -> None:
        self.name = f"sms:{settings.name}"
        self._settings = settings
        self._url = settings.url.get_secret_value()
        self._client = httpx.AsyncClient(
            timeout=settings.timeout_s,
            headers={k: v.get_secret_value() for k, v in settings.headers.items()},
        )
        self._sent: dict[tuple[str, str, str], None] = {}

    def phones(self, notification: Notification) -> list[str]:
        """``phones`` plus the numbers of routed recipients, without duplicates.

        A routed person's number is the channel's ``directory`` entry, else (with
        ``site_contacts``) the phone the site file gives them.
        """
        found = list(self._settings.phones)
        own = (
            {c.name: c.phone for c in notification.contacts} if self._settings.site_contacts else {}
        )
        for person in person_names(notification):
            number = self._settings.directory.get(person) or own.get(person)
            if number is not None and number not in found:
                found.append(number)
        return found

    def text(self, notification: Notification) -> str:
        """The one-segment text for ``notification``."""
        return render(notification, self._settings.timezone).short(self._settings.prefix)

    async def send(self, notification: Notification) -> None:
        """Text every number or raise :class:`NotifyError` naming those that failed."""
        if not wanted(self._settings, notification):
            return
        text = self.text(notification)
        failures: list[str] = []
        for phone in self.phones(notification):
            key = (notification.alert.id, notification.transition, phone)
            if key in self._sent:
                continue
            reason = await self._send_one(phone, text)
            if reason is None:
                self._sent[key] = None
                while len(self._sent) > _SENT_MEMORY:
                    del self._sent[next(iter(self._sent))]
            else:
                failures.append(f"{_mask(phone)}: {reason}")
        if failures:
            raise NotifyError(f"{self.name}: " + "; ".join(failures))

    async def _send_one(self, phone: str, text: str) -> str | None:
        s = self._settings
        values = {"phone": phone, "text": text}
        url = fill(self._url, values, "url")
        content = None
        headers = {}
        if s.method != "GET":
            content = fill(s.body_template, values, s.body_format).encode()
            headers["Content-Type"] = _CONTENT_TYPES[s.body_format]
        try:
            response = await self._client.request(s.method, url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        if response.status_code >= 300:  # noqa: PLR2004
            return f"HTTP {response.status_code}"
        if s.success_field is None:
            return None
        try:
            value = _dig(response.json(), s.success_field)
        except ValueError:
            return "the answer is not JSON"
        if value is None or str(value) not in s.success_values:
            return f"{s.success_field}={value!r}"
        return None

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


def _mask(phone: str) -> str:
    """``13800138000`` → ``138****8000``: numbers stay out of logs."""
    keep = 3
    if len(phone) <= 2 * keep + 1:
        return phone
    return phone[:keep] + "*" * (len(phone) - 2 * keep - 1) + phone[-(keep + 1) :]
