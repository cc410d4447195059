"""`anju site|grid|building|unit|person` and `anju import`: the site registry, from the shell.

Every command edits the site file in place (comments and order kept), checks the result as the
hub would load it before writing, and writes atomically.  Adding what is already there changes
nothing; an add that would overwrite something different needs ``--replace``; a remove that would
leave references behind needs ``--force``.  Listing commands print a table, or JSON with
``--json``.
"""

from __future__ import annotations

import contextlib
import csv
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

if TYPE_CHECKING:
    from cli.provision_devices import Provisioner, Saved
    from hub.registry import SiteFile
    from hub.site_edit import Change, SiteEditor

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# The same as hub.registry.Role (a test keeps them equal); here so `anju --help` stays fast.
ROLES = (
    "grid_worker",
    "street_block_lead",
    "community_office",
    "property_manager",
    "security_staff",
    "department",
)
DEFAULT_HUB_CONFIG = Path("config/hub.yaml")

site_app = typer.Typer(help="The site: create its file, show what it holds.", no_args_is_help=True)
grid_app = typer.Typer(help="Grids (网格) and their grid workers.", no_args_is_help=True)
building_app = typer.Typer(help="Buildings, each in a grid.", no_args_is_help=True)
unit_app = typer.Typer(help="Units (dwellings) of a building.", no_args_is_help=True)
person_app = typer.Typer(
    help="People who receive alerts: roles, contact channels, escalation tiers.",
    no_args_is_help=True,
)

