"""The four anju boards: security wall, environment and facilities, fleet health, welfare.

Each board is built by a function from the names in :mod:`wire` (through
:mod:`dashboards.promql`); nothing here types a series name.  Boards have stable uids, so a
re-build or a push updates the same dashboard in Grafana instead of adding a copy.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_models

from dashboards import promql as q
from dashboards.levels import LEVELS, grafana_unit
from dashboards.panels import (
    Look,
    Query,
    Row,
    bar_gauge,
    dashboard,
    query_variable,
    stat_panel,
    state_timeline,
    table_panel,
    timeseries,
)
from wire.events import LIFE_SAFETY_KINDS

TAGS = ("anju",)

# A gateway is online when its last health report is younger than this (reports every 30 s by
# default: edge agent `health_interval_s`), and known when it reported in the last day.
ONLINE_WITHIN_S = 120
KNOWN_WITHIN = "1d"
# The welfare board's activity window and how far back a unit counts as having a sensor.
WELFARE_WINDOW = "12h"
WELFARE_KNOWN_WITHIN = "7d"

# Kinds the security wall shows.  Presence in dwellings stays off the wall (privacy): only the
# welfare board, which exists for it, shows it.
DOOR_KINDS = q.kinds("door.")
CAMERA_KINDS = q.kinds("camera.")
ALARM_KINDS = q.kinds("alarm.")
SECURITY_KINDS = tuple(sorted({*DOOR_KINDS, *CAMERA_KINDS, *LIFE_SAFETY_KINDS}))
LIFE_SAFETY = tuple(sorted(LIFE_SAFETY_KINDS))

PLACE_LEGEND = "B{{building}} F{{floor}} {{unit}}"
DEVICE_LEGEND = "B{{building}} F{{floor}} {{unit}} · {{device}}"
COUNT = Look(unit="none", decimals=0)
ALERTING_COUNT = Look(unit="none", decimals=0, steps=((None, "green"), (1, "red")))


@dataclasses.dataclass(frozen=True, slots=True)
class Board:
    """A generated dashboard and where it goes.

    Attributes:
        uid: the stable Grafana uid.
        slug: the file name stem of its JSON (``dashboards/<slug>.json``).
        model: the dashboard model of ``grafana-foundation-sdk``.
    """

    uid: str
    slug: str
    model: dashboard_models.Dashboard

    @property
    def title(self) -> str:
        """The dashboard's title."""
        return self.model.title or self.uid

    def to_dict(self) -> dict[str, Any]:
        """The dashboard as Grafana's dashboard JSON model (plain dicts and lists)."""
        data: dict[str, Any] = json.loads(json.dumps(self.model, cls=JSONEncoder))
        return data

    def to_json(self) -> str:
        """The dashboard JSON as a file: keys sorted, two-space indent, newline at the end."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- template variables -------------------------------------------------------------------------


def _place_series() -> str:
    # Readings and events carry the place labels; gateway series carry only site and gateway.
    return q.select_by_name(f"{q.READING_NAME_REGEX}|{q.EVENT_COUNT}", *q.site_filter())


def variables() -> list[Any]:
    """The template variables of every board: site, grid and building (``label_values``)."""
    grid_scope = q.select_by_name(
        f"{q.READING_NAME_REGEX}|{q.EVENT_COUNT}",
        *q.site_filter(),
        q.match("grid", q.var(q.GRID_VAR)),
    )
    return [
        query_variable(q.SITE_VAR, "Site", f"label_values({q.gateway('queue_depth')}, site)"),
        query_variable(q.GRID_VAR, "Grid", f"label_values({_place_series()}, grid)"),
        query_variable(q.BUILDING_VAR, "Building", f"label_values({grid_scope}, building)"),
    ]


# -- shared expressions ------------------------------------------------------------------------


def _events_in_range(*matchers: str) -> str:
    return q.or_zero(f"sum({q.count_over(q.events(*matchers), '$__range')})")


def _gateway_series(field: str) -> str:
    return q.select(q.gateway(field), *q.site_filter())


def gateways_online() -> str:
    """Gateways whose last health report is younger than :data:`ONLINE_WITHIN_S`."""
    age = f"time() - timestamp({_gateway_series('queue_depth')})"
    return q.or_zero(f"count({age} < {ONLINE_WITHIN_S})")


def gateways_silent() -> str:
    """Gateways that reported in the last day but not within :data:`ONLINE_WITHIN_S`."""
    series = _gateway_series("queue_depth")
    known = f"max {q.by(q.GATEWAY_TAGS)} (max_over_time({series}[{KNOWN_WITHIN}]))"
    fresh = f"(time() - timestamp({series}) < {ONLINE_WITHIN_S})"
    on = ", ".join(q.GATEWAY_TAGS)
    return q.or_zero(f"count({known} unless on ({on}) {fresh})")


def _gateway_stats() -> list[Any]:
    return [
        stat_panel(
            "Gateways online",
            f"Gateways whose last health report is under {ONLINE_WITHIN_S} s old.",
            Query(gateways_online(), instant=True),
            Look(unit="none", decimals=0, steps=((None, "blue"),)),
        ),
        stat_panel(
            "Gateways silent",
            f"Gateways that reported in the last {KNOWN_WITHIN} but not in the last "
            f"{ONLINE_WITHIN_S} s: check their power and network. See Fleet health.",
            Query(gateways_silent(), instant=True),
            ALERTING_COUNT,
        ),
    ]


# -- security wall ------------------------------------------------------------------------------


def security_wall() -> Board:
    """The security room's wall: door and camera events, life-safety events, gateways."""
    uid = "anju-security-wall"
    by_kind = q.by(["kind"])
    by_place = q.by([*q.DEVICE_LABELS, "kind"])
    now = Row(
        "Now (selected time range)",
        [
            stat_panel(
                "Forced doors",
                "door.forced events in the selected time range.",
                Query(_events_in_range(q.kind_is("door.forced")), instant=True),
                ALERTING_COUNT,
            ),
            stat_panel(
                "Door access attempts",
                "door.access events (cards presented) in the selected time range. The event "
                "series does not carry the decision, so denied and granted are counted together.",
                Query(_events_in_range(q.kind_is("door.access")), instant=True),
                COUNT,
            ),
            stat_panel(
                "Intrusions",
                "camera.intrusion events (someone in a guarded zone) in the selected range.",
                Query(_events_in_range(q.kind_is("camera.intrusion")), instant=True),
                ALERTING_COUNT,
            ),
            stat_panel(
                "Life-safety events",
                "Smoke, gas, water leak, emergency button and forced-door events in the "
                "selected time range.",
                Query(_events_in_range(q.kind_in(LIFE_SAFETY)), instant=True),
                ALERTING_COUNT,
            ),
            *_gateway_stats(),
        ],
    )
    door_camera = q.events(q.kind_in((*DOOR_KINDS, *CAMERA_KINDS)))
    life_safety = q.events(q.kind_in(LIFE_SAFETY))
    activity = Row(
        "Events",
        [
            timeseries(
                "Door and camera events by kind",
                "Events per interval, stacked by kind.",
                [
                    Query(
                        f"sum {by_kind} ({q.count_over(door_camera, '$__interval')})",
                        legend="{{kind}}",
                    )
                ],
                COUNT,
                bars=True,
                stacked=True,
            ),
            timeseries(
                "Life-safety events by kind",
                "Smoke, gas, water leak, emergency button and forced-door events per interval.",
                [
                    Query(
                        f"sum {by_kind} ({q.count_over(life_safety, '$__interval')})",
                        legend="{{kind}}",
                    )
                ],
                COUNT,
                bars=True,
                stacked=True,
            ),
            table_panel(
                "Events by place",
                "Door, camera and life-safety events in the selected time range, per device "
                "and kind, most first.",
                Query(
                    f"sum {by_place} "
                    f"({q.count_over(q.events(q.kind_in(SECURITY_KINDS)), '$__range')})",
                    instant=True,
                    table=True,
                ),
                COUNT,
                value_column="Events",
                height=10,
            ),
        ],
    )
    model = dashboard(
        uid=uid,
        title="anju · Security wall",
        description="Door and camera events, life-safety events and gateways, for the "
        "security room's wall.",
        tags=[*TAGS, "security"],
        refresh="10s",
        time_from="now-6h",
        variables=variables(),
        rows=[now, activity],
    )
    return Board(uid, "security-wall", model)


