"""How anju's data is laid out in the time-series store.

Defined once here and shared by the hub's sinks and the dashboards, so a panel's query and the
writer can never drift apart.  In InfluxDB a reading is ``reading,<tags> temperature=21.5``; in
VictoriaMetrics the same point becomes the series ``reading_temperature{<tags>}``.
"""

from __future__ import annotations

import enum


class Measurement(enum.StrEnum):
    """Measurement names."""

    READING = "reading"  # fields: the reading's value names
    EVENT = "event"  # field: count=1, tags add kind
    ALERT = "alert"  # field: firing=1|0, tags add rule, severity
    GATEWAY = "gateway"  # fields: queue_depth, oldest_age_s, ...


# Tags on every point about a device; place tags are empty when the registry does not know them.
DEVICE_TAGS = (
    "site",
    "gateway",
    "device",
    "device_kind",
    "grid",
    "building",
    "floor",
    "unit",
    "area",
)
EVENT_TAGS = (*DEVICE_TAGS, "kind")
ALERT_TAGS = (*DEVICE_TAGS, "rule", "severity")

# Units of the well-known value names, for dashboards and the console.
VALUE_UNITS: dict[str, str] = {
    "temperature": "°C",
    "humidity": "%RH",
    "co2": "ppm",
    "pm1": "µg/m³",
    "pm25": "µg/m³",
    "pm10": "µg/m³",
    "smoke": "",
    "water_leak": "",
    "gas": "%LEL",
    "door_open": "",
    "battery": "%",
    "rssi": "dBm",
}
