"""The site registry: site → grids → buildings → floors → units → devices, and the people.

Loaded from a site YAML file into SQLite (the record) and into an in-memory index (the hot
path: every reading is enriched with its place without touching the database).
"""

from __future__ import annotations

import dataclasses
import enum
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hub.errors import ConfigError
from wire.measurements import DEVICE_TAGS
from wire.placeholders import ConfigFileError, read_yaml, validation_problem
from wire.topics import ID_PATTERN

Id = Annotated[str, Field(pattern=ID_PATTERN)]


class Role(enum.StrEnum):
    """What a person does in the community."""

    GRID_WORKER = "grid_worker"
    STREET_BLOCK_LEAD = "street_block_lead"
    COMMUNITY_OFFICE = "community_office"
    PROPERTY_MANAGER = "property_manager"
    SECURITY_STAFF = "security_staff"
    DEPARTMENT = "department"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Person(_Frozen):
    """Someone who receives alerts."""

    id: Id
    name: str = Field(min_length=1, max_length=128)
    role: Role
    phone: str | None = Field(default=None, description="for SMS")
    email: str | None = Field(default=None, description="for e-mail")
    webhook: str | None = Field(default=None, description="a personal robot or webhook URL")
    wecom: str | None = Field(default=None, max_length=128, description="WeCom (企业微信) user id")
    dingtalk: str | None = Field(default=None, max_length=128, description="DingTalk user id")
    feishu: str | None = Field(default=None, max_length=128, description="Feishu (Lark) user id")


class Unit(_Frozen):
    """A dwelling (户) in a building; devices name it by its number."""

    number: str = Field(min_length=1, max_length=32, description="unit number, e.g. 201")
    floor: int = Field(ge=-10, le=200)


class Building(_Frozen):
    """A building in a grid."""

    id: Id
    name: str | None = Field(default=None, description="defaults to 'Building <id>'")
    floors: int | None = Field(default=None, ge=1, le=200)
    units: tuple[Unit, ...] = Field(default=(), description="optional list of the dwellings")

    @model_validator(mode="after")
    def _check_units(self) -> Building:
        numbers: set[str] = set()
        for unit in self.units:
            if unit.number in numbers:
                msg = f"building {self.id!r}: unit {unit.number!r} is listed twice"
                raise ValueError(msg)
            numbers.add(unit.number)
            if self.floors is not None and unit.floor > self.floors:
                msg = (
                    f"building {self.id!r}: unit {unit.number!r} is on floor {unit.floor}, "
                    f"above the building's {self.floors} floors"
                )
                raise ValueError(msg)
        return self


class Grid(_Frozen):
    """A grid (网格) of a few hundred households, with its responsible worker."""

    id: Id
    name: str = Field(min_length=1, max_length=128)
    worker: Id | None = Field(default=None, description="person id of the grid worker")
    buildings: tuple[Building, ...] = ()
    areas: tuple[str, ...] = Field(default=(), description="places outside buildings (gates)")


class Gateway(_Frozen):
    """An edge gateway of the site."""

    id: Id
    name: str | None = None


class Device(_Frozen):
    """A device and where it is."""

    id: Id
    gateway: Id
    kind: str = Field(min_length=1, max_length=64, description="device class, e.g. smoke")
    building: Id | None = None
    floor: int | None = Field(default=None, ge=-10, le=200)
    unit: str | None = Field(default=None, max_length=32)
    area: str | None = Field(default=None, max_length=128, description="e.g. 'East gate'")
    grid: Id | None = Field(default=None, description="needed only outside buildings")


class SiteInfo(_Frozen):
    """The site itself."""

    id: Id
    name: str
    timezone: str = "UTC"