# -- environment and facilities -----------------------------------------------------------------


def _value_look(value: str) -> Look:
    level = LEVELS.get(value)
    steps = tuple(level.steps()) if level is not None else ((None, "green"),)
    return Look(unit=grafana_unit(value), steps=steps)


def _reading_by_device(value: str, aggregate: str = "avg") -> str:
    series = q.select(q.reading(value), *q.place_filter())
    return f"{aggregate} {q.by(q.DEVICE_LABELS)} ({series})"


_ENVIRONMENT_VALUES: tuple[tuple[str, str], ...] = (
    ("temperature", "Temperature"),
    ("humidity", "Humidity"),
    ("co2", "CO₂"),
    ("pm25", "PM2.5"),
)


def _level_note(value: str) -> str:
    level = LEVELS.get(value)
    if level is None:
        return ""
    return (
        f" Dashed lines: rule {level.rule} fires {level.direction} {level.fire:g} and clears "
        f"at {level.clear:g}."
    )


def environment() -> Board:
    """Temperature, humidity, CO2 and PM2.5 by place; water leak, smoke and gas states."""
    uid = "anju-environment"
    trends = Row(
        "Air and climate",
        [
            timeseries(
                title,
                f"{title} per sensor, by building, floor and unit.{_level_note(value)}",
                [Query(_reading_by_device(value), legend=DEVICE_LEGEND)],
                _value_look(value),
                show_thresholds=value in LEVELS,
            )
            for value, title in _ENVIRONMENT_VALUES
        ],
    )
    current = Row(
        "Now, by place",
        [
            bar_gauge(
                f"{title} now",
                f"The latest {title} of each sensor.{_level_note(value)}",
                Query(_reading_by_device(value, "max"), legend=DEVICE_LEGEND, instant=True),
                _value_look(value),
            )
            for value, title in _ENVIRONMENT_VALUES
        ],
    )
    alarm_mapping = Look(
        unit="none",
        mappings={"0": ("OK", "green"), "1": ("ALARM", "red")},
        steps=((None, "green"), (1, "red")),
    )
    hazards = Row(
        "Water, smoke and gas",
        [
            state_timeline(
                "Water leak sensors",
                "Each leak sensor's state (water_leak = 1: water detected).",
                [Query(_reading_by_device("water_leak", "max"), legend=DEVICE_LEGEND)],
                dataclasses.replace(
                    alarm_mapping, mappings={"0": ("dry", "green"), "1": ("WATER", "red")}
                ),
            ),
            state_timeline(
                "Smoke detectors",
                "Each smoke detector's state (smoke = 1: in alarm).",
                [Query(_reading_by_device("smoke", "max"), legend=DEVICE_LEGEND)],
                dataclasses.replace(
                    alarm_mapping, mappings={"0": ("clear", "green"), "1": ("SMOKE", "red")}
                ),
            ),
            timeseries(
                "Combustible gas",
                "Gas concentration per detector, in % of the lower explosive limit.",
                [Query(_reading_by_device("gas", "max"), legend=DEVICE_LEGEND)],
                _value_look("gas"),
            ),
            timeseries(
                "Alarm events by kind",
                "alarm.* events (smoke, gas, water leak; raised and cleared) per interval.",
                [
                    Query(
                        f"sum {q.by(['kind'])} "
                        f"({q.count_over(q.events(q.kind_in(ALARM_KINDS)), '$__interval')})",
                        legend="{{kind}}",
                    )
                ],
                COUNT,
                bars=True,
                stacked=True,
            ),
        ],
    )
    model = dashboard(
        uid=uid,
        title="anju · Environment and facilities",
        description="Air quality and climate by place, with the alert rules' levels; water "
        "leak, smoke and gas detectors.",
        tags=[*TAGS, "environment"],
        refresh="1m",
        time_from="now-24h",
        variables=variables(),
        rows=[trends, current, hazards],
    )
    return Board(uid, "environment", model)


