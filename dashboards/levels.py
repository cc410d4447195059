"""Units and alert levels shown on panels.

Units come from ``wire.VALUE_UNITS``; the levels mirror the threshold rules shipped in
``config/rules/*.yaml`` (``dashboards`` may import only ``wire``, so they are restated here and a
test checks them against the rule files).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from wire.measurements import VALUE_UNITS

# Grafana's unit ids for the symbols of wire.VALUE_UNITS; anything else becomes a suffix.
_GRAFANA_UNITS: dict[str, str] = {
    "°C": "celsius",
    "%RH": "humidity",
    "ppm": "ppm",
    "\u00b5g/m\u00b3": "con\u03bcgm3",  # µg/m³ (micro sign) → Grafana's id (Greek mu)
    "%": "percent",
    "dBm": "dBm",
    "": "none",
}

# Colours of the band where a rule fires, by the rule's severity; the band between the clear
# level and the firing level (the hysteresis) is yellow.
SEVERITY_COLORS: dict[str, str] = {
    "critical": "red",
    "major": "orange",
    "minor": "orange",
    "warning": "orange",
}
OK_COLOR = "green"
NEAR_COLOR = "yellow"


def grafana_unit(value_name: str) -> str:
    """Grafana's unit id for a well-known value name, from its symbol in ``wire.VALUE_UNITS``.

    Raises:
        ValueError: ``value_name`` is not in ``wire.VALUE_UNITS``.
    """
    try:
        symbol = VALUE_UNITS[value_name]
    except KeyError:
        raise ValueError(f"unknown value name {value_name!r}") from None
    return _GRAFANA_UNITS.get(symbol, f"suffix:{symbol}")


@dataclasses.dataclass(frozen=True, slots=True)
class Level:
    """The levels of one threshold rule, as drawn on panels of its value.

    Attributes:
        rule: the rule's id in ``config/rules``.
        value: the value name the rule watches (``metric`` in the rule file).
        direction: ``above`` or ``below``: which side of ``fire`` is bad.
        fire: the rule fires past this level.
        clear: the rule resolves back past this level (hysteresis).
        severity: the rule's severity, which picks the colour.
    """

    rule: str
    value: str
    direction: Literal["above", "below"]
    fire: float
    clear: float
    severity: str

    def steps(self) -> list[tuple[float | None, str]]:
        """Grafana threshold steps ``(lower bound, colour)``; the first bound is None (-inf)."""
        bad = SEVERITY_COLORS[self.severity]
        if self.direction == "above":
            return [(None, OK_COLOR), (self.clear, NEAR_COLOR), (self.fire, bad)]
        return [(None, bad), (self.fire, NEAR_COLOR), (self.clear, OK_COLOR)]


# The threshold rules of config/rules/safety.yaml and facilities.yaml.
LEVELS: dict[str, Level] = {
    level.value: level
    for level in (
        Level("high-temperature", "temperature", "above", 57, 50, "critical"),
        Level("humidity-high", "humidity", "above", 85, 80, "warning"),
        Level("co2-high", "co2", "above", 1500, 1200, "warning"),
        Level("pm25-high", "pm25", "above", 150, 100, "warning"),
        Level("battery-low", "battery", "below", 15, 25, "warning"),
    )
}
