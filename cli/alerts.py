"""``anju alerts …`` and ``anju status``: operators talk to the running hub's HTTP API."""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import os
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table

alerts_app = typer.Typer(
    help="Operate on alerts: list, show, acknowledge, resolve, assign, comment, silence.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

DEFAULT_CONFIG = Path("config/hub.yaml")

HubUrl = Annotated[
    str | None,
    typer.Option("--hub", envvar="ANJU_HUB_URL", help="the hub's API, e.g. http://127.0.0.1:8470"),
]
Token = Annotated[
    str | None, typer.Option("--token", envvar="ANJU_API_TOKEN", help="the API's bearer token")
]
Config = Annotated[
    Path, typer.Option("--config", "-c", help="hub config, to find the API when --hub is not given")
]
By = Annotated[
    str | None,
    typer.Option("--by", envvar="ANJU_OPERATOR", help="who you are (default: your login name)"),
]
Json = Annotated[bool, typer.Option("--json", help="print JSON")]
AlertId = Annotated[str, typer.Argument(help="alert id (a unique prefix is enough)")]

_SEVERITY_STYLE = {"critical": "bold red", "major": "red", "minor": "yellow", "warning": "cyan"}


def _fail(message: str, hint: str = "") -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}")
    if hint:
        err_console.print(f"[dim]{hint}[/dim]")
    raise typer.Exit(1)


def _base_url(hub: str | None, config: Path) -> str:
    if hub:
        return hub.rstrip("/")
    from pydantic import ValidationError  # noqa: PLC0415

    from hub.config import ApiSettings  # noqa: PLC0415
    from wire.placeholders import ConfigFileError, expand_placeholders, read_yaml  # noqa: PLC0415

    # Only the api section is read: the hub's other secrets need not be in this shell.
    try:
        raw = read_yaml(config)
        section = raw.get("api", {}) if isinstance(raw, dict) else {}
        api = ApiSettings.model_validate(expand_placeholders(section, source=str(config)))
    except (ConfigFileError, ValidationError, KeyError) as exc:
        _fail(f"{config}: {exc}", "give the API with --hub URL or the hub config with --config")
    if not api.port:
        _fail(f"{config} turns the hub's API off", "set api.port (e.g. 8470) and restart the hub")
    host = "127.0.0.1" if api.host in {"0.0.0.0", "::"} else api.host  # noqa: S104
    return f"http://{host}:{api.port}"


class HubClient:
    """A small client of the hub's API with errors that say what to do."""

    def __init__(self, hub: str | None, token: str | None, config: Path) -> None:
        self.base = _base_url(hub, config)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request; the decoded JSON answer."""
        try:
            with httpx.Client(base_url=self.base, headers=self._headers, timeout=10) as client:
                response = client.request(
                    method, path, content=orjson.dumps(body) if body is not None else None
                )
        except httpx.HTTPError as exc:
            _fail(
                f"cannot reach the hub at {self.base}: {exc}",
                "is the hub running (`anju hub run`)? is --hub right?",
            )
        data = orjson.loads(response.content or b"null")
        if response.status_code == 401:
            _fail("the hub refused the token", "set ANJU_API_TOKEN or pass --token")
        if response.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else response.text
            _fail(str(message))
        return data


def _who(by: str | None) -> str:
    return by or os.environ.get("USER") or getpass.getuser()


def _when(ts_ms: int | None) -> str:
    if not ts_ms:
        return "-"
    return dt.datetime.fromtimestamp(ts_ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _print_json(data: Any) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@alerts_app.command("list")
def list_alerts(
    all_alerts: Annotated[bool, typer.Option("--all", help="resolved ones too")] = False,
    grid: Annotated[str | None, typer.Option("--grid", help="only this grid")] = None,
    as_json: Json = False,
    hub: HubUrl = None,
    token: Token = None,
    config: Config = DEFAULT_CONFIG,
) -> None:
    """Open alerts (newest first), or every alert with --all."""
    client = HubClient(hub, token, config)
    query = f"?state={'all' if all_alerts else 'active'}" + (f"&grid={grid}" if grid else "")
    alerts = client.call("GET", f"/api/alerts{query}")
    if as_json:
        _print_json(alerts)
        return
    table = Table(title=f"{'All' if all_alerts else 'Open'} alerts")
    for column in ("id", "severity", "state", "since", "place", "grid", "summary", "assignee"):
        table.add_column(column)
    for alert in alerts:
        state = alert["status"] + (f" ({alert['held'].split(':')[0]})" if alert["held"] else "")
        table.add_row(
            alert["id"][:8],
            f"[{_SEVERITY_STYLE.get(alert['severity'], '')}]{alert['severity']}[/]",
            state,
            _when(alert["firing_ms"] or alert["started_ms"]),
            alert["place"] or alert["subject"],
            alert["grid_name"] or alert["grid"] or "-",
            alert["summary"],
            alert["assignee"] or "-",
        )
    console.print(table)
    if not alerts:
        console.print("[green]nothing open[/green]")


@alerts_app.command("show")
def show_alert(
    alert: AlertId,
    as_json: Json = False,
    hub: HubUrl = None,
    token: Token = None,
    config: Config = DEFAULT_CONFIG,
) -> None:
    """One alert: what, where, who was told, every delivery and the audit trail."""
    data = HubClient(hub, token, config).call("GET", f"/api/alerts/{alert}")
    if as_json:
        _print_json(data)
        return
    console.print(f"[bold]{data['summary']}[/bold]  ({data['id']})")
    console.print(data["message"])
    rows = [
        ("severity", f"{data['severity']} / {data['issue_class']}"),
        ("state", data["status"] + (f", held: {data['held']}" if data["held"] else "")),
        ("place", data["place"] or data["subject"]),
        ("grid", data["grid_name"] or data["grid"] or "-"),
        ("fired", _when(data["firing_ms"])),
        (
            "acknowledged",
            f"{_when(data['acked_ms'])} by {data['acked_by']}" if data["acked_by"] else "-",
        ),
        ("resolved", _when(data["resolved_ms"])),
        ("assignee", data["assignee"] or "-"),
        ("escalation", f"step {data['step'] + 1}, repeats {data['repeats']}"),
        ("told", ", ".join(data["recipients"]) or "-"),
    ]
    for key, value in rows:
        console.print(f"  [dim]{key:>12}[/dim]  {value}")
    if data["comments"]:
        console.print("[bold]comments[/bold]")
        for c in data["comments"]:
            console.print(f"  {_when(c['ts_ms'])}  {c['by']}: {c['text']}")
    table = Table(title="deliveries")
    for column in ("transition", "channel", "recipient", "status", "attempts", "error"):
        table.add_column(column)
    for d in data["deliveries"]:
        style = {"sent": "green", "failed": "red", "retrying": "yellow"}.get(d["status"], "")
        table.add_row(
            d["transition"],
            d["channel"],
            d["recipient"],
            f"[{style}]{d['status']}[/]" if style else d["status"],
            str(d["attempts"]),
            d["last_error"] or "",
        )
    console.print(table)
    console.print("[bold]history[/bold]")
    for ts, what, detail in data["history"]:
        console.print(f"  {_when(ts)}  {what} {detail}")


@dataclasses.dataclass(frozen=True, slots=True)
class _Api:
    """Where and how to reach the hub, as every command's options give it."""

    hub: str | None
    token: str | None
    config: Path


