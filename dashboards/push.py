"""Push dashboards to a running Grafana through its HTTP API (``grafana-client``).

For sites that manage Grafana by hand rather than by file provisioning.  The folder is created
when missing (``GET /api/folders/:uid``, then ``POST /api/folders``), and each dashboard is
saved with ``POST /api/dashboards/db`` and ``overwrite: true``: its stable uid makes a push
idempotent.  The token is a service-account token, sent as ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import dataclasses
import http
from collections.abc import Iterable
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards.boards import Board
from dashboards.errors import DashboardsError
from dashboards.provisioning import FOLDER_TITLE, FOLDER_UID

PUSH_MESSAGE = "anju dashboards push"


@dataclasses.dataclass(frozen=True, slots=True)
class PushResult:
    """What Grafana answered for one dashboard.

    Attributes:
        uid: the dashboard's uid.
        title: the dashboard's title.
        status: Grafana's ``status`` (``success``).
        version: the new version number Grafana gave the dashboard.
        url: the dashboard's path in Grafana (``/d/<uid>/<slug>``).
    """

    uid: str
    title: str
    status: str
    version: int | None
    url: str


def _ensure_folder(api: GrafanaApi, uid: str, title: str) -> None:
    try:
        api.folder.get_folder(uid)  # type: ignore[no-untyped-call]
    except GrafanaClientError as exc:
        if exc.status_code != http.HTTPStatus.NOT_FOUND:
            raise
        api.folder.create_folder(title, uid=uid)  # type: ignore[no-untyped-call]


def _result(board: Board, answer: Any) -> PushResult:
    data: dict[str, Any] = answer if isinstance(answer, dict) else {}
    version = data.get("version")
    return PushResult(
        uid=str(data.get("uid") or board.uid),
        title=board.title,
        status=str(data.get("status", "")),
        version=version if isinstance(version, int) else None,
        url=str(data.get("url", "")),
    )


def push(
    grafana_url: str,
    token: str,
    dashboards: Iterable[Board],
    *,
    folder_uid: str = FOLDER_UID,
    folder_title: str = FOLDER_TITLE,
    timeout_s: float = 10.0,
) -> list[PushResult]:
    """Save ``dashboards`` in Grafana at ``grafana_url``, in the folder ``folder_uid``.

    Args:
        grafana_url: Grafana's base URL, e.g. ``http://grafana:3000``.
        token: a service-account token with the Editor role on the folder.
        dashboards: the boards to save (e.g. :func:`dashboards.all_boards`).
        folder_uid: the folder to save into; created with ``folder_title`` when missing.
        folder_title: the folder's title when it has to be created.
        timeout_s: per-request timeout.

    Returns:
        One result per dashboard, in order.

    Raises:
        DashboardsError: Grafana refused a request or could not be reached; the message
            names the dashboard and Grafana's answer.
    """
    if not token:
        raise DashboardsError("an API token is required")
    api: GrafanaApi = GrafanaApi.from_url(grafana_url, credential=token, timeout=timeout_s)
    results: list[PushResult] = []
    current = f"folder {folder_uid!r}"
    try:
        _ensure_folder(api, folder_uid, folder_title)
        for board in dashboards:
            current = f"dashboard {board.uid!r}"
            answer = api.dashboard.update_dashboard(  # type: ignore[no-untyped-call]
                {
                    # id null: create it, or with overwrite replace the one with this uid.
                    "dashboard": {**board.to_dict(), "id": None},
                    "folderUid": folder_uid,
                    "overwrite": True,
                    "message": PUSH_MESSAGE,
                }
            )
            results.append(_result(board, answer))
    except GrafanaException as exc:
        raise DashboardsError(f"Grafana refused {current}: {exc.message}") from exc
    except OSError as exc:  # niquests' connection errors are OSErrors
        raise DashboardsError(f"cannot reach Grafana at {grafana_url} ({current}): {exc}") from exc
    finally:
        api.client.s.close()
    return results