SiteOption = Annotated[
    Path | None,
    typer.Option(
        "--site",
        help="site file (default: the site_file named by ./config/hub.yaml)",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
ReplaceOption = Annotated[
    bool, typer.Option("--replace", help="overwrite an existing entry with other values")
]


# -- shared by the registry commands (and by `anju device`) -------------------------------------


def default_site_file() -> Path:
    """The site file of the hub configured here: ``site_file`` of ``./config/hub.yaml``.

    Only ``site_file`` is read, so secrets the hub config names need not be set here.
    """
    hub_config = DEFAULT_HUB_CONFIG
    if not hub_config.is_file():
        raise fail(
            f"no site file given and no {hub_config} here",
            "name the site file with --site FILE, or run from the directory holding config/",
            "or create one: anju site init SITE_ID --name NAME --site FILE",
        )
    try:
        data = yaml.safe_load(hub_config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise fail(
            f"cannot read {hub_config}: {exc}", "name the site file with --site FILE"
        ) from None
    site_file = data.get("site_file") if isinstance(data, dict) else None
    if not isinstance(site_file, str):
        raise fail(f"{hub_config} names no site_file", "name the site file with --site FILE")
    return hub_config.parent / site_file  # relative to the hub config, as the hub reads it


def site_path(site: Path | None) -> Path:
    """The site file to use."""
    return site if site is not None else default_site_file()


def fail(message: str, *hints: str, code: int = 2) -> typer.Exit:
    """Print an error and what to do next; return the exit to raise."""
    err_console.print(f"[red]error:[/red] {escape(message)}")
    for hint in hints:
        err_console.print(f"  [yellow]→[/yellow] {escape(hint)}")
    return typer.Exit(code)


@contextlib.contextmanager
def edit_errors() -> Iterator[None]:
    """Turn an edit that cannot be made into an error message and exit code 2."""
    from hub.site_edit import SiteEditError  # noqa: PLC0415 - keep `anju --help` fast

    try:
        yield
    except SiteEditError as exc:
        raise fail(exc.message, *exc.hints) from None


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def open_site(site: Path | None) -> SiteEditor:
    """Open the site file for editing (errors say how to create one)."""
    from hub.site_edit import SiteEditor  # noqa: PLC0415

    with edit_errors():
        return SiteEditor.open(site_path(site))


def report(changes: Sequence[Change], *, written: bool, path: Path) -> None:
    """Print what changed, and whether the file was written."""
    for change in changes:
        colour = "dim" if change.status == "unchanged" else "green"
        console.print(f"[{colour}]{escape(str(change))}[/{colour}]")
    if written:
        console.print(f"wrote {escape(str(path))}")
    else:
        console.print(f"{escape(str(path))} unchanged")


def _apply(site: Path | None, edit: Callable[[SiteEditor], Sequence[Change]]) -> None:
    editor = open_site(site)
    with edit_errors():
        changes = edit(editor)
        written = editor.save()
    report(changes, written=written, path=editor.path)


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def _loaded(site: Path | None) -> SiteFile:
    editor = open_site(site)
    with edit_errors():
        return editor.site()


def _text(value: object) -> str:
    return "" if value is None else str(value)


# -- anju site ---------------------------------------------------------------------------------


@site_app.command("init")
def site_init(
    site_id: Annotated[str, typer.Argument(metavar="SITE_ID", help="short id, e.g. sunrise")],
    name: Annotated[str, typer.Option("--name", help="the community's name")],
    timezone: Annotated[
        str, typer.Option("--timezone", help="IANA time zone, e.g. Asia/Shanghai")
    ] = "Asia/Shanghai",
    site: SiteOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Create a site file, or check that it is this site (re-running is safe)."""
    from hub.site_edit import Change, SiteEditor  # noqa: PLC0415

    path = site_path(site)
    with edit_errors():
        if path.exists():
            editor = SiteEditor.open(path)
            changes = [editor.init_site(site_id, name, timezone, replace=replace)]
        else:
            editor = SiteEditor.create(path, site_id=site_id, name=name, timezone=timezone)
            changes = [Change("site", site_id, "added")]
        written = editor.save()
    report(changes, written=written, path=path)
    if written and changes[0].status == "added":
        console.print(
            "next: anju grid add GRID --name NAME, anju building add ID --grid GRID, "
            "anju person add ID --name NAME --role grid_worker"
        )


@site_app.command("show")
def site_show(site: SiteOption = None, json_out: JsonOption = False) -> None:
    """Show the site: its grids, buildings, people, gateways and escalation tiers."""
    loaded = _loaded(site)
    if json_out:
        print_json(loaded.model_dump(mode="json", exclude_none=True))
        return
    info = loaded.site
    console.print(f"[bold]{escape(info.name)}[/bold] ({escape(info.id)}, {escape(info.timezone)})")
    by_building: dict[str, int] = {}
    for device in loaded.devices:
        by_building[device.building or ""] = by_building.get(device.building or "", 0) + 1
    people = {p.id: p for p in loaded.people}
    for grid in loaded.grids:
        worker = people.get(grid.worker or "")
        who = f", worker {worker.name} ({worker.id})" if worker else ", no worker"
        console.print(f"grid [bold]{escape(grid.id)}[/bold] {escape(grid.name)}{escape(who)}")
        for building in grid.buildings:
            floors = f"{building.floors} floors" if building.floors else "floors not given"
            console.print(
                f"  building {escape(building.id)}: {escape(building.name or '')}, {floors}, "
                f"{len(building.units)} units listed, {by_building.get(building.id, 0)} devices"
            )
        if grid.areas:
            console.print(f"  areas: {escape(', '.join(grid.areas))}")
    for tier, members in loaded.escalation.items():
        console.print(f"escalation tier {escape(tier)}: {escape(', '.join(members))}")
    counts = (
        f"{len(loaded.people)} people, {len(loaded.gateways)} gateways, "
        f"{len(loaded.devices)} devices"
    )
    console.print(counts)


# -- anju grid ---------------------------------------------------------------------------------


@grid_app.command("add")
def grid_add(
    grid_id: Annotated[str, typer.Argument(metavar="ID", help="grid id, e.g. north")],
    name: Annotated[str, typer.Option("--name", help="e.g. 'North grid'")],
    worker: Annotated[
        str | None, typer.Option("--worker", help="person id of the grid worker (网格员)")
    ] = None,
    area: Annotated[
        list[str] | None,
        typer.Option("--area", help="a place outside buildings, e.g. 'East gate' (repeatable)"),
    ] = None,
    site: SiteOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Add a grid (re-running with the same values changes nothing)."""
    _apply(
        site,
        lambda e: [
            e.add_grid(grid_id, name=name, worker=worker, areas=area or [], replace=replace)
        ],
    )


@grid_app.command("list")
def grid_list(site: SiteOption = None, json_out: JsonOption = False) -> None:
    """List the grids."""
    loaded = _loaded(site)
    people = {p.id: p.name for p in loaded.people}
    rows: list[dict[str, Any]] = [
        {
            "id": g.id,
            "name": g.name,
            "worker": g.worker,
            "worker_name": people.get(g.worker or ""),
            "buildings": [b.id for b in g.buildings],
            "areas": list(g.areas),
        }
        for g in loaded.grids
    ]
    if json_out:
        print_json(rows)
        return
    console.print(
        _table(
            "grids",
            ("id", "name", "worker", "buildings", "areas"),
            [
                (
                    r["id"],
                    r["name"],
                    f"{r['worker_name']} ({r['worker']})" if r["worker"] else "",
                    ", ".join(r["buildings"]),
                    ", ".join(r["areas"]),
                )
                for r in rows
            ],
        )
    )


@grid_app.command("remove")
def grid_remove(
    grid_id: Annotated[str, typer.Argument(metavar="ID")],
    site: SiteOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="also remove its buildings and their units")
    ] = False,
) -> None:
    """Remove a grid; refused while it has buildings (unless --force) or devices."""
    _apply(site, lambda e: e.remove_grid(grid_id, force=force))


# -- anju building -----------------------------------------------------------------------------


@building_app.command("add")
def building_add(
    building_id: Annotated[str, typer.Argument(metavar="ID", help="building id, e.g. 3")],
    grid: Annotated[str, typer.Option("--grid", help="the grid it is in")],
    name: Annotated[str | None, typer.Option("--name", help="e.g. 'Building 3'")] = None,
    floors: Annotated[
        int | None, typer.Option("--floors", min=1, max=200, help="number of floors")
    ] = None,
    site: SiteOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Add a building to a grid (re-running with the same values changes nothing)."""
    _apply(
        site,
        lambda e: [
            e.add_building(building_id, grid=grid, name=name, floors=floors, replace=replace)
        ],
    )


@building_app.command("list")
def building_list(
    grid: Annotated[str | None, typer.Option("--grid", help="only this grid's")] = None,
    site: SiteOption = None,
    json_out: JsonOption = False,
) -> None:
    """List the buildings."""
    loaded = _loaded(site)
    devices: dict[str, int] = {}
    for device in loaded.devices:
        if device.building is not None:
            devices[device.building] = devices.get(device.building, 0) + 1
    rows: list[dict[str, Any]] = [
        {
            "id": b.id,
            "grid": g.id,
            "name": b.name,
            "floors": b.floors,
            "units": len(b.units),
            "devices": devices.get(b.id, 0),
        }
        for g in loaded.grids
        for b in g.buildings
        if grid is None or g.id == grid
    ]
    if json_out:
        print_json(rows)
        return
    console.print(
        _table(
            "buildings",
            ("id", "grid", "name", "floors", "units", "devices"),
            [
                (
                    r["id"],
                    r["grid"],
                    _text(r["name"]),
                    _text(r["floors"]),
                    str(r["units"]),
                    str(r["devices"]),
                )
                for r in rows
            ],
        )
    )


@building_app.command("remove")
def building_remove(
    building_id: Annotated[str, typer.Argument(metavar="ID")],
    site: SiteOption = None,
    force: Annotated[bool, typer.Option("--force", help="also remove its units")] = False,
) -> None:
    """Remove a building; refused while it has units (unless --force) or devices."""
    _apply(site, lambda e: e.remove_building(building_id, force=force))


# -- anju unit ---------------------------------------------------------------------------------


@unit_app.command("add")
def unit_add(
    number: Annotated[str, typer.Argument(metavar="NUMBER", help="unit number, e.g. 201")],
    building: Annotated[str, typer.Option("--building", help="the building it is in")],
    floor: Annotated[int, typer.Option("--floor", help="its floor")],
    site: SiteOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Add a unit (a dwelling) to a building (re-running with the same values changes nothing)."""
    _apply(site, lambda e: [e.add_unit(building, number, floor=floor, replace=replace)])


@unit_app.command("list")
def unit_list(
    building: Annotated[str | None, typer.Option("--building", help="only this building's")] = None,
    site: SiteOption = None,
    json_out: JsonOption = False,
) -> None:
    """List the units (dwellings) the buildings list."""
    loaded = _loaded(site)
    devices: dict[tuple[str, str], int] = {}
    for device in loaded.devices:
        if device.building is not None and device.unit is not None:
            key = (device.building, device.unit)
            devices[key] = devices.get(key, 0) + 1
    rows: list[dict[str, Any]] = [
        {
            "building": b.id,
            "number": u.number,
            "floor": u.floor,
            "grid": g.id,
            "devices": devices.get((b.id, u.number), 0),
        }
        for g in loaded.grids
        for b in g.buildings
        for u in b.units
        if building is None or b.id == building
    ]
    if json_out:
        print_json(rows)
        return
    console.print(
        _table(
            "units",
            ("building", "unit", "floor", "grid", "devices"),
            [
                (r["building"], r["number"], str(r["floor"]), r["grid"], str(r["devices"]))
                for r in rows
            ],
        )
    )


@unit_app.command("remove")
def unit_remove(
    number: Annotated[str, typer.Argument(metavar="NUMBER")],
    building: Annotated[str, typer.Option("--building", help="the building it is in")],
    site: SiteOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="remove it even though devices name it")
    ] = False,
) -> None:
    """Remove a unit; refused while devices are placed in it (unless --force)."""
    _apply(site, lambda e: e.remove_unit(building, number, force=force))


# -- anju person -------------------------------------------------------------------------------


@person_app.command("add")
def person_add(
    person_id: Annotated[str, typer.Argument(metavar="ID", help="person id, e.g. wang-fang")],
    name: Annotated[str, typer.Option("--name", help="full name")],
    role: Annotated[str, typer.Option("--role", help="one of: " + ", ".join(ROLES))],
    phone: Annotated[str | None, typer.Option("--phone", help="for SMS")] = None,
    email: Annotated[str | None, typer.Option("--email", help="for e-mail")] = None,
    wecom: Annotated[str | None, typer.Option("--wecom", help="WeCom (企业微信) user id")] = None,
    dingtalk: Annotated[str | None, typer.Option("--dingtalk", help="DingTalk user id")] = None,
    feishu: Annotated[str | None, typer.Option("--feishu", help="Feishu (Lark) user id")] = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="a personal robot or webhook URL")
    ] = None,
    tier: Annotated[
        list[str] | None,
        typer.Option(
            "--tier", help="also put them in this escalation tier, e.g. department (repeatable)"
        ),
    ] = None,
    site: SiteOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Add a person who receives alerts (re-running with the same values changes nothing)."""
    contacts = {
        "phone": phone,
        "email": email,
        "wecom": wecom,
        "dingtalk": dingtalk,
        "feishu": feishu,
        "webhook": webhook,
    }
    _apply(
        site,
        lambda e: e.add_person(
            person_id, name=name, role=role, contacts=contacts, tiers=tier or [], replace=replace
        ),
    )


@person_app.command("list")
def person_list(
    role: Annotated[str | None, typer.Option("--role", help="only people with this role")] = None,
    site: SiteOption = None,
    json_out: JsonOption = False,
) -> None:
    """List the people, their contact channels, grids and escalation tiers."""
    from hub.site_edit import CONTACT_CHANNELS  # noqa: PLC0415

    loaded = _loaded(site)
    rows: list[dict[str, Any]] = []
    for person in loaded.people:
        if role is not None and person.role.value != role:
            continue
        contacts = {c: getattr(person, c) for c in CONTACT_CHANNELS if getattr(person, c)}
        rows.append(
            {
                "id": person.id,
                "name": person.name,
                "role": person.role.value,
                "contacts": contacts,
                "worker_of": [g.id for g in loaded.grids if g.worker == person.id],
                "tiers": [t for t, members in loaded.escalation.items() if person.id in members],
            }
        )
    if json_out:
        print_json(rows)
        return
    console.print(
        _table(
            "people",
            ("id", "name", "role", "contacts", "grid worker of", "tiers"),
            [
                (
                    r["id"],
                    r["name"],
                    r["role"],
                    ", ".join(f"{k}: {v}" for k, v in r["contacts"].items()),
                    ", ".join(r["worker_of"]),
                    ", ".join(r["tiers"]),
                )
                for r in rows
            ],
        )
    )


@person_app.command("remove")
def person_remove(
    person_id: Annotated[str, typer.Argument(metavar="ID")],
    site: SiteOption = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="also clear their grid-worker posts and tier memberships"),
    ] = False,
) -> None:
    """Remove a person; refused while they are a grid worker or in a tier (unless --force)."""
    _apply(site, lambda e: e.remove_person(person_id, force=force))


# -- anju import -------------------------------------------------------------------------------

_COLUMNS = frozenset(
    {
        "type",
        "id",
        "gateway",
        "driver",
        "driver_id",
        "kind",
        "building",
        "floor",
        "unit",
        "area",
        "grid",
    }
)
_SETTING = "setting."
_PROGRESS_FROM_ROWS = 20


@dataclass
class _RowResult:
    line: int
    type: str
    id: str
    status: str = ""
    error: str = ""
    hints: tuple[str, ...] = ()
    changes: list[dict[str, str]] = field(default_factory=list)


def _read_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            unknown = [c for c in columns if c not in _COLUMNS and not c.startswith(_SETTING)]
            if not columns or "type" not in columns:
                raise fail(
                    f"{path}: the first line must name the columns, with a type column",
                    "see anju import --help for the columns",
                )
            if unknown:
                raise fail(
                    f"{path}: unknown column(s): {', '.join(unknown)}",
                    "columns: " + ", ".join(sorted(_COLUMNS)) + ", setting.NAME",
                )
            rows = []
            for raw in reader:
                row = {
                    (k or "").strip(): (v or "").strip()
                    for k, v in raw.items()
                    if not isinstance(v, list)
                }
                if any(row.values()):
                    rows.append((reader.line_num, row))
            return rows
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise fail(f"{path} is not a UTF-8 CSV file: {exc}") from None


def _int(row: Mapping[str, str], key: str) -> int | None:
    from hub.site_edit import SiteEditError  # noqa: PLC0415

    text = row.get(key, "")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise SiteEditError(f"{key} {text!r} is not a whole number") from None


def _import_row(provisioner: Provisioner, row: Mapping[str, str], *, replace: bool) -> list[Change]:
    from cli.provision_devices import DeviceRequest, parse_settings  # noqa: PLC0415
    from hub.site_edit import Place, SiteEditError  # noqa: PLC0415

    kind = row.get("type", "").lower()

    def need(*keys: str) -> None:
        missing = [k for k in keys if not row.get(k)]
        if missing:
            raise SiteEditError(
                f"a {kind} row needs {', '.join(missing)}", "see anju import --help for columns"
            )

    if kind == "unit":
        need("building", "unit")
        floor = _int(row, "floor")
        if floor is None:
            raise SiteEditError("a unit row needs floor", "see anju import --help for columns")
        return [
            provisioner.site.add_unit(row["building"], row["unit"], floor=floor, replace=replace)
        ]
    if kind != "device":
        raise SiteEditError(f"type {row.get('type')!r} is not device or unit")
    need("id", "gateway", "driver", "kind")
    pairs = [
        f"{key.removeprefix(_SETTING)}={value}"
        for key, value in row.items()
        if key.startswith(_SETTING) and value
    ]
    request = DeviceRequest(
        id=row["id"],
        gateway=row["gateway"],
        driver=row["driver"],
        kind=row["kind"],
        place=Place(
            building=row.get("building") or None,
            floor=_int(row, "floor"),
            unit=row.get("unit") or None,
            area=row.get("area") or None,
            grid=row.get("grid") or None,
        ),
        settings=parse_settings(pairs),
        driver_id=row.get("driver_id") or None,
    )
    return list(provisioner.add(request, replace=replace).changes)


def _import_all(
    provisioner: Provisioner,
    rows: Sequence[tuple[int, dict[str, str]]],
    *,
    replace: bool,
    progress: Progress,
) -> list[_RowResult]:
    from hub.site_edit import SiteEditError  # noqa: PLC0415

    # Units first: a device in a listed unit takes its floor from it.
    ordered = sorted(rows, key=lambda r: r[1].get("type", "").lower() != "unit")
    task = progress.add_task("checking", total=len(ordered))
    results = []
    for line, row in ordered:
        kind = row.get("type", "").lower()
        ident = row.get("id", "") if kind != "unit" else f"{row.get('building')}/{row.get('unit')}"
        result = _RowResult(line, kind, ident)
        try:
            changes = _import_row(provisioner, row, replace=replace)
        except SiteEditError as exc:
            result.error, result.hints = exc.message, exc.hints
        else:
            result.changes = [c.as_dict() for c in changes]
            result.status = (
                "unchanged"
                if all(c.status == "unchanged" for c in changes)
                else next(c.status for c in changes if c.status != "unchanged")
            )
        results.append(result)
        progress.update(task, advance=1)
    return sorted(results, key=lambda r: r.line)


def import_command(
    file: Annotated[Path, typer.Argument(metavar="FILE.csv", help="devices and units, as CSV")],
    site: SiteOption = None,
    gateways: Annotated[
        Path | None,
        typer.Option(
            "--gateways",
            help="directory of the gateway config files (default: gateways/ beside the site file)",
        ),
    ] = None,
    replace: ReplaceOption = False,
    check: Annotated[bool, typer.Option("--check", help="check every row, write nothing")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Add devices and units in bulk from a CSV file (UTF-8; the first line names the columns).

    Columns (empty cells are left out): type (device or unit); id, gateway, driver (e.g.
    modbus_rtu), kind (e.g. smoke) and optionally driver_id for device rows; the place:
    building, floor, unit, area, grid (a unit row needs building, unit and floor);
    setting.NAME for a driver setting, as `anju device add --set NAME=VALUE` takes it
    (setting.driver.port for the driver's own).

    Every row is checked first, and all bad rows are reported with their line numbers before
    anything is written.  Units are added before devices.  Running the same file again changes
    nothing.
    """
    from cli.provision_devices import Provisioner  # noqa: PLC0415

    rows = _read_csv(file)
    editor = open_site(site)
    provisioner = Provisioner(editor, gateway_dir=gateways)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
        disable=json_out or len(rows) < _PROGRESS_FROM_ROWS,
    ) as progress:
        results = _import_all(provisioner, rows, replace=replace, progress=progress)
    bad = [r for r in results if r.error]
    if bad:
        _report_bad(file, bad, total=len(results), json_out=json_out)
    saved: Saved | None = None
    with edit_errors():
        if check:
            provisioner.check()
        else:
            saved = provisioner.save()
    if json_out:
        print_json(
            {
                "ok": True,
                "rows": [_row_json(r) for r in results],
                "written": saved.as_dict() if saved is not None else None,
            }
        )
        return
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
        if result.status != "unchanged":
            console.print(f"line {result.line}: {result.type} {escape(result.id)}: {result.status}")
    console.print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no rows")
    if saved is None:
        console.print("checked; nothing written (--check)")
    else:
        print_saved(saved, site_file=editor.path)