def _act(api: _Api, action: str, alert: str, body: dict[str, Any], *, as_json: bool) -> Any:
    """POST an operator action; print the answer as JSON or return it for a one-line report."""
    data = HubClient(api.hub, api.token, api.config).call(
        "POST", f"/api/alerts/{alert}/{action}", body
    )
    if as_json:
        _print_json(data)
        return None
    return data


@alerts_app.command("ack")
def ack_alert(
    alert: AlertId,
    comment: Annotated[str, typer.Option("--comment", "-m", help="a note for the others")] = "",
    by: By = None,
    as_json: Json = False,
    hub: HubUrl = None,
    token: Token = None,
    config: Config = DEFAULT_CONFIG,
) -> None:
    """Acknowledge: escalation stops (it fires again if not resolved within the timeout)."""
    body = {"by": _who(by), "comment": comment}
    if data := _act(_Api(hub, token, config), "ack", alert, body, as_json=as_json):
        console.print(f"acknowledged {data['id']} ({data['summary']}, {data['place']})")


@alerts_app.command("resolve")
def resolve_alert(
    alert: AlertId,
    comment: Annotated[str, typer.Option("--comment", "-m", help="what was done")] = "",
    by: By = None,
    as_json: Json = False,
    hub: HubUrl = None,
    token: Token = None,
    config: Config = DEFAULT_CONFIG,
) -> None:
    """Resolve by hand; everyone who was told of it hears that it is resolved."""
    body = {"by": _who(by), "comment": comment}
    if data := _act(_Api(hub, token, config), "resolve", alert, body, as_json=as_json):
        console.print(f"resolved {data['id']} ({data['summary']}, {data['place']})")


@alerts_app.command("assign")
def assign_alert(
    alert: AlertId,
    person: Annotated[str, typer.Argument(help="who deals with it (a person id)")],
    by: By = None,
    as_json: Json = False,
    hub: HubUrl = None,
    token: Token = None,
    config: Config = DEFAULT_CONFIG,
) -> None:
    """Name who deals with an alert."""
    body = {"by": _who(by), "person": person}
    if data := _act(_Api(hub, token, config), "assign", alert, body, as_json=as_json):
        console.print(f"{data['id']} assigned to {data['assignee']}")


@alerts_app.command("comment")
def comment_alert(
    alert: AlertId,
    text: Annotated[str, typer.Argument(help="the comment")],
    by: By = None,
    as_json: Json = False,
    hub: HubUrl = None,
    token: Token = None,
    config: Config = DEFAULT_CONFIG,
) -> None:
    """Add a comment to an alert."""
    body = {"by": _who(by), "comment": text}
    if data := _act(_Api(hub, token, config), "comment", alert, body, as_json=as_json):
        console.print(f"comment added to {data['id']}")


