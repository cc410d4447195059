"""Group robots of WeCom (企业微信), DingTalk (钉钉) and Feishu / Lark (飞书).

All three take a JSON POST on a webhook URL that holds the robot's key, and answer HTTP 200 with
an error code in the JSON body: a non-zero code is a failure, like any non-2xx status.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx

from hub.channels.settings import (
    DingTalkRobotSettings,
    FeishuRobotSettings,
    HttpChannelBase,
    WeComRobotSettings,
)
from hub.channels.text import AlertText, render, wanted
from hub.notifiers import Notification, NotifyError

WECOM_MAX_BYTES = 4096  # markdown.content limit
DINGTALK_MAX_BYTES = 20_000
FEISHU_TEMPLATE = {"critical": "red", "major": "orange", "minor": "yellow", "warning": "blue"}


def wall_ms() -> int:
    """Wall-clock milliseconds (the robots check their signatures against it)."""
    return time.time_ns() // 1_000_000


def cut_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - len("…".encode())].decode(errors="ignore") + "…"


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    r"""DingTalk's ``sign``: base64(HMAC-SHA256(secret, "{timestamp}\n{secret}")), not quoted."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    r"""Feishu's ``sign``: base64(HMAC-SHA256(key="{timestamp}\n{secret}", msg=b""))."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class _Robot:
    """POST JSON, then check the HTTP status and the error code in the answer."""

    kind = "robot"
    code_fields: tuple[str, ...] = ("errcode",)

    def __init__(
        self,
        settings: HttpChannelBase,
        url: str,
        *,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.name = f"{self.kind}:{settings.name}"
        self._settings = settings
        self._url = url
        self._clock_ms = clock_ms
        self._client = httpx.AsyncClient(timeout=settings.timeout_s)

    def _request(self, text: AlertText) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def _fail(self, reason: str) -> NotifyError:
        # The URL holds the robot's key: keep it out of logs and delivery records.
        return NotifyError(f"{self.name}: {reason.replace(self._url, '<url>')}")

    async def send(self, notification: Notification) -> None:
        """Deliver one notification or raise :class:`NotifyError`."""
        if not wanted(self._settings, notification):
            return
        url, body = self._request(render(notification, self._settings.timezone))
        try:
            response = await self._client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise self._fail(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:  # noqa: PLR2004
            raise self._fail(f"HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError as exc:
            raise self._fail("the answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise self._fail("the answer is not a JSON object")
        for field in self.code_fields:
            if field in answer:
                if answer[field] not in {0, "0"}:
                    message = (
                        answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage")
                    )
                    raise self._fail(f"{field} {answer[field]}: {message}")
                return
        raise self._fail(f"no {' or '.join(self.code_fields)} in the answer")

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


class WeComRobotNotifier(_Robot):
    """A WeCom group robot: ``{"msgtype": "markdown", "markdown": {"content": ...}}``."""

    kind = "wecom"

    def __init__(
        self, settings: WeComRobotSettings, *, clock_ms: Callable[[], int] = wall_ms
    ) -> None:
        super().__init__(settings, settings.url.get_secret_value(), clock_ms=clock_ms)

    def _request(self, text: AlertText) -> tuple[str, dict[str, Any]]:
        content = cut_bytes(text.markdown(wecom=True), WECOM_MAX_BYTES)
        return self._url, {"msgtype": "markdown", "markdown": {"content": content}}


class DingTalkRobotNotifier(_Robot):
    """A DingTalk group robot; with a secret, ``timestamp`` and ``sign`` go in the query."""

    kind = "dingtalk"

    def __init__(
        self, settings: DingTalkRobotSettings, *, clock_ms: Callable[[], int] = wall_ms
    ) -> None:
        super().__init__(settings, settings.url.get_secret_value(), clock_ms=clock_ms)
        self._secret = None if settings.secret is None else settings.secret.get_secret_value()
        self._at = settings.at_mobiles

    def signed_url(self, timestamp_ms: int) -> str:
        """The webhook URL with ``timestamp`` and the URL-encoded ``sign`` appended."""
        if self._secret is None:
            return self._url
        sign = urllib.parse.quote_plus(dingtalk_sign(self._secret, timestamp_ms))
        joiner = "&" if urllib.parse.urlsplit(self._url).query else "?"
        return f"{self._url}{joiner}timestamp={timestamp_ms}&sign={sign}"

    def _request(self, text: AlertText) -> tuple[str, dict[str, Any]]:
        body = text.markdown()
        at = () if text.resolved else self._at
        if at:
            # DingTalk only notifies a mobile that also appears as @mobile in the text.
            body += "  \n" + " ".join(f"@{m}" for m in at)
        payload = {
            "msgtype": "markdown",
            "markdown": {"title": text.title, "text": cut_bytes(body, DINGTALK_MAX_BYTES)},
            "at": {"atMobiles": list(at), "isAtAll": False},
        }
        return self.signed_url(self._clock_ms()), payload


class FeishuRobotNotifier(_Robot):
    """A Feishu / Lark group robot: a card (or text), signed in the body when a secret is set."""

    kind = "feishu"
    code_fields = ("code", "StatusCode")

    def __init__(
        self, settings: FeishuRobotSettings, *, clock_ms: Callable[[], int] = wall_ms
    ) -> None:
        super().__init__(settings, settings.url.get_secret_value(), clock_ms=clock_ms)
        self._secret = None if settings.secret is None else settings.secret.get_secret_value()
        self._card = settings.card

    def _request(self, text: AlertText) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {}
        if self._secret is not None:
            timestamp = self._clock_ms() // 1000
            payload["timestamp"] = str(timestamp)
            payload["sign"] = feishu_sign(self._secret, timestamp)
        if self._card:
            lines = "\n".join(f"**{k}**：{v}" for k, v in text.fields())  # noqa: RUF001
            payload["msg_type"] = "interactive"
            payload["card"] = {
                "config": {"wide_screen_mode": True},
                "header": {
                    "template": "green"
                    if text.resolved
                    else FEISHU_TEMPLATE.get(text.severity, "grey"),
                    "title": {"tag": "plain_text", "content": text.title},
                },
                "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": lines}}],
            }
        else:
            payload["msg_type"] = "text"
            payload["content"] = {"text": text.plain()}
        return self._url, payload