class SiteFile(_Frozen):
    """The whole site file."""

    site: SiteInfo
    people: tuple[Person, ...] = ()
    grids: tuple[Grid, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    devices: tuple[Device, ...] = ()
    escalation: Mapping[str, tuple[Id, ...]] = Field(
        default_factory=dict, description="tier name -> person ids (street_block, office, ...)"
    )

    @model_validator(mode="after")
    def _check_references(self) -> SiteFile:
        people = {p.id for p in self.people}
        gateways = {g.id for g in self.gateways}
        buildings = {b.id for g in self.grids for b in g.buildings}
        grids = {g.id for g in self.grids}
        _unique("person", [p.id for p in self.people])
        _unique("grid", [g.id for g in self.grids])
        _unique("building", [b.id for g in self.grids for b in g.buildings])
        _unique("gateway", [g.id for g in self.gateways])
        _unique("device", [d.id for d in self.devices])
        for grid in self.grids:
            if grid.worker is not None and grid.worker not in people:
                msg = f"grid {grid.id!r}: worker {grid.worker!r} is not a person"
                raise ValueError(msg)
        for tier, members in self.escalation.items():
            for person in members:
                if person not in people:
                    msg = f"escalation tier {tier!r}: {person!r} is not a person"
                    raise ValueError(msg)
        _check_devices(self.devices, gateways=gateways, buildings=buildings, grids=grids)
        return self


def _check_devices(
    devices: Iterable[Device], *, gateways: set[str], buildings: set[str], grids: set[str]
) -> None:
    for device in devices:
        where = f"device {device.id!r}"
        if device.gateway not in gateways:
            msg = f"{where}: gateway {device.gateway!r} is not listed"
            raise ValueError(msg)
        if device.building is not None and device.building not in buildings:
            msg = f"{where}: building {device.building!r} is in no grid"
            raise ValueError(msg)
        if device.building is None and device.grid is None:
            msg = f"{where}: a device outside a building needs a grid"
            raise ValueError(msg)
        if device.grid is not None and device.grid not in grids:
            msg = f"{where}: grid {device.grid!r} is not listed"
            raise ValueError(msg)


def _unique(what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            msg = f"duplicate {what} id {item!r}"
            raise ValueError(msg)
        seen.add(item)


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device with its place resolved, as the ingest path needs it."""

    id: str
    gateway: str
    kind: str
    grid: str
    grid_name: str
    building: str | None
    floor: int | None
    unit: str | None
    area: str | None
    place: str
    labels: Mapping[str, str]
    tags: str  # pre-escaped line-protocol tag set, computed once


def _escape_tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def line_protocol_tags(labels: Mapping[str, str], keys: Iterable[str]) -> str:
    """``k=v`` pairs for the keys present, escaped and sorted as line protocol prefers."""
    parts = [f"{k}={_escape_tag(labels[k])}" for k in sorted(keys) if labels.get(k)]
    return ",".join(parts)


class Registry:
    """The in-memory index of a site, built from a :class:`SiteFile`."""

    def __init__(self, site: SiteFile) -> None:
        self.site = site
        self.people = {p.id: p for p in site.people}
        self.grids = {g.id: g for g in site.grids}
        self.gateways = {g.id: g for g in site.gateways}
        building_grid = {b.id: (g, b) for g in site.grids for b in g.buildings}
        self.devices: dict[str, DeviceInfo] = {}
        for device in site.devices:
            if device.building is not None:
                grid, building = building_grid[device.building]
                building_name = building.name or f"Building {building.id}"
            else:
                grid, building_name = self.grids[device.grid or ""], None
            place = _describe_place(building_name, device)
            labels = {
                "site": site.site.id,
                "gateway": device.gateway,
                "device": device.id,
                "device_kind": device.kind,
                "grid": grid.id,
                "grid_name": grid.name,
                "building": device.building or "",
                "floor": "" if device.floor is None else str(device.floor),
                "unit": device.unit or "",
                "area": device.area or "",
                "place": place,
            }
            self.devices[device.id] = DeviceInfo(
                id=device.id,
                gateway=device.gateway,
                kind=device.kind,
                grid=grid.id,
                grid_name=grid.name,
                building=device.building,
                floor=device.floor,
                unit=device.unit,
                area=device.area,
                place=place,
                labels=labels,
                tags=line_protocol_tags(labels, DEVICE_TAGS),
            )

    @property
    def site_id(self) -> str:
        """The site's id."""
        return self.site.site.id

    def grid_worker(self, grid_id: str) -> Person | None:
        """The person responsible for a grid."""
        grid = self.grids.get(grid_id)
        if grid is None or grid.worker is None:
            return None
        return self.people.get(grid.worker)

    def find_device(
        self, *, building: str, floor: int | None, unit: str | None, kind: str
    ) -> str | None:
        """The id of the device of ``kind`` at a place, if there is exactly one."""
        found = [
            d.id
            for d in self.devices.values()
            if d.building == building
            and d.kind == kind
            and (floor is None or d.floor == floor)
            and (unit is None or d.unit == unit)
        ]
        return found[0] if len(found) == 1 else None


def _describe_place(building_name: str | None, device: Device) -> str:
    parts: list[str] = []
    if building_name:
        parts.append(building_name)
    if device.floor is not None:
        parts.append(f"floor {device.floor}")
    if device.unit:
        parts.append(f"unit {device.unit}")
    if device.area:
        parts.append(device.area)
    return ", ".join(parts) or device.id


def parse_site(data: Any, *, source: str = "<site>") -> SiteFile:
    """Validate a parsed site YAML tree."""
    try:
        return SiteFile.model_validate(data)
    except ValidationError as exc:
        problem = validation_problem(exc)
        raise ConfigError(source, problem.field, problem.reason) from None


def load_site(path: Path) -> SiteFile:
    """Load and validate a site file."""
    try:
        data = read_yaml(path)
    except ConfigFileError as problem:
        raise ConfigError(str(path), problem.field, problem.reason) from None
    return parse_site(data, source=str(path))


SCHEMA = """
CREATE TABLE IF NOT EXISTS site (id TEXT PRIMARY KEY, name TEXT NOT NULL, timezone TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS person (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
    phone TEXT, email TEXT, webhook TEXT);
CREATE TABLE IF NOT EXISTS grid (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, worker TEXT REFERENCES person(id));
CREATE TABLE IF NOT EXISTS building (
    id TEXT PRIMARY KEY, grid TEXT NOT NULL REFERENCES grid(id), name TEXT, floors INTEGER);
CREATE TABLE IF NOT EXISTS unit (
    building TEXT NOT NULL REFERENCES building(id), number TEXT NOT NULL, floor INTEGER NOT NULL,
    PRIMARY KEY (building, number));
CREATE TABLE IF NOT EXISTS gateway (id TEXT PRIMARY KEY, name TEXT);
CREATE TABLE IF NOT EXISTS device (
    id TEXT PRIMARY KEY, gateway TEXT NOT NULL REFERENCES gateway(id), kind TEXT NOT NULL,
    grid TEXT NOT NULL REFERENCES grid(id), building TEXT REFERENCES building(id),
    floor INTEGER, unit TEXT, area TEXT, place TEXT NOT NULL);
"""


def save_registry(conn: sqlite3.Connection, registry: Registry) -> None:
    """Replace the stored registry with ``registry`` in one transaction."""
    site = registry.site
    with conn:
        conn.executescript(SCHEMA)
        for table in ("device", "unit", "building", "grid", "gateway", "person", "site"):
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 - table names are constants
        conn.execute(
            "INSERT INTO site VALUES (?, ?, ?)", (site.site.id, site.site.name, site.site.timezone)
        )
        conn.executemany(
            "INSERT INTO person VALUES (?, ?, ?, ?, ?, ?)",
            [(p.id, p.name, p.role.value, p.phone, p.email, p.webhook) for p in site.people],
        )
        conn.executemany(
            "INSERT INTO grid VALUES (?, ?, ?)", [(g.id, g.name, g.worker) for g in site.grids]
        )
        conn.executemany(
            "INSERT INTO building VALUES (?, ?, ?, ?)",
            [(b.id, g.id, b.name, b.floors) for g in site.grids for b in g.buildings],
        )
        conn.executemany(
            "INSERT INTO unit VALUES (?, ?, ?)",
            [(b.id, u.number, u.floor) for g in site.grids for b in g.buildings for u in b.units],
        )
        conn.executemany(
            "INSERT INTO gateway VALUES (?, ?)", [(g.id, g.name) for g in site.gateways]
        )
        conn.executemany(
            "INSERT INTO device VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (d.id, d.gateway, d.kind, d.grid, d.building, d.floor, d.unit, d.area, d.place)
                for d in registry.devices.values()
            ],
        )