# -- fleet health --------------------------------------------------------------------------------


def fleet_health() -> Board:
    """Gateways (queue, oldest message, drops, last seen) and devices (silence, battery, rssi)."""
    uid = "anju-fleet-health"
    by_gateway = q.by(q.GATEWAY_TAGS)
    gateway_legend = "{{gateway}}"
    dropped = q.select_by_name(q.GATEWAY_DROPPED_REGEX, *q.site_filter())
    gateways = Row(
        "Gateways",
        [
            *_gateway_stats(),
            table_panel(
                "Gateways: seconds since last report",
                f"Age of each gateway's last health report over the last {KNOWN_WITHIN}; "
                f"over {ONLINE_WITHIN_S} s means silent.",
                Query(
                    q.seconds_since_last(
                        _gateway_series("queue_depth"), q.GATEWAY_TAGS, KNOWN_WITHIN, "1m"
                    ),
                    instant=True,
                    table=True,
                ),
                Look(
                    unit="s",
                    decimals=0,
                    steps=((None, "green"), (ONLINE_WITHIN_S, "red")),
                ),
                value_column="Last seen (s ago)",
                color_cells=True,
                width=16,
            ),
            timeseries(
                "Queue depth",
                "Messages waiting in each gateway's durable queue (not yet acknowledged by "
                "the hub). A rising queue means the hub or the broker is unreachable.",
                [
                    Query(
                        f"max {by_gateway} ({_gateway_series('queue_depth')})",
                        legend=gateway_legend,
                    )
                ],
                Look(unit="none", decimals=0),
            ),
            timeseries(
                "Oldest queued message",
                "Age of the oldest unacknowledged message in each gateway's queue.",
                [
                    Query(
                        f"max {by_gateway} ({_gateway_series('oldest_age_s')})",
                        legend=gateway_legend,
                    )
                ],
                Look(unit="s", steps=((None, "green"), (60, "yellow"), (300, "red"))),
                show_thresholds=True,
            ),
            timeseries(
                "Messages dropped",
                "Messages a gateway dropped because its queue was full, per interval, all "
                "priorities together.",
                [
                    Query(
                        f"sum {by_gateway} (increase({dropped}[$__interval]))",
                        legend=gateway_legend,
                    )
                ],
                Look(unit="none", decimals=0, steps=((None, "green"), (1, "red"))),
                bars=True,
                width=24,
            ),
        ],
    )
    readings = q.select_by_name(q.READING_NAME_REGEX, *q.place_filter())
    device_labels = q.DEVICE_LABELS
    devices = Row(
        "Devices",
        [
            table_panel(
                "Devices: seconds since last reading",
                f"Age of each device's newest reading over the last {KNOWN_WITHIN}, oldest "
                "first. Devices that only send events (readers, cameras, buttons) are not "
                "listed.",
                Query(
                    q.seconds_since_last(readings, device_labels, KNOWN_WITHIN, "5m"),
                    instant=True,
                    table=True,
                ),
                Look(unit="s", decimals=0, steps=((None, "green"), (900, "yellow"), (3600, "red"))),
                value_column="Last reading (s ago)",
                color_cells=True,
                width=12,
                height=10,
            ),
            table_panel(
                "Device faults",
                "device.fault events in the selected time range, per device.",
                Query(
                    f"sum {q.by(device_labels)} "
                    f"({q.count_over(q.events(q.kind_is('device.fault')), '$__range')})",
                    instant=True,
                    table=True,
                ),
                ALERTING_COUNT,
                value_column="Faults",
                color_cells=True,
                width=12,
                height=10,
            ),
            bar_gauge(
                "Battery",
                f"Latest battery level of each battery-powered device.{_level_note('battery')}",
                Query(_reading_by_device("battery", "min"), legend=DEVICE_LEGEND, instant=True),
                _value_look("battery"),
                width=12,
            ),
            timeseries(
                "Radio signal (RSSI)",
                "Received signal strength of each wireless device; below about -90 dBm "
                "readings start to get lost.",
                [Query(_reading_by_device("rssi", "min"), legend=DEVICE_LEGEND)],
                _value_look("rssi"),
            ),
        ],
    )
    model = dashboard(
        uid=uid,
        title="anju · Fleet health",
        description="Gateways' queues, drops and last reports; devices' silence, faults, "
        "batteries and radio.",
        tags=[*TAGS, "fleet"],
        refresh="1m",
        time_from="now-24h",
        variables=variables(),
        rows=[gateways, devices],
    )
    return Board(uid, "fleet-health", model)


