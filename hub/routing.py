"""How alerts reach people: routes, escalation, grouping, flapping, silences and inhibition.

Routes pick an escalation chain by severity and issue class; the settings also hold grouping,
repeats, acknowledgement timeouts, flapping, rate limits, maintenance windows and inhibition.

Everything here is configuration (the ``alerting`` section of the hub config) and the pure
lookups on it.  The defaults follow the community's grid model: the grid's worker first, then
the street-block lead or the community office depending on how hard the issue is, and for a
life-safety alert every tier at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from rules import Schedule
from rules.durations import DurationMs

GRID_WORKER = "grid_worker"  # the tier that means "the worker of the alert's grid"
EVERY_TIER = "*"  # every tier of the site's escalation map: life-safety reaches all at once

LabelValues = Annotated[
    tuple[str, ...],
    BeforeValidator(lambda v: (v,) if isinstance(v, str) else v),
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Matcher(_Frozen):
    """Label name → accepted values (one value or a list).  Every label named must match.

    Alert labels hold the subject's place labels (site, gateway, grid, building, floor, unit,
    device_kind, …) plus ``rule_id``, ``rule_kind``, ``severity``, ``issue_class`` and ``device``.
    """

    labels: Mapping[str, LabelValues] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _bare_mapping(cls, data: object) -> object:
        # `match: {building: "3"}` reads better in YAML than `match: {labels: {building: "3"}}`.
        if isinstance(data, Mapping) and "labels" not in data:
            return {"labels": dict(data)}
        return data

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every named label has one of its accepted values."""
        return all(labels.get(name, "") in values for name, values in self.labels.items())


class Step(_Frozen):
    """One escalation step: who is notified, and how long to wait for an acknowledgement."""

    notify: LabelValues = Field(
        description=(
            f"tiers: '{GRID_WORKER}', '{EVERY_TIER}' (all of them) or names of the site file's "
            "escalation map"
        )
    )
    wait: DurationMs = Field(default=15 * 60_000, description="before the next step")


class Route(_Frozen):
    """An escalation chain, picked by the first route whose match fits the alert."""

    name: str = Field(min_length=1)
    severities: LabelValues = Field(default=(), description="empty matches any")
    issue_classes: LabelValues = Field(default=(), description="empty matches any")
    steps: tuple[Step, ...] = Field(min_length=1)
    repeat_interval: DurationMs = Field(
        default=4 * 3_600_000, description="after the last step, notify it again this often"
    )
    repeat_limit: int = Field(default=3, ge=0, description="how many repeats at most")

    def fits(self, severity: str, issue_class: str) -> bool:
        """Whether this route takes an alert of that severity and issue class."""
        return (not self.severities or severity in self.severities) and (
            not self.issue_classes or issue_class in self.issue_classes
        )


class MaintenanceWindow(_Frozen):
    """A recurring silence, e.g. the pump room's weekly service."""

    name: str = Field(min_length=1)
    match: Matcher
    schedule: Schedule


class InhibitRule(_Frozen):
    """While a source alert fires, target alerts with the same ``equal`` labels stay quiet."""

    name: str = Field(min_length=1)
    source: Matcher
    target: Matcher
    equal: tuple[str, ...] = Field(default=(), description="labels that must be equal")


class Flapping(_Frozen):
    """An alert that fires and resolves this often is flapping: notified once, then held."""

    window: DurationMs = Field(default=20 * 60_000)
    changes: int = Field(default=6, ge=2, description="state changes within the window")
    quiet: DurationMs = Field(default=10 * 60_000, description="no change this long ends it")


class RateLimit(_Frozen):
    """At most ``max`` notifications per recipient per ``per``; life-safety is never limited."""

    max: int = Field(default=20, ge=1)
    per: DurationMs = Field(default=3_600_000)


_DEFAULT_ROUTES: tuple[dict[str, object], ...] = (
    {
        "name": "life-safety",
        "severities": ["critical"],
        "steps": [{"notify": [GRID_WORKER, EVERY_TIER], "wait": "5m"}],
        "repeat_interval": "5m",
        "repeat_limit": 6,
    },
    {
        "name": "hard",
        "issue_classes": ["hard"],
        "steps": [
            {"notify": GRID_WORKER, "wait": "5m"},
            {"notify": "street_block", "wait": "10m"},
            {"notify": "community_office", "wait": "30m"},
        ],
        "repeat_interval": "30m",
    },
    {
        "name": "composite",
        "issue_classes": ["composite"],
        "steps": [
            {"notify": GRID_WORKER, "wait": "10m"},
            {"notify": "street_block", "wait": "20m"},
            {"notify": "community_office", "wait": "1h"},
        ],
        "repeat_interval": "1h",
    },
    {
        "name": "ordinary",
        "steps": [{"notify": GRID_WORKER, "wait": "15m"}, {"notify": "security", "wait": "1h"}],
    },
)


def _default_routes() -> tuple[Route, ...]:
    return tuple(Route.model_validate(route) for route in _DEFAULT_ROUTES)


def _default_inhibitions() -> tuple[InhibitRule, ...]:
    return (
        InhibitRule(
            name="gateway-down-silences-its-devices",
            source=Matcher(labels={"rule_id": ("gateway-offline",)}),
            target=Matcher(labels={"rule_kind": ("absence",)}),
            equal=("gateway",),
        ),
        InhibitRule(
            name="building-power-silences-its-deadmen",
            source=Matcher(labels={"rule_id": ("building-power-lost",)}),
            target=Matcher(labels={"rule_kind": ("absence",)}),
            equal=("building",),
        ),
    )


class AlertingSettings(_Frozen):
    """The ``alerting`` section of the hub config."""

    routes: tuple[Route, ...] = Field(default_factory=_default_routes, min_length=1)
    life_safety_severities: tuple[str, ...] = Field(
        default=("critical",),
        description="these skip grouping and rate limits and reach their route's tiers at once",
    )
    group_wait: DurationMs = Field(default=30_000, description="first notification of a group")
    group_interval: DurationMs = Field(
        default=5 * 60_000, description="later additions to a group, at least this far apart"
    )
    ack_timeout: DurationMs = Field(
        default=30 * 60_000, description="an unresolved acknowledged alert fires again after this"
    )
    gateway_offline_for: DurationMs = Field(
        default=2 * 60_000, description="a gateway silent this long raises gateway-offline"
    )
    flapping: Flapping = Field(default_factory=Flapping)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    maintenance: tuple[MaintenanceWindow, ...] = ()
    inhibit: tuple[InhibitRule, ...] = Field(default_factory=_default_inhibitions)
    retry_delays: tuple[DurationMs, ...] = Field(
        default=(1_000, 5_000, 30_000, 60_000, 300_000),
        min_length=1,
        description="between delivery attempts; the last repeats until give_up_after",
    )
    give_up_after: DurationMs = Field(
        default=3_600_000, description="a delivery still failing after this is marked failed"
    )

    def route_for(self, severity: str, issue_class: str) -> Route:
        """The first route that fits; the last route catches everything else."""
        for route in self.routes:
            if route.fits(severity, issue_class):
                return route
        return self.routes[-1]

    def tiers(self) -> set[str]:
        """Every tier named by a step."""
        return {tier for route in self.routes for step in route.steps for tier in step.notify}

    def unknown_tiers(self, known: Iterable[str]) -> list[str]:
        """Tiers the site file does not define (a typo would leave a step with nobody)."""
        names = {*known, GRID_WORKER, EVERY_TIER}
        return sorted(self.tiers() - names)
