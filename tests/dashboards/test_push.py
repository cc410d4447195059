"""`push` against a FAKE Grafana: the requests must match Grafana's documented HTTP API.

No Grafana runs here.  ``FakeGrafana`` is a stdlib HTTP server that records every request and
answers the three endpoints push uses the way Grafana documents them:

- ``GET /api/folders/:uid`` → 200 with the folder, or 404 ``{"message": "folder not found"}``;
- ``POST /api/folders`` with ``{"uid", "title"}`` → 200 with the folder;
- ``POST /api/dashboards/db`` with ``{"dashboard", "folderUid", "overwrite", "message"}`` →
  200 ``{"id", "uid", "url", "status": "success", "version", "slug"}``.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any, Self

import pytest
from typer.testing import CliRunner

from cli.dashboards import dashboards_app
from dashboards import DashboardsError, all_boards, push
from tests.servers import free_port

TOKEN = "glsa_test-token-0123456789"  # noqa: S105 - a fake token for a fake server


@dataclasses.dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> Recorded:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = Recorded(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            json.loads(raw) if raw else None,
        )
        self.server.fake.requests.append(request)
        return request

    def do_GET(self) -> None:
        request = self._record()
        fake = self.server.fake
        uid = request.path.removeprefix("/api/folders/")
        if request.path.startswith("/api/folders/") and uid in fake.folders:
            self._answer(200, {"uid": uid, "title": fake.folders[uid], "id": 7})
        else:
            self._answer(404, {"message": "folder not found"})

    def do_POST(self) -> None:
        request = self._record()
        fake = self.server.fake
        if request.path == "/api/folders":
            fake.folders[request.body["uid"]] = request.body["title"]
            self._answer(200, {"uid": request.body["uid"], "title": request.body["title"]})
        elif request.path == "/api/dashboards/db":
            if fake.dashboard_status != 200:
                self._answer(fake.dashboard_status, {"message": "version-mismatch"})
                return
            uid = request.body["dashboard"]["uid"]
            fake.versions[uid] = fake.versions.get(uid, 0) + 1
            self._answer(
                200,
                {
                    "id": len(fake.versions),
                    "uid": uid,
                    "url": f"/d/{uid}/{uid}",
                    "status": "success",
                    "version": fake.versions[uid],
                    "slug": uid,
                },
            )
        else:
            self._answer(404, {"message": "not found"})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGrafana


class FakeGrafana:
    """A FAKE Grafana HTTP API (folders and dashboards only), recording every request."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.folders: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.dashboard_status = 200
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def fake_grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as fake:
        yield fake


def test_push_sends_the_documented_requests(fake_grafana):
    boards = all_boards()
    results = push(fake_grafana.url, TOKEN, boards)

    folder_get, folder_post, *saves = fake_grafana.requests
    assert (folder_get.method, folder_get.path) == ("GET", "/api/folders/anju")
    assert (folder_post.method, folder_post.path) == ("POST", "/api/folders")
    assert folder_post.body == {"title": "anju", "uid": "anju"}
    assert len(saves) == len(boards)
    for request, board in zip(saves, boards, strict=True):
        assert request.method == "POST"
        assert request.path == "/api/dashboards/db"
        assert request.headers["content-type"].startswith("application/json")
        assert request.body["overwrite"] is True
        assert request.body["folderUid"] == "anju"
        assert request.body["message"]
        sent = request.body["dashboard"]
        assert sent["id"] is None
        assert sent["uid"] == board.uid
        assert {k: v for k, v in sent.items() if k != "id"} == board.to_dict()
    for request in fake_grafana.requests:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert TOKEN not in request.path

    assert [r.uid for r in results] == [b.uid for b in boards]
    assert all(r.status == "success" and r.version == 1 for r in results)
    assert results[0].url == f"/d/{boards[0].uid}/{boards[0].uid}"


def test_push_twice_overwrites_and_keeps_an_existing_folder(fake_grafana):
    boards = all_boards()[:1]
    push(fake_grafana.url, TOKEN, boards)
    fake_grafana.requests.clear()
    (result,) = push(fake_grafana.url, TOKEN, boards)
    assert [(r.method, r.path) for r in fake_grafana.requests] == [
        ("GET", "/api/folders/anju"),
        ("POST", "/api/dashboards/db"),
    ]
    assert result.version == 2


def test_push_reports_what_grafana_refused(fake_grafana):
    fake_grafana.dashboard_status = 412
    with pytest.raises(DashboardsError, match=r"anju-security-wall.*version-mismatch"):
        push(fake_grafana.url, TOKEN, all_boards())


def test_push_reports_an_unreachable_grafana():
    with pytest.raises(DashboardsError, match="cannot reach Grafana"):
        push(f"http://127.0.0.1:{free_port()}", TOKEN, all_boards(), timeout_s=2)


def test_push_needs_a_token(fake_grafana):
    with pytest.raises(DashboardsError, match="token"):
        push(fake_grafana.url, "", all_boards())
    assert fake_grafana.requests == []


def test_cli_push_uses_the_token_from_the_environment(fake_grafana):
    result = CliRunner().invoke(
        dashboards_app,
        ["push", "--url", fake_grafana.url, "--token-env", "ANJU_TEST_GRAFANA_TOKEN"],
        env={"ANJU_TEST_GRAFANA_TOKEN": TOKEN, "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "anju-welfare" in result.output
    assert TOKEN not in result.output
    saves = [r for r in fake_grafana.requests if r.path == "/api/dashboards/db"]
    assert len(saves) == 4
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in saves)
