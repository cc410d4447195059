"""Grafana dashboards, datasources and provisioning of anju, as code, generated to JSON.

Four boards (:func:`security_wall`, :func:`environment`, :func:`fleet_health`,
:func:`welfare`) are built from the measurement names of :mod:`wire`; :func:`build` writes them
with Grafana's file provisioning (a VictoriaMetrics datasource and a dashboard provider), and
:func:`push` saves them through Grafana's HTTP API instead.
"""

from __future__ import annotations

from dashboards.boards import (
    BOARD_BUILDERS,
    Board,
    all_boards,
    environment,
    fleet_health,
    security_wall,
    welfare,
)
from dashboards.errors import DashboardsError
from dashboards.levels import LEVELS, Level, grafana_unit
from dashboards.provisioning import (
    DATASOURCES_FILE,
    FOLDER_UID,
    PROVIDERS_FILE,
    InfluxSource,
    build,
)
from dashboards.push import PushResult, push

__all__ = [
    "BOARD_BUILDERS",
    "DATASOURCES_FILE",
    "FOLDER_UID",
    "LEVELS",
    "PROVIDERS_FILE",
    "Board",
    "DashboardsError",
    "InfluxSource",
    "Level",
    "PushResult",
    "all_boards",
    "build",
    "environment",
    "fleet_health",
    "grafana_unit",
    "push",
    "security_wall",
    "welfare",
]
