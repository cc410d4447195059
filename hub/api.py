"""The hub's HTTP API, for ``anju alerts``, ``anju status`` and the console.

Alerts (list, show, acknowledge, resolve, assign, comment), silences and the fleet's status.

JSON in and out.  With a token configured every request must carry ``Authorization: Bearer
<token>``; without one the API listens on loopback only (the hub refuses to start otherwise).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.errors import ConfigError
from hub.lifecycle import Alert, LifecycleError, Silence
from rules import parse_duration_ms

if TYPE_CHECKING:
    from hub.app import Hub
    from hub.config import ApiSettings

logger = logging.getLogger(__name__)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def alert_json(alert: Alert, recipients: tuple[str, ...] = ()) -> dict[str, Any]:
    """An alert as the API shows it."""
    data = alert.to_dict()
    data["place"] = alert.labels.get("place", "")
    data["grid"] = alert.labels.get("grid", "")
    data["grid_name"] = alert.labels.get("grid_name", "")
    data["recipients"] = list(recipients)
    return data


def silence_json(silence: Silence) -> dict[str, Any]:
    """A silence as the API shows it."""
    return silence.to_dict()


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts local connections."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HubApi:
    """Routes bound to one hub."""

    def __init__(self, hub: Hub, settings: ApiSettings) -> None:
        if settings.token is None and not is_loopback(settings.host):
            raise ConfigError(
                "api", "token", f"listening on {settings.host} needs a token (${{ANJU_API_TOKEN}})"
            )
        self._hub = hub
        self._token = settings.token.get_secret_value().encode() if settings.token else None
        self.settings = settings
        routes = [
            Route("/api/alerts", self.list_alerts),
            Route("/api/alerts/{ref}", self.show_alert),
            Route("/api/alerts/{ref}/{action}", self.act_on_alert, methods=["POST"]),
            Route("/api/silences", self.list_silences),
            Route("/api/silences", self.add_silence, methods=["POST"]),
            Route("/api/silences/{silence_id}", self.expire_silence, methods=["DELETE"]),
            Route("/api/status", self.status),
        ]
        self.app = Starlette(routes=[_guarded(r, self._authorised) for r in routes])

    def _authorised(self, request: Request) -> bool:
        if self._token is None:
            return True
        given = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
        return hmac.compare_digest(given, self._token)

    async def list_alerts(self, request: Request) -> Response:
        """``GET /api/alerts?state=active|all&grid=G&limit=N``."""
        active = request.query_params.get("state", "active") == "active"
        grid = request.query_params.get("grid") or None
        try:
            limit = int(request.query_params.get("limit", "200"))
        except ValueError:
            return _error(400, "limit must be a number")
        alerts = await self._hub.alert_store.alerts(active_only=active, grid=grid, limit=limit)
        manager = self._hub.alerts
        return _json([alert_json(self._live(a), manager.recipients(self._live(a))) for a in alerts])

    def _live(self, alert: Alert) -> Alert:
        # The book holds the newest state of an active alert; the store has it a moment later.
        return self._hub.alerts.book.by_id.get(alert.id, alert)

    async def show_alert(self, request: Request) -> Response:
        """``GET /api/alerts/{id or prefix}``: the alert with its deliveries."""
        found = await self._hub.alert_store.alert(request.path_params["ref"])
        if found is None:
            return _error(
                404, f"no alert {request.path_params['ref']!r} (or the prefix is ambiguous)"
            )
        alert, deliveries = found
        live = self._live(alert)
        data = alert_json(live, self._hub.alerts.recipients(live))
        data["deliveries"] = [dataclasses.asdict(d) for d in deliveries]
        return _json(data)

    async def act_on_alert(self, request: Request) -> Response:
        """``POST /api/alerts/{ref}/ack|resolve|assign|comment`` with ``{"by": ..., ...}``."""
        body = await _body(request)
        if isinstance(body, Response):
            return body
        by = str(body.get("by") or "").strip()
        if not by:
            return _error(400, "say who you are: give 'by'")
        ref, action = request.path_params["ref"], request.path_params["action"]
        manager = self._hub.alerts
        comment = str(body.get("comment") or "")
        try:
            if action == "ack":
                alert = await manager.acknowledge(ref, by, comment)
            elif action == "resolve":
                alert = await manager.resolve(ref, by, comment)
            elif action == "assign":
                alert = await manager.assign(ref, str(body.get("person") or by), by)
            elif action == "comment":
                if not comment:
                    return _error(400, "give the comment's text as 'comment'")
                alert = await manager.comment(ref, by, comment)
            else:
                return _error(404, f"unknown action {action!r} (ack, resolve, assign, comment)")
        except LifecycleError as exc:
            return _error(409, str(exc))
        return _json(alert_json(alert, manager.recipients(alert)))

    async def list_silences(self, request: Request) -> Response:
        """``GET /api/silences``."""
        del request
        return _json([silence_json(s) for s in await self._hub.alert_store.silences()])

    async def add_silence(self, request: Request) -> Response:
        """``POST /api/silences``: silence one alert, or alerts by labels.

        The body gives ``by``, ``comment`` and ``alert`` or ``match``, and ``for`` (a duration
        such as ``2h``) unless it silences one alert until it resolves.
        """
        body = await _body(request)
        if isinstance(body, Response):
            return body
        by = str(body.get("by") or "").strip()
        if not by:
            return _error(400, "say who you are: give 'by'")
        match = body.get("match")
        if match is not None and not (
            isinstance(match, Mapping) and all(isinstance(k, str) for k in match)
        ):
            return _error(400, "match must map label names to a value or a list of values")
        ends_ms = None
        if body.get("for"):
            try:
                ends_ms = self._hub.alerts.now_ms() + parse_duration_ms(body["for"])
            except ValueError as exc:
                return _error(400, f"for: {exc}")
        try:
            silence = await self._hub.alerts.silence(
                by=by,
                comment=str(body.get("comment") or ""),
                match=(
                    {
                        k: [v] if isinstance(v, str) else [str(x) for x in v]
                        for k, v in match.items()
                    }
                    if match is not None
                    else None
                ),
                alert_ref=body.get("alert"),
                ends_ms=ends_ms,
            )
        except LifecycleError as exc:
            return _error(409, str(exc))
        return _json(silence_json(silence), 201)

    async def expire_silence(self, request: Request) -> Response:
        """``DELETE /api/silences/{id}``: end it now."""
        try:
            await self._hub.alerts.expire_silence(request.path_params["silence_id"])
        except LifecycleError as exc:
            return _error(404, str(exc))
        return _json({"expired": request.path_params["silence_id"]})

    async def status(self, request: Request) -> Response:
        """``GET /api/status``: the fleet at a glance."""
        del request
        return _json(await self._hub.status())


async def _body(request: Request) -> dict[str, Any] | Response:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError as exc:
        return _error(400, f"the body is not JSON: {exc}")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    return body


def _guarded(route: Route, allowed: Callable[[Request], bool]) -> Route:
    endpoint: Callable[[Request], Awaitable[Response]] = route.endpoint

    async def guarded(request: Request) -> Response:
        if not allowed(request):
            return _error(401, "a valid bearer token is needed")
        return await endpoint(request)

    return Route(route.path, guarded, methods=sorted(route.methods or ()) or None)


class ApiServer(uvicorn.Server):
    """uvicorn without its signal handlers: the hub's own shutdown stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Leave signals to the hub."""
        yield


def api_server(api: HubApi) -> ApiServer:
    """A server for ``api`` on its configured address."""
    config = uvicorn.Config(
        api.app,
        host=api.settings.host,
        port=api.settings.port,
        log_level="warning",
        lifespan="off",
        access_log=False,
    )
    return ApiServer(config)