@alerts_app.command("silence")
def silence_alerts(
    alert: Annotated[
        str | None, typer.Argument(help="one alert (until it resolves unless --for is given)")
    ] = None,
    match: Annotated[
        list[str] | None,
        typer.Option("--match", help="label=value, repeatable (e.g. building=3 rule_id=co2-high)"),
    ] = None,
    duration: Annotated[str | None, typer.Option("--for", help="e.g. 2h, 30m")] = None,
    comment: Annotated[str, typer.Option("--comment", "-m", help="why")] = "",
    by: By = None,
    as_json: Json = False,
    hub: HubUrl = None,
    token: Token = None,
    config: Config = DEFAULT_CONFIG,
) -> None:
    """Silence one alert, or every alert matching labels for a while (e.g. maintenance)."""
    if (alert is None) == (not match):
        _fail(
            "give one alert id or --match label=value",
            "e.g. `anju alerts silence --match building=3 --for 2h`",
        )
    body: dict[str, Any] = {"by": _who(by), "comment": comment}
    if alert is not None:
        body["alert"] = alert
    if match:
        labels: dict[str, list[str]] = {}
        for item in match:
            name, sep, value = item.partition("=")
            if not sep or not name:
                _fail(f"--match {item!r} is not label=value")
            labels.setdefault(name.strip(), []).append(value.strip())
        body["match"] = labels
    if duration:
        body["for"] = duration
    data = HubClient(hub, token, config).call("POST", "/api/silences", body)
    if as_json:
        _print_json(data)
        return
    until = _when(data["ends_ms"]) if data["ends_ms"] else "the alert resolves"
    console.print(f"silence {data['id']} until {until}")


@alerts_app.command("silences")
def list_silences(
    as_json: Json = False,
    hub: HubUrl = None,
    token: Token = None,
    config: Config = DEFAULT_CONFIG,
) -> None:
    """Every silence, with its state."""
    data = HubClient(hub, token, config).call("GET", "/api/silences")
    if as_json:
        _print_json(data)
        return
    table = Table(title="Silences")
    for column in ("id", "what", "from", "until", "by", "comment", "state"):
        table.add_column(column)
    for s in data:
        what = (
            f"alert {s['alert_id']}"
            if s["alert_id"]
            else " ".join(f"{k}={','.join(v)}" for k, v in (s["match"] or {}).items())
        )
        until = _when(s["ends_ms"]) if s["ends_ms"] else "resolved"
        table.add_row(
            s["id"],
            what,
            _when(s["starts_ms"]),
            until,
            s["created_by"],
            s["comment"],
            "expired" if s["expired_ms"] else "active",
        )
    console.print(table)


@alerts_app.command("unsilence")
def unsilence(
    silence: Annotated[str, typer.Argument(help="silence id")],
    hub: HubUrl = None,
    token: Token = None,
    config: Config = DEFAULT_CONFIG,
) -> None:
    """End a silence now; what it held back goes out."""
    HubClient(hub, token, config).call("DELETE", f"/api/silences/{silence}")
    console.print(f"silence {silence} ended")


def status_command(
    as_json: Json = False,
    hub: HubUrl = None,
    token: Token = None,
    config: Config = DEFAULT_CONFIG,
) -> None:
    """The fleet at a glance: gateways, devices by state, open alerts by grid."""
    data = HubClient(hub, token, config).call("GET", "/api/status")
    if as_json:
        _print_json(data)
        return
    gateways = Table(title=f"Site {data['site']}: gateways")
    for column in ("gateway", "state", "last seen", "queue", "agent"):
        gateways.add_column(column)
    for g in data["gateways"]:
        seen = f"{g['seen_ago_s']:.0f} s ago" if g["seen_ago_s"] is not None else "never"
        state = "[green]online[/]" if g["online"] else "[red]offline[/]"
        queue = "-" if g["queue_depth"] is None else str(g["queue_depth"])
        gateways.add_row(g["id"], state, seen, queue, g["agent"] or "-")
    console.print(gateways)
    grids = sorted(set(data["devices_by_grid"]) | set(data["open_alerts_by_grid"]))
    table = Table(title="By grid")
    for column in ("grid", "devices online", "offline", "unknown", "open alerts"):
        table.add_column(column)
    for grid in grids:
        devices = data["devices_by_grid"].get(grid, {})
        alerts = data["open_alerts_by_grid"].get(grid, {})
        table.add_row(
            grid,
            str(devices.get("online", 0)),
            str(devices.get("offline", 0)),
            str(devices.get("unknown", 0)),
            ", ".join(f"{n} {state}" for state, n in sorted(alerts.items())) or "0",
        )
    console.print(table)
    received = data["received"]
    console.print(
        f"received {received['readings']} readings and {received['events']} events"
        f" ({received['quarantined']} quarantined)"
    )
    failed = data["deliveries"].get("failed", 0)
    if failed:
        console.print(
            f"[red]{failed} notification deliveries failed[/red]: see `anju alerts show ID`"
        )