def _report_bad(file: Path, bad: Sequence[_RowResult], *, total: int, json_out: bool) -> None:
    if json_out:
        print_json({"ok": False, "errors": [_row_json(r) for r in bad]})
        raise typer.Exit(2)
    for result in bad:
        err_console.print(f"[red]{escape(str(file))}:{result.line}:[/red] {escape(result.error)}")
        for hint in result.hints:
            err_console.print(f"  [yellow]→[/yellow] {escape(hint)}")
    raise fail(
        f"{len(bad)} of {total} row(s) are not valid; nothing was written",
        "fix them and run again",
    )


def _row_json(result: _RowResult) -> dict[str, Any]:
    out: dict[str, Any] = {"line": result.line, "type": result.type, "id": result.id}
    if result.error:
        out.update(error=result.error, hints=list(result.hints))
    else:
        out.update(status=result.status, changes=result.changes)
    return out


def print_saved(saved: Saved, *, site_file: Path) -> None:
    """Say which files were written; changed gateway configs are to be pushed to the gateway."""
    if saved.site_file is None and not saved.gateway_files:
        console.print(f"nothing to write: {escape(str(site_file))} and gateway configs unchanged")
        return
    if saved.site_file is not None:
        console.print(f"wrote {escape(str(saved.site_file))}")
    for gateway, path in saved.gateway_files.items():
        console.print(
            f"wrote {escape(str(path))}: gateway {escape(gateway)}'s config changed, "
            "push it to the gateway"
        )
