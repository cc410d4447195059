"""Walking Grafana dashboard JSON in tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def panels_of(board_json: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, including panels nested in collapsed rows."""
    for panel in board_json.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def exprs_of(board_json: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(panel title, expr)`` of every target of every panel."""
    for panel in panels_of(board_json):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