# -- welfare -------------------------------------------------------------------------------------


def movements_in_window() -> str:
    """presence.motion events per unit in the last :data:`WELFARE_WINDOW`, 0 for quiet units.

    A unit with no movement has no sample in the window, so it would vanish from the result;
    the ``or`` brings back, at 0, every unit that had movement in the last week.
    """
    motion = q.events(q.kind_is("presence.motion"))
    by_unit = q.by(q.PLACE_LABELS)
    recent = f"sum {by_unit} ({q.count_over(motion, WELFARE_WINDOW)})"
    known = f"0 * sum {by_unit} ({q.count_over(motion, WELFARE_KNOWN_WITHIN)})"
    return f"{recent} or {known}"


def welfare() -> Board:
    """Movement per unit (12-hour windows, hours since the last) and emergency buttons."""
    uid = "anju-welfare"
    motion = q.events(q.kind_is("presence.motion"))
    button = q.events(q.kind_is("emergency.button"))
    by_unit = q.by(q.PLACE_LABELS)
    activity = Row(
        "Movement at home",
        [
            table_panel(
                f"Movements in the last {WELFARE_WINDOW}",
                f"presence.motion events per unit in the last {WELFARE_WINDOW}, fewest first. "
                f"0 (red): no movement at all; call or visit. Units listed are those with "
                f"movement in the last {WELFARE_KNOWN_WITHIN}.",
                Query(movements_in_window(), instant=True, table=True),
                Look(unit="none", decimals=0, steps=((None, "red"), (1, "green"))),
                value_column="Movements",
                sort_descending=False,
                color_cells=True,
                width=12,
                height=10,
            ),
            table_panel(
                "Hours since the last movement",
                f"Per unit, over the last {WELFARE_KNOWN_WITHIN}, longest first.",
                Query(
                    f"({q.seconds_since_last(motion, q.PLACE_LABELS, WELFARE_KNOWN_WITHIN, '5m')})"
                    " / 3600",
                    instant=True,
                    table=True,
                ),
                Look(unit="h", decimals=1, steps=((None, "green"), (12, "orange"), (24, "red"))),
                value_column="Hours",
                color_cells=True,
                width=12,
                height=10,
            ),
            timeseries(
                f"Movements per unit, {WELFARE_WINDOW} windows",
                f"presence.motion events per unit in windows of at least {WELFARE_WINDOW}.",
                [
                    Query(
                        f"sum {by_unit} ({q.count_over(motion, '$__interval')})",
                        legend=PLACE_LEGEND,
                    )
                ],
                COUNT,
                bars=True,
                min_interval=WELFARE_WINDOW,
                width=24,
            ),
        ],
    )
    buttons = Row(
        "Emergency buttons",
        [
            stat_panel(
                "Emergency button events",
                "emergency.button events in the selected time range (presses and resets).",
                Query(_events_in_range(q.kind_is("emergency.button")), instant=True),
                ALERTING_COUNT,
                width=6,
                height=8,
            ),
            table_panel(
                "Emergency button events by unit",
                "emergency.button events in the selected time range, per unit.",
                Query(
                    f"sum {by_unit} ({q.count_over(button, '$__range')})",
                    instant=True,
                    table=True,
                ),
                ALERTING_COUNT,
                value_column="Events",
                color_cells=True,
                width=18,
            ),
        ],
    )
    model = dashboard(
        uid=uid,
        title="anju · Welfare",
        description="Movement at home per unit (for residents living alone) and emergency "
        "buttons. Shows activity counts only, never who or where in the home.",
        tags=[*TAGS, "welfare"],
        refresh="5m",
        time_from="now-7d",
        variables=variables(),
        rows=[activity, buttons],
    )
    return Board(uid, "welfare", model)


BOARD_BUILDERS: tuple[Callable[[], Board], ...] = (
    security_wall,
    environment,
    fleet_health,
    welfare,
)


def all_boards() -> list[Board]:
    """Every board, in a fixed order."""
    return [build_board() for build_board in BOARD_BUILDERS]
