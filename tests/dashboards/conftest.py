"""Fixtures for the dashboards' tests: the boards and their Grafana JSON."""

from __future__ import annotations

from typing import Any

import pytest

from dashboards import Board, all_boards


@pytest.fixture(scope="module")
def boards() -> list[Board]:
    return all_boards()


@pytest.fixture(scope="module")
def boards_json(boards: list[Board]) -> list[dict[str, Any]]:
    return [board.to_dict() for board in boards]
