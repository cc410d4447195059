"""Grafana annotations against a fake Grafana speaking the documented annotations API."""

# Full-width Chinese punctuation in expected texts is meant.
# ruff: noqa: RUF001

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from typing import Any, Self

import pytest
from pydantic import SecretStr, ValidationError

from hub.channels import GrafanaAnnotationNotifier, GrafanaAnnotationSettings
from hub.notifiers import NotifyError
from tests.hub.channels.conftest import FIRING_MS, RESOLVED_MS, firing, resolved
from tests.servers import LOOPBACK, free_port

TOKEN = "glsa_test_token"  # noqa: S105 - a test value


class FakeGrafana:
    """``POST /api/annotations`` and ``PATCH /api/annotations/:id``, as documented.

    Requests are recorded as (method, path, headers, body); annotations are kept by id.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.annotations: dict[int, dict[str, Any]] = {}
        self.fail_with: int | None = None
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.requests.append((self.command, self.path, headers, body))
                if headers.get("authorization") != f"Bearer {TOKEN}":
                    self._answer(401, {"message": "Unauthorized"})
                    return
                if fake.fail_with is not None:
                    self._answer(fake.fail_with, {"message": "database is locked"})
                    return
                if self.command == "POST" and self.path == "/api/annotations":
                    if not isinstance(body, dict) or "text" not in body:
                        self._answer(400, {"message": "text is required"})
                        return
                    new_id = len(fake.annotations) + 1
                    fake.annotations[new_id] = dict(body)
                    self._answer(200, {"message": "Annotation added", "id": new_id})
                    return
                match = re.fullmatch(r"/api/annotations/(\d+)", self.path)
                if self.command == "PATCH" and match and int(match[1]) in fake.annotations:
                    assert isinstance(body, dict)
                    fake.annotations[int(match[1])].update(body)
                    self._answer(200, {"message": "Annotation patched"})
                    return
                self._answer(404, {"message": "Not found"})

            do_POST = do_PATCH = do_PUT = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as fake:
        yield fake


def notifier_for(url: str, **options: Any) -> GrafanaAnnotationNotifier:
    base: dict[str, Any] = {"name": "board", "url": url, "token": SecretStr(TOKEN)}
    return GrafanaAnnotationNotifier(GrafanaAnnotationSettings(**(base | options)))


async def test_firing_creates_and_resolve_patches_a_region(grafana):
    notifier = notifier_for(grafana.url, dashboard_uid="security-wall", panel_id=4)
    try:
        await notifier.send(firing())
        assert notifier.annotation_ids == {"a1b2c3d4e5f60718": 1}
        await notifier.send(resolved())
    finally:
        await notifier.aclose()
    (m1, p1, h1, create), (m2, p2, _, patch) = grafana.requests
    assert (m1, p1) == ("POST", "/api/annotations")
    assert h1["content-type"].startswith("application/json")
    assert set(create) == {"time", "tags", "text", "dashboardUID", "panelId"}
    assert create["time"] == FIRING_MS
    assert create["tags"] == ["smoke-detected", "critical", "north", "anju"]
    assert create["dashboardUID"] == "security-wall"
    assert create["panelId"] == 4
    assert create["text"].startswith("【告警·紧急】Building 3, floor 2, unit 201")
    assert "网格：North grid" in create["text"]
    assert (m2, p2) == ("PATCH", "/api/annotations/1")
    assert set(patch) == {"timeEnd", "text"}
    assert patch["timeEnd"] == RESOLVED_MS
    assert patch["text"].startswith("【已恢复·紧急】")
    assert grafana.annotations[1]["time"] == FIRING_MS
    assert grafana.annotations[1]["timeEnd"] == RESOLVED_MS
    assert notifier.annotation_ids == {}


async def test_a_resolve_after_a_restart_creates_the_whole_region(grafana):
    notifier = notifier_for(grafana.url)  # a fresh notifier: the id map is empty
    try:
        await notifier.send(resolved())
    finally:
        await notifier.aclose()
    ((method, path, _, body),) = grafana.requests
    assert (method, path) == ("POST", "/api/annotations")
    assert body["time"] == FIRING_MS
    assert body["timeEnd"] == RESOLVED_MS
    assert "dashboardUID" not in body  # an organisation-wide annotation


async def test_a_retried_firing_does_not_create_a_second_annotation(grafana):
    notifier = notifier_for(grafana.url)
    try:
        await notifier.send(firing())
        await notifier.send(firing())
    finally:
        await notifier.aclose()
    assert len(grafana.requests) == 1


async def test_grafana_errors_become_notify_errors(grafana):
    notifier = notifier_for(grafana.url)
    bad_token = notifier_for(grafana.url, token=SecretStr("wrong"))
    try:
        grafana.fail_with = 500
        with pytest.raises(
            NotifyError, match="grafana:board: Server Error 500: database is locked"
        ):
            await notifier.send(firing())
        with pytest.raises(NotifyError, match="Unauthorized"):
            await bad_token.send(firing())
    finally:
        await notifier.aclose()
        await bad_token.aclose()


async def test_unreachable_grafana_is_a_notify_error():
    notifier = notifier_for(f"http://{LOOPBACK}:{free_port()}", timeout_s=2)
    try:
        with pytest.raises(NotifyError, match="grafana:board"):
            await notifier.send(firing())
    finally:
        await notifier.aclose()


def test_settings_checks():
    with pytest.raises(ValidationError, match="not both"):
        GrafanaAnnotationSettings(
            name="b", url="http://g", token=SecretStr("t"), username="u", password=SecretStr("p")
        )
    with pytest.raises(ValidationError, match="`panel_id` needs `dashboard_uid`"):
        GrafanaAnnotationSettings(name="b", url="http://g", panel_id=3)
