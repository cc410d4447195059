"""Editing the site file in place: grids, buildings, units, people, gateways and devices.

The site file is the registry's source of truth, and people write comments in it, so edits go
through ruamel.yaml's round trip: comments, key order and quoting survive.  Every change is
checked by building the hub's own :class:`~hub.registry.SiteFile` and
:class:`~hub.registry.Registry` from the exact text about to be written, so a write never leaves
an invalid file, and the write itself is atomic (a temporary file, then ``os.replace``).

Adding what is already there with the same values changes nothing and reports ``unchanged``, so
re-running a provisioning script is safe.  Adding over a different entry is refused unless
``replace`` is given; removing something still referred to is refused unless ``force`` is given.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import tempfile
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.error import YAMLError as RuamelYAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken
from ruamel.yaml.util import load_yaml_guess_indent

from hub.errors import ConfigError, HubError
from hub.registry import Registry, Role, SiteFile, parse_site
from wire.topics import ID_PATTERN

__all__ = [
    "CONTACT_CHANNELS",
    "Change",
    "ConflictError",
    "InUseError",
    "NotFoundError",
    "Place",
    "SiteEditError",
    "SiteEditor",
    "Status",
    "YamlFile",
    "delete_item",
    "items_flow",
    "node",
    "plain",
    "same_values",
    "section",
    "write_atomic",
]

Status = Literal["added", "unchanged", "replaced", "updated", "moved", "removed"]

CONTACT_CHANNELS = ("phone", "email", "wecom", "dingtalk", "feishu", "webhook")
_ID = re.compile(ID_PATTERN)
_PLACE_KEYS = ("building", "floor", "unit", "grid", "area")
_MIN_FLOOR, _MAX_FLOOR = -10, 200
_MAX_UNIT_NUMBER, _MAX_KIND = 32, 64  # as hub.registry's Unit.number and Device.kind
_NUMBER_LIKE = re.compile(r"^[+-]?[0-9]")


class SiteEditError(HubError, ValueError):
    """An edit that cannot be made; ``hints`` say what to do next.  Nothing was written."""

    def __init__(self, message: str, *hints: str) -> None:
        super().__init__(message)
        self.message = message
        self.hints = hints


class NotFoundError(SiteEditError, LookupError):
    """The thing to change is not in the file."""


class ConflictError(SiteEditError):
    """An add that would overwrite a different entry."""


class InUseError(SiteEditError):
    """A remove refused because other entries still refer to the thing."""

    def __init__(self, message: str, blockers: Sequence[str], *hints: str) -> None:
        super().__init__(message, *hints)
        self.blockers = tuple(blockers)


@dataclass(frozen=True, slots=True)
class Change:
    """What one operation did to one entry."""

    what: str
    id: str
    status: Status
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.what} {self.id}: {self.status}"
        return f"{text} ({self.detail})" if self.detail else text

    def as_dict(self) -> dict[str, str]:
        """The change as JSON-friendly data."""
        return {"what": self.what, "id": self.id, "status": self.status, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Place:
    """Where a device is: in a building (floor, unit, area), or in an area of a grid."""

    building: str | None = None
    floor: int | None = None
    unit: str | None = None
    area: str | None = None
    grid: str | None = None

    def is_empty(self) -> bool:
        """Whether no part of a place is given."""
        return all(getattr(self, key) is None for key in _PLACE_KEYS)


# -- YAML round trip ---------------------------------------------------------------------------


def plain(tree: Any) -> Any:
    """A ruamel tree as plain dicts, lists and scalars (for comparisons and JSON)."""
    if isinstance(tree, Mapping):
        return {str(k): plain(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [plain(v) for v in tree]
    for scalar in (bool, int, float, str):  # ruamel's scalar subclasses to the plain types
        if isinstance(tree, scalar):
            return scalar(tree)
    return tree


def same_values(a: Any, b: Any) -> bool:
    """Whether two trees hold the same values, key order aside (``1`` and ``true`` differ)."""
    return json.dumps(plain(a), sort_keys=True, default=str) == json.dumps(
        plain(b), sort_keys=True, default=str
    )


def _needs_quotes(text: str) -> bool:
    # The daemons read with PyYAML (YAML 1.1), where "yes", "on" and "0755" are not strings;
    # quoting what merely looks like a number ("201", "+86-...") keeps the example files' style.
    if _NUMBER_LIKE.match(text):
        return True
    try:
        return bool(yaml.safe_load(text) != text)
    except yaml.YAMLError:
        return True


def node(value: Any, *, flow: bool = True) -> Any:
    """A value ready to put into a ruamel tree; strings that need quotes get double quotes."""
    if isinstance(value, str):
        return DoubleQuotedScalarString(value) if _needs_quotes(value) else value
    if isinstance(value, Mapping):
        out = CommentedMap()
        for key, item in value.items():
            if item is not None:
                out[str(key)] = node(item, flow=flow)
        _set_flow(out, flow=flow)
        return out
    if isinstance(value, list | tuple):
        seq = CommentedSeq([node(item, flow=True) for item in value])
        # Short lists of scalars read best inline, as in `areas: [East gate]`.
        _set_flow(seq, flow=flow or all(not isinstance(i, Mapping | list) for i in value))
        return seq
    return value


def _set_flow(container: CommentedMap | CommentedSeq, *, flow: bool) -> None:
    if flow:
        container.fa.set_flow_style()
    else:
        container.fa.set_block_style()


def _is_flow(container: object) -> bool:
    return isinstance(container, CommentedMap | CommentedSeq) and bool(container.fa.flow_style())


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` at once: readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _round_trip_yaml() -> YAML:
    yaml_rt = YAML(typ="rt")
    yaml_rt.preserve_quotes = True
    yaml_rt.width = 4096  # never re-wrap a long line someone wrote
    return yaml_rt


class YamlFile:
    """A YAML file whose top level is a mapping, edited in place and written atomically."""

    def __init__(self, path: Path, root: CommentedMap, yaml_rt: YAML, original: str | None) -> None:
        self.path = path
        self.root = root
        self._yaml = yaml_rt
        self._original = original

    @classmethod
    def load(cls, path: Path, *, what: str = "file") -> YamlFile:
        """Read ``path``.

        Raises:
            SiteEditError: if it cannot be read, is not YAML, or is not a mapping.
        """
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SiteEditError(
                f"cannot read {what} {path}: {exc.strerror or exc}",
                "check the path, or give another one",
            ) from None
        return cls.parse(path, text, what=what)

    @classmethod
    def parse(cls, path: Path, text: str, *, what: str = "file", new: bool = False) -> YamlFile:
        """Parse ``text`` as the contents of ``path`` (``new``: not on disk yet)."""
        yaml_rt = _round_trip_yaml()
        try:
            root, indent, block_seq_indent = load_yaml_guess_indent(text, yaml=yaml_rt)
        except RuamelYAMLError as exc:
            raise SiteEditError(
                f"{what} {path} is not valid YAML: {exc}", "fix the file by hand, then run again"
            ) from None
        if root is None:
            root = CommentedMap()
        if not isinstance(root, CommentedMap):
            raise SiteEditError(
                f"{what} {path} is not a mapping of settings",
                "fix the file by hand, then run again",
            )
        # Blank lines and comments between top-level sections stay between them, whatever
        # entries are added or removed at the end of a section.
        _anchor_section_gaps(root)
        # Keep the file's own indentation, so an edit changes only the lines it must.
        if block_seq_indent is None:
            yaml_rt.indent(mapping=indent or 2, sequence=4, offset=2)
        else:
            yaml_rt.indent(mapping=2, sequence=indent or 4, offset=block_seq_indent)
        return cls(path, root, yaml_rt, None if new else text)

    def dump(self) -> str:
        """The text the file would have now."""
        out = io.StringIO()
        self._yaml.dump(self.root, out)
        return out.getvalue()

    def changed(self) -> bool:
        """Whether writing would change the file."""
        return self._original is None or self.dump() != self._original

    def write(self) -> bool:
        """Write the file if it changed; return whether it did."""
        text = self.dump()
        if self._original is not None and text == self._original:
            return False
        write_atomic(self.path, text)
        self._original = text
        return True


def section(root: CommentedMap, key: str) -> CommentedSeq:
    """The list under ``key``, created (at the end) if missing; empty inline lists turn block."""
    value = root.get(key)
    if isinstance(value, CommentedSeq):
        if not value and _is_flow(value):
            value.fa.set_block_style()
        return value
    seq = CommentedSeq()
    seq.fa.set_block_style()
    new_key = key not in root
    root[key] = seq
    if new_key and len(root) > 1:
        root.yaml_set_comment_before_after_key(key, before="\n")
    return seq


def _take_tail(container: CommentedMap | CommentedSeq) -> list[Any]:
    """Remove and return the blank lines and comments that follow a block container.

    A loaded file keeps them on the last scalar inside the container, or at the end of the
    innermost list; either place moves when entries are added or removed at the end.
    """
    if not container:
        return []
    if isinstance(container, CommentedMap):
        key: Any = list(container)[-1]
        position = 2
    else:
        key = len(container) - 1
        position = 0
    value = container[key]
    tokens: list[Any] = []
    if isinstance(value, CommentedMap | CommentedSeq) and value and not _is_flow(value):
        tokens.extend(_take_tail(value))
    else:
        slot = container.ca.items.get(key)
        token = slot[position] if slot is not None and len(slot) > position else None
        text = token.value if token is not None else ""
        newline = text.find("\n")
        if token is not None and 0 <= newline < len(text) - 1:  # its line end stays
            token.value = text[: newline + 1]
            tokens.append(CommentToken(text[newline + 1 :], CommentMark(0), None))
    if container.ca.end:
        tokens.extend(container.ca.end)
        container.ca.end = []
    return tokens


def _anchor_section_gaps(root: CommentedMap) -> None:
    """Attach what lies between two top-level sections to the second section's key.

    Then adding or removing entries at the end of a section never moves the blank line and
    comment that introduce the next one.
    """
    for key, following in itertools.pairwise(list(root)):
        value = root[key]
        if isinstance(value, CommentedMap | CommentedSeq) and not _is_flow(value):
            tokens = _take_tail(value)
            if tokens:
                slot = root.ca.items.setdefault(following, [None, None, None, None])
                slot[1] = tokens + list(slot[1] or [])


def delete_item(seq: list[Any], index: int) -> None:
    """Delete an entry of a list; a comment line above it stays, above the next entry."""
    comments = seq.ca.items.get(index) if isinstance(seq, CommentedSeq) else None
    above = comments[1] if comments and len(comments) > 1 else None
    del seq[index]
    if above and isinstance(seq, CommentedSeq) and index < len(seq):
        slot = seq.ca.items.setdefault(index, [None, None, None, None])
        slot[1] = list(above) + list(slot[1] or [])


def items_flow(seq: CommentedSeq, *, default: bool) -> bool:
    """Whether a new item of ``seq`` should be inline: like its neighbours, else ``default``."""
    for item in reversed(seq):
        if isinstance(item, CommentedMap):
            return _is_flow(item)
    return default


def _find(seq: Iterable[Any], value: str, key: str = "id") -> int | None:
    for index, item in enumerate(seq):
        if isinstance(item, Mapping) and str(item.get(key)) == value:
            return index
    return None


def _check_id(what: str, value: str) -> None:
    if not _ID.match(value):
        raise SiteEditError(
            f"{what} id {value!r} is not valid",
            "use letters, digits, '.', '_' and '-' (up to 64, starting with a letter or digit)",
        )


def _names(ids: Iterable[str]) -> str:
    return ", ".join(sorted(ids)) or "none"


# -- the site editor ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _BuildingRef:
    grid: CommentedMap
    building: CommentedMap
    index: int


class SiteEditor:
    """Operations on one site file; :meth:`save` checks the result and writes it atomically."""

    def __init__(self, doc: YamlFile) -> None:
        self.doc = doc

    @property
    def path(self) -> Path:
        """The site file."""
        return self.doc.path

    @property
    def root(self) -> CommentedMap:
        """The file's top-level mapping."""
        return self.doc.root

    @classmethod
    def open(cls, path: Path) -> SiteEditor:
        """Open an existing, valid site file.

        Raises:
            SiteEditError: if it is missing or does not load as the hub would load it.
        """
        if not path.is_file():
            raise NotFoundError(
                f"no site file at {path}",
                f"create one: anju site init SITE_ID --name NAME --timezone Asia/Shanghai "
                f"--site {path}",
                "or name an existing one with --site FILE",
            )
        editor = cls(YamlFile.load(path, what="site file"))
        editor.check(intro=f"site file {path} is not valid as it is", hint="fix it by hand first")
        return editor

    @classmethod
    def create(cls, path: Path, *, site_id: str, name: str, timezone: str) -> SiteEditor:
        """A new site file (in memory until :meth:`save`) with empty sections."""
        _check_site(site_id, name, timezone)
        header = (
            f"# {' '.join(name.split())}: grids, buildings, units, people, gateways and devices.\n"
            "# Locations live here, keyed by device id; gateways only know device ids.\n"
        )
        site = node({"id": site_id, "name": name, "timezone": timezone}, flow=False)
        body = io.StringIO()
        _round_trip_yaml().dump({"site": site}, body)
        text = header + body.getvalue()
        text += "\npeople: []\n\nescalation: {}\n\ngrids: []\n\ngateways: []\n\ndevices: []\n"
        return cls(YamlFile.parse(path, text, what="site file", new=True))

    # -- checking and saving --

    def check(self, *, intro: str | None = None, hint: str = "nothing was written") -> SiteFile:
        """The site as the hub would load it from the text about to be written.

        Raises:
            SiteEditError: naming the field and the reason, if the hub would refuse it.
        """
        text = self.doc.dump()
        try:
            data = yaml.safe_load(text)
            site = parse_site(data, source=str(self.path))
            Registry(site)
        except yaml.YAMLError as exc:
            raise SiteEditError(f"{intro or self.path}: not valid YAML: {exc}", hint) from None
        except ConfigError as exc:
            lead = intro or f"the change would make {self.path} invalid"
            raise SiteEditError(f"{lead}: {exc.field}: {exc.reason}", hint) from None
        return site

    def site(self) -> SiteFile:
        """The site as it stands now (with unsaved changes)."""
        return self.check()

    def changed(self) -> bool:
        """Whether saving would write anything."""
        return self.doc.changed()

    def save(self) -> bool:
        """Check the result and write it atomically if it changed; return whether it did."""
        if not self.doc.changed():
            return False
        self.check()
        return self.doc.write()

    # -- reading the tree --

    def _seq(self, key: str) -> list[Any]:
        value = self.root.get(key)
        return value if isinstance(value, list) else []

    def _grids(self) -> list[CommentedMap]:
        return [g for g in self._seq("grids") if isinstance(g, CommentedMap)]

    def _buildings(self) -> Iterator[_BuildingRef]:
        for grid in self._grids():
            buildings = grid.get("buildings")
            if isinstance(buildings, list):
                for index, building in enumerate(buildings):
                    if isinstance(building, CommentedMap):
                        yield _BuildingRef(grid, building, index)

    def _building(self, building_id: str) -> _BuildingRef | None:
        return next(
            (b for b in self._buildings() if str(b.building.get("id")) == building_id), None
        )

    def _grid(self, grid_id: str) -> CommentedMap | None:
        return next((g for g in self._grids() if str(g.get("id")) == grid_id), None)

    def _devices(self) -> list[CommentedMap]:
        return [d for d in self._seq("devices") if isinstance(d, CommentedMap)]

    def _person_ids(self) -> set[str]:
        return {str(p.get("id")) for p in self._seq("people") if isinstance(p, Mapping)}

    def _require_grid(self, grid_id: str) -> CommentedMap:
        grid = self._grid(grid_id)
        if grid is None:
            raise NotFoundError(
                f"no grid {grid_id!r} in {self.path}",
                f"add it first: anju grid add {grid_id} --name NAME",
                f"known grids: {_names(str(g.get('id')) for g in self._grids())}",
            )
        return grid

    def _require_building(self, building_id: str) -> _BuildingRef:
        ref = self._building(building_id)
        if ref is None:
            known = _names(str(b.building.get("id")) for b in self._buildings())
            raise NotFoundError(
                f"no building {building_id!r} in {self.path}",
                f"add it first: anju building add {building_id} --grid GRID",
                f"known buildings: {known}",
            )
        return ref

    # -- site --

    def init_site(self, site_id: str, name: str, timezone: str, *, replace: bool = False) -> Change:
        """Set the site's id, name and time zone."""
        _check_site(site_id, name, timezone)
        wanted = {"id": site_id, "name": name, "timezone": timezone}
        current = self.root.get("site")
        if isinstance(current, CommentedMap):
            have = {"timezone": "UTC", **plain(current)}
            if same_values(have, wanted):
                return Change("site", site_id, "unchanged")
            if not replace:
                raise ConflictError(
                    f"{self.path} is already the site {have.get('id')!r} "
                    f"({have.get('name')}, {have.get('timezone')})",
                    "to change its id, name or time zone, run again with --replace",
                    "to start another site, name another file with --site FILE",
                )
            for key, value in wanted.items():
                current[key] = node(value)
            return Change("site", site_id, "replaced")
        self.root.insert(0, "site", node(wanted, flow=False))
        return Change("site", site_id, "added")

    # -- grids --

    def add_grid(
        self,
        grid_id: str,
        *,
        name: str,
        worker: str | None = None,
        areas: Sequence[str] = (),
        replace: bool = False,
    ) -> Change:
        """Add a grid, or change its name, worker and areas (with ``replace``)."""
        _check_id("grid", grid_id)
        if not name.strip():
            raise SiteEditError("a grid needs a name", "give --name, e.g. --name 'North grid'")
        if worker is not None and worker not in self._person_ids():
            raise NotFoundError(
                f"grid {grid_id}: worker {worker!r} is not a person of the site",
                f"add the person first: anju person add {worker} --name NAME --role grid_worker",
            )
        wanted: dict[str, Any] = {"name": name, "worker": worker, "areas": list(areas)}
        grid = self._grid(grid_id)
        if grid is not None:
            have = {"name": grid.get("name"), "worker": grid.get("worker")}
            have["areas"] = list(grid.get("areas") or [])
            if same_values(have, wanted):
                return Change("grid", grid_id, "unchanged")
            if not replace:
                raise _conflict("grid", grid_id, self.path, have, wanted)
            grid["name"] = node(name)
            _set_or_drop(grid, "worker", worker, before="buildings")
            _set_or_drop(grid, "areas", list(areas) or None)
            return Change("grid", grid_id, "replaced")
        seq = section(self.root, "grids")
        entry = node({"id": grid_id, "name": name, "worker": worker}, flow=False)
        if areas:
            entry["areas"] = node(list(areas))
        seq.append(entry)
        return Change("grid", grid_id, "added")

    def remove_grid(self, grid_id: str, *, force: bool = False) -> list[Change]:
        """Remove a grid; with ``force`` also its buildings and their units (never devices)."""
        grid = self._require_grid(grid_id)
        buildings = [
            str(b.get("id")) for b in grid.get("buildings") or [] if isinstance(b, Mapping)
        ]
        devices = [
            str(d.get("id"))
            for d in self._devices()
            if str(d.get("grid")) == grid_id or str(d.get("building")) in buildings
        ]
        if devices:
            raise InUseError(
                f"grid {grid_id} still has devices: {_names(devices)}",
                [f"device {d}" for d in devices],
                "move them (anju device move ID ...) or remove them (anju device remove ID) "
                "first; --force never removes devices, their gateways still run them",
            )
        if buildings and not force:
            raise InUseError(
                f"grid {grid_id} still has buildings: {_names(buildings)}",
                [f"building {b}" for b in buildings],
                "remove them first (anju building remove ID), "
                "or pass --force to remove them with the grid",
            )
        seq = self.root["grids"]
        delete_item(seq, seq.index(grid))
        return [Change("grid", grid_id, "removed")] + [
            Change("building", b, "removed", f"with grid {grid_id}") for b in buildings
        ]

    # -- buildings --

    def add_building(
        self,
        building_id: str,
        *,
        grid: str,
        name: str | None = None,
        floors: int | None = None,
        replace: bool = False,
    ) -> Change:
        """Add a building to a grid, or change it (with ``replace``; it keeps its units)."""
        _check_id("building", building_id)
        if floors is not None and not 1 <= floors <= _MAX_FLOOR:
            raise SiteEditError(
                f"building {building_id}: {floors} floors is out of range",
                f"give --floors from 1 to {_MAX_FLOOR}",
            )
        target = self._require_grid(grid)
        wanted: dict[str, Any] = {"grid": grid, "name": name, "floors": floors}
        ref = self._building(building_id)
        if ref is not None:
            have = {
                "grid": str(ref.grid.get("id")),
                "name": ref.building.get("name"),
                "floors": ref.building.get("floors"),
            }
            if same_values(have, wanted):
                return Change("building", building_id, "unchanged")
            if not replace:
                raise _conflict("building", building_id, self.path, have, wanted)
            _set_or_drop(ref.building, "name", name, before="floors")
            _set_or_drop(ref.building, "floors", floors, before="units")
            if have["grid"] != grid:
                delete_item(ref.grid["buildings"], ref.index)
                self._grid_buildings(target).append(ref.building)
                return Change("building", building_id, "moved", f"to grid {grid}")
            return Change("building", building_id, "replaced")
        seq = self._grid_buildings(target)
        entry = node(
            {"id": building_id, "name": name, "floors": floors}, flow=items_flow(seq, default=True)
        )
        seq.append(entry)
        return Change("building", building_id, "added")

    def _grid_buildings(self, grid: CommentedMap) -> CommentedSeq:
        seq = grid.get("buildings")
        if isinstance(seq, CommentedSeq):
            return seq
        seq = CommentedSeq()
        seq.fa.set_block_style()
        # Buildings come before areas, as in the example site.
        position = list(grid).index("areas") if "areas" in grid else len(grid)
        grid.insert(position, "buildings", seq)
        return seq

    def remove_building(self, building_id: str, *, force: bool = False) -> list[Change]:
        """Remove a building; with ``force`` also its units (never its devices)."""
        ref = self._require_building(building_id)
        devices = [
            str(d.get("id")) for d in self._devices() if str(d.get("building")) == building_id
        ]
        if devices:
            raise InUseError(
                f"building {building_id} still has devices: {_names(devices)}",
                [f"device {d}" for d in devices],
                "move them (anju device move ID ...) or remove them (anju device remove ID) "
                "first; --force never removes devices, their gateways still run them",
            )
        units = [str(u.get("number")) for u in ref.building.get("units") or []]
        if units and not force:
            raise InUseError(
                f"building {building_id} still has units: {_names(units)}",
                [f"unit {u}" for u in units],
                "remove them first (anju unit remove NUMBER --building ID), "
                "or pass --force to remove them with the building",
            )
        delete_item(ref.grid["buildings"], ref.index)
        return [Change("building", building_id, "removed")] + [
            Change("unit", f"{building_id}/{u}", "removed", f"with building {building_id}")
            for u in units
        ]

    # -- units --

    def add_unit(self, building: str, number: str, *, floor: int, replace: bool = False) -> Change:
        """Add a unit (a dwelling) to a building."""
        ref = self._require_building(building)
        unit_id = f"{building}/{number}"
        if not number.strip() or len(number) > _MAX_UNIT_NUMBER:
            raise SiteEditError(
                f"unit number {number!r} is not valid", f"give 1 to {_MAX_UNIT_NUMBER} characters"
            )
        floors = ref.building.get("floors")
        if not _MIN_FLOOR <= floor <= (floors if isinstance(floors, int) else _MAX_FLOOR):
            raise SiteEditError(
                f"unit {unit_id}: floor {floor} is not in building {building}"
                + (f", which has {floors} floors" if isinstance(floors, int) else ""),
                "fix --floor, or change the building's floors: "
                f"anju building add {building} --grid {ref.grid.get('id')} --floors N --replace",
            )
        units = ref.building.get("units")
        if isinstance(units, list):
            index = _find(units, number, key="number")
            if index is not None:
                have = {"floor": units[index].get("floor")}
                if same_values(have, {"floor": floor}):
                    return Change("unit", unit_id, "unchanged")
                if not replace:
                    raise _conflict(
                        "unit",
                        unit_id,
                        self.path,
                        have,
                        {"floor": floor},
                        remove=f"anju unit remove {number} --building {building}",
                    )
                units[index]["floor"] = floor
                return Change("unit", unit_id, "replaced")
        if not isinstance(units, CommentedSeq):
            units = CommentedSeq()
            units.fa.set_block_style()
            ref.building["units"] = units
            # A building with units reads better on several lines than on one long one.
            ref.building.fa.set_block_style()
        units.append(node({"number": number, "floor": floor}, flow=True))
        return Change("unit", unit_id, "added")

    def remove_unit(self, building: str, number: str, *, force: bool = False) -> list[Change]:
        """Remove a unit; devices that name it block this unless ``force``."""
        ref = self._require_building(building)
        unit_id = f"{building}/{number}"
        units = ref.building.get("units")
        index = _find(units, number, key="number") if isinstance(units, list) else None
        if units is None or index is None:
            raise NotFoundError(
                f"no unit {number!r} in building {building}",
                f"anju unit list --building {building} shows its units",
            )
        devices = [
            str(d.get("id"))
            for d in self._devices()
            if str(d.get("building")) == building and str(d.get("unit")) == number
        ]
        if devices and not force:
            raise InUseError(
                f"unit {unit_id} still has devices: {_names(devices)}",
                [f"device {d}" for d in devices],
                "move them (anju device move ID ...) first, or pass --force to remove the unit "
                "from the list anyway (the devices keep its number as their place)",
            )
        delete_item(units, index)
        if not units:
            del ref.building["units"]
        return [Change("unit", unit_id, "removed")]

    # -- people --

    def add_person(
        self,
        person_id: str,
        *,
        name: str,
        role: Role | str,
        contacts: Mapping[str, str | None] | None = None,
        tiers: Sequence[str] = (),
        replace: bool = False,
    ) -> list[Change]:
        """Add a person with contact channels; ``tiers`` adds them to escalation tiers."""
        _check_id("person", person_id)
        try:
            role = Role(role)
        except ValueError:
            raise SiteEditError(
                f"person {person_id}: unknown role {role!r}",
                f"roles: {', '.join(r.value for r in Role)}",
            ) from None
        if not name.strip():
            raise SiteEditError("a person needs a name", "give --name")
        contacts = {k: v for k, v in (contacts or {}).items() if v}
        unknown = sorted(set(contacts) - set(CONTACT_CHANNELS))
        if unknown:
            raise SiteEditError(
                f"person {person_id}: unknown contact channel(s) {', '.join(unknown)}",
                f"channels: {', '.join(CONTACT_CHANNELS)}",
            )
        for tier in tiers:
            _check_id("escalation tier", tier)
        wanted = {"id": person_id, "name": name, "role": role.value, **contacts}
        seq = section(self.root, "people")
        index = _find(seq, person_id)
        changes: list[Change] = []
        if index is not None:
            if not same_values(seq[index], wanted):
                if not replace:
                    raise _conflict("person", person_id, self.path, plain(seq[index]), wanted)
                seq[index] = node(wanted, flow=_is_flow(seq[index]))
                changes.append(Change("person", person_id, "replaced"))
            else:
                changes.append(Change("person", person_id, "unchanged"))
        else:
            seq.append(node(wanted, flow=items_flow(seq, default=True)))
            changes.append(Change("person", person_id, "added"))
        changes.extend(self._join_tier(tier, person_id) for tier in tiers)
        return changes

    def _join_tier(self, tier: str, person_id: str) -> Change:
        escalation = self.root.get("escalation")
        if not isinstance(escalation, CommentedMap):
            escalation = CommentedMap()
            escalation.fa.set_block_style()
            position = list(self.root).index("people") + 1 if "people" in self.root else 1
            self.root.insert(position, "escalation", escalation)
            self.root.yaml_set_comment_before_after_key("escalation", before="\n")
        elif not escalation and _is_flow(escalation):
            escalation.fa.set_block_style()
        members = escalation.get(tier)
        if isinstance(members, list):
            if person_id in [str(m) for m in members]:
                return Change("tier", tier, "unchanged", f"{person_id} is a member")
            members.append(node(person_id))
            return Change("tier", tier, "updated", f"{person_id} joined")
        flow = any(_is_flow(v) for v in escalation.values()) or not escalation
        escalation[tier] = node([person_id], flow=flow)
        return Change("tier", tier, "added", f"with {person_id}")

    def remove_person(self, person_id: str, *, force: bool = False) -> list[Change]:
        """Remove a person; grid work and tier membership block this unless ``force``."""
        seq = self._seq("people")
        index = _find(seq, person_id)
        if index is None:
            raise NotFoundError(
                f"no person {person_id!r} in {self.path}", "anju person list shows the people"
            )
        grids = [g for g in self._grids() if str(g.get("worker")) == person_id]
        escalation = self.root.get("escalation")
        tiers = [
            str(tier)
            for tier, members in (escalation.items() if isinstance(escalation, Mapping) else ())
            if isinstance(members, list) and person_id in [str(m) for m in members]
        ]
        blockers = [f"worker of grid {g.get('id')}" for g in grids]
        blockers += [f"member of escalation tier {t}" for t in tiers]
        if blockers and not force:
            hints = [
                f"give grid {g.get('id')} another worker: anju grid add {g.get('id')} "
                f"--name {_quote(str(g.get('name')))} --worker OTHER --replace"
                for g in grids
            ]
            if tiers:
                hints.append("take them out of the tiers under escalation: in the site file")
            hints.append("or pass --force to remove the person and clear these references")
            raise InUseError(
                f"person {person_id} is still the {' and '.join(blockers)}", blockers, *hints
            )
        changes = [Change("person", person_id, "removed")]
        for grid in grids:
            del grid["worker"]
            changes.append(Change("grid", str(grid.get("id")), "updated", "no worker now"))
        for tier in tiers:
            members = escalation[tier]
            delete_item(members, [str(m) for m in members].index(person_id))
            changes.append(Change("tier", tier, "updated", f"{person_id} left"))
        delete_item(seq, index)
        return changes

    # -- gateways --

    def add_gateway(self, gateway_id: str, *, name: str | None = None) -> Change:
        """List a gateway in the site (devices name the gateway that reads them)."""
        _check_id("gateway", gateway_id)
        seq = section(self.root, "gateways")
        index = _find(seq, gateway_id)
        if index is not None:
            if name is None or seq[index].get("name") == name:
                return Change("gateway", gateway_id, "unchanged")
            seq[index]["name"] = node(name)
            return Change("gateway", gateway_id, "updated", "new name")
        seq.append(node({"id": gateway_id, "name": name}, flow=items_flow(seq, default=True)))
        return Change("gateway", gateway_id, "added")

    def gateway_ids(self) -> list[str]:
        """The gateways listed in the site."""
        return [str(g.get("id")) for g in self._seq("gateways") if isinstance(g, Mapping)]

    def site_id(self) -> str:
        """The site's id."""
        site = self.root.get("site")
        return str(site.get("id")) if isinstance(site, Mapping) else ""

    # -- devices --

    def device(self, device_id: str) -> dict[str, Any] | None:
        """The site entry of a device, as plain data."""
        for entry in self._devices():
            if str(entry.get("id")) == device_id:
                return dict(plain(entry))
        return None

    def resolve_place(self, place: Place) -> dict[str, Any]:
        """The place keys of a device entry, checked against the site.

        A listed unit gives the floor when none is given; a grid listing the area gives the grid.
        """
        if place.is_empty():
            raise SiteEditError(
                "a device needs a place",
                "give --building B [--floor F] [--unit U] [--area A], or --area A [--grid G]",
            )
        if place.building is None:
            return self._resolve_outside(place)
        ref = self._require_building(place.building)
        grid_id = str(ref.grid.get("id"))
        if place.grid is not None and place.grid != grid_id:
            raise SiteEditError(
                f"building {place.building} is in grid {grid_id}, not {place.grid}",
                "leave out --grid for a device in a building: the building gives the grid",
            )
        floor = place.floor
        units = ref.building.get("units")
        if place.unit is not None and isinstance(units, list) and units:
            index = _find(units, place.unit, key="number")
            if index is None:
                raise NotFoundError(
                    f"building {place.building} lists no unit {place.unit!r}",
                    f"add it first: anju unit add {place.unit} --building {place.building} "
                    "--floor F",
                    f"listed units: {_names(str(u.get('number')) for u in units)}",
                )
            unit_floor = int(units[index].get("floor"))
            if floor is not None and floor != unit_floor:
                raise SiteEditError(
                    f"unit {place.unit} of building {place.building} is on floor {unit_floor}, "
                    f"not {floor}",
                    "fix --floor, or leave it out: the unit gives it",
                )
            floor = unit_floor
        floors = ref.building.get("floors")
        top = floors if isinstance(floors, int) else _MAX_FLOOR
        if floor is not None and not _MIN_FLOOR <= floor <= top:
            raise SiteEditError(
                f"floor {floor} is not in building {place.building}"
                + (f", which has {floors} floors" if isinstance(floors, int) else ""),
                f"give --floor from {_MIN_FLOOR} (basements) to {top}",
            )
        return {
            "building": place.building,
            "floor": floor,
            "unit": place.unit,
            "area": place.area,
        }

    def _resolve_outside(self, place: Place) -> dict[str, Any]:
        if place.floor is not None or place.unit is not None:
            raise SiteEditError(
                "--floor and --unit need --building",
                "give --building too, or use --area A [--grid G] for places outside buildings",
            )
        grid_id = place.grid
        if grid_id is None:
            having = [
                str(g.get("id"))
                for g in self._grids()
                if place.area in [str(a) for a in g.get("areas") or []]
            ]
            if len(having) != 1:
                raise SiteEditError(
                    f"which grid is the area {place.area!r} in?"
                    + (f" (listed by grids {', '.join(having)})" if having else ""),
                    "give --grid G: the grid's worker answers for devices outside buildings",
                )
            grid_id = having[0]
        self._require_grid(grid_id)
        return {"grid": grid_id, "area": place.area}

    def add_device(
        self,
        device_id: str,
        *,
        gateway: str,
        kind: str,
        place: Place,
        replace: bool = False,
    ) -> Change:
        """Add a device with its place, or change it (with ``replace``)."""
        _check_id("device", device_id)
        if not 0 < len(kind) <= _MAX_KIND:
            raise SiteEditError(f"device {device_id}: kind {kind!r} is not valid", "e.g. smoke")
        if gateway not in self.gateway_ids():
            raise NotFoundError(
                f"device {device_id}: gateway {gateway!r} is not listed in {self.path}",
                "provision the gateway first, or add it under gateways: in the site file",
                f"listed gateways: {_names(self.gateway_ids())}",
            )
        wanted = {"id": device_id, "gateway": gateway, "kind": kind, **self.resolve_place(place)}
        wanted = {k: v for k, v in wanted.items() if v is not None}
        seq = section(self.root, "devices")
        index = _find(seq, device_id)
        if index is not None:
            if same_values(seq[index], wanted):
                return Change("device", device_id, "unchanged")
            if not replace:
                raise _conflict("device", device_id, self.path, plain(seq[index]), wanted)
            seq[index] = node(wanted, flow=_is_flow(seq[index]))
            return Change("device", device_id, "replaced")
        entry = node(wanted, flow=items_flow(seq, default=True))
        # Next to the other devices of its gateway, under that gateway's comment if there is one.
        last = max(
            (
                i
                for i, d in enumerate(seq)
                if isinstance(d, Mapping) and d.get("gateway") == gateway
            ),
            default=None,
        )
        if last is None or last == len(seq) - 1:
            seq.append(entry)
        else:
            seq.insert(last + 1, entry)
        return Change("device", device_id, "added")

    def move_device(self, device_id: str, place: Place) -> Change:
        """Give a device a new place (its gateway and kind stay)."""
        seq = self._seq("devices")
        index = _find(seq, device_id)
        if index is None:
            raise NotFoundError(
                f"no device {device_id!r} in {self.path}", "anju device list shows the devices"
            )
        current = seq[index]
        wanted = {k: v for k, v in plain(current).items() if k not in _PLACE_KEYS}
        wanted.update({k: v for k, v in self.resolve_place(place).items() if v is not None})
        if same_values(current, wanted):
            return Change("device", device_id, "unchanged")
        seq[index] = node(wanted, flow=_is_flow(current))
        return Change("device", device_id, "moved")

    def remove_device(self, device_id: str) -> Change:
        """Remove a device from the site."""
        seq = self._seq("devices")
        index = _find(seq, device_id)
        if index is None:
            raise NotFoundError(
                f"no device {device_id!r} in {self.path}", "anju device list shows the devices"
            )
        delete_item(seq, index)
        return Change("device", device_id, "removed")


