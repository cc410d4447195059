"""The demo's live terminal view: gateways, latest readings and alerts with their places."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from hub import Hub
from wire import VALUE_UNITS

_SEVERITY_STYLE = {"critical": "bold white on red", "major": "bold red", "minor": "yellow"}
_MAX_READING_ROWS = 12


def _clock(ts_ms: int | None, tz: ZoneInfo) -> str:
    if ts_ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=tz).strftime("%H:%M:%S")


def _values(values: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.1f}{VALUE_UNITS.get(k, '')}" for k, v in sorted(values.items()))


def render(hub: Hub, *, title: str) -> Group:
    """One frame of the view."""
    tz = ZoneInfo(hub.registry.site.site.timezone)
    gateways = Table(title="Gateways", expand=True)
    for column in ("gateway", "state", "last seen", "queue", "skew"):
        gateways.add_column(column)
    for gw_id, status in sorted(hub.ingestor.gateways.items()):
        queue = "-" if status.health is None else str(status.health.get("queue_depth", "-"))
        skew = "-" if status.skew_ms is None else f"{status.skew_ms / 1000:+.0f} s"
        state = Text("online", "green") if status.online else Text("offline", "red")
        gateways.add_row(gw_id, state, _clock(status.last_seen_ms, tz), queue, skew)

    readings = Table(title="Latest readings (data time)", expand=True)
    for column in ("device", "place", "time", "values"):
        readings.add_column(column)
    for slot in hub.ingestor.latest.newest(_MAX_READING_ROWS):
        info = hub.devices.device(slot)
        found = hub.ingestor.latest.get(slot)
        if info is not None and found is not None:
            ts, values = found
            readings.add_row(info.id, info.place, _clock(ts, tz), _values(values))

    alerts = Table(title="Alerts", expand=True)
    for column in ("severity", "state", "since", "place", "grid", "message"):
        alerts.add_column(column)
    newest: dict[str, tuple[str, str, int, str, str, str]] = {}
    for alert in hub.alerts.history:
        newest[alert.id] = (
            alert.severity,
            alert.state,
            alert.firing_ms or alert.started_ms,
            alert.labels.get("place", "?"),
            alert.labels.get("grid_name", "?"),
            alert.message,
        )
    for severity, alert_state, since, place, grid, message in sorted(
        newest.values(), key=lambda row: -row[2]
    ):
        style = _SEVERITY_STYLE.get(severity, "")
        alerts.add_row(Text(severity, style), alert_state, _clock(since, tz), place, grid, message)

    counters = hub.ingestor.counters
    footer = Text(
        f"readings {counters['readings']}  events {counters['events']}  "
        f"quarantined {counters['quarantined']}  acks {counters['acks']}  "
        f"alerts fired {hub.alerts.counters['fired']}",
        style="dim",
    )
    return Group(Panel(Text(title, style="bold")), gateways, alerts, readings, footer)
