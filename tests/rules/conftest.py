"""Shared fixtures for the rules tests: pure, no servers, no wall clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rules import Engine, Subject, parse_rules

PLACE = "Building 3, floor 2, unit 201"


@pytest.fixture
def engine_for() -> Callable[[str], Engine]:
    """Build an engine from rule YAML."""

    def make(text: str) -> Engine:
        return Engine(parse_rules(text, "test.yaml"))

    return make


@pytest.fixture
def subject() -> Subject:
    """A device with a full set of registry labels."""
    return Subject(
        "dev-1",
        {
            "site": "s1",
            "gateway": "gw1",
            "device_kind": "env_sensor",
            "grid": "g7",
            "grid_name": "East Gate",
            "building": "3",
            "floor": "2",
            "unit": "201",
            "place": PLACE,
        },
    )