def _check_site(site_id: str, name: str, timezone: str) -> None:
    _check_id("site", site_id)
    if not name.strip():
        raise SiteEditError("a site needs a name", "give --name, e.g. --name 'Sunrise Garden'")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SiteEditError(
            f"unknown time zone {timezone!r}", "give an IANA name, e.g. --timezone Asia/Shanghai"
        ) from None


def _set_or_drop(entry: CommentedMap, key: str, value: Any, *, before: str | None = None) -> None:
    if value is None:
        entry.pop(key, None)
    elif key in entry:
        entry[key] = node(value, flow=_is_flow(entry))
    elif before is not None and before in entry:
        entry.insert(list(entry).index(before), key, node(value, flow=_is_flow(entry)))
    else:
        entry[key] = node(value, flow=_is_flow(entry))


def _quote(text: str) -> str:
    return f"'{text}'" if re.search(r"[^A-Za-z0-9_.\-/]", text) else text


def _conflict(
    what: str,
    item_id: str,
    path: Path,
    have: Mapping[str, Any],
    wanted: Mapping[str, Any],
    *,
    remove: str | None = None,
) -> ConflictError:
    differences = [
        f"{key}: {_show(have.get(key))} → {_show(wanted.get(key))}"
        for key in sorted(set(have) | set(wanted))
        if not same_values(have.get(key), wanted.get(key)) and key != "id"
    ]
    return ConflictError(
        f"{what} {item_id} is already in {path} with other values ({'; '.join(differences)})",
        "run again with --replace to overwrite it",
        f"or remove it first: {remove or f'anju {what} remove {item_id}'}",
    )


def _show(value: Any) -> str:
    return "(none)" if value in (None, [], {}) else json.dumps(plain(value), ensure_ascii=False)
