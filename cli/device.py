"""`anju device`: installer commands to provision devices, watch one live, find them on a bus.

``anju device add ID --gateway GW --driver TYPE --kind KIND --building B ...`` registers a
device's place in the site file and its driver settings in the gateway's config file, both
checked before either is written; ``list``, ``move`` and ``remove`` go with it.
``anju device test ID --config gateway.yaml`` runs only the driver that holds device ``ID``
(for a Modbus bus, only that device on it) and prints its decoded readings and events as they
come.  ``anju device scan modbus --port URL`` probes every address of an RS-485 bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import signal
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cli.site import JsonOption, ReplaceOption, SiteOption, edit_errors, open_site, print_json
from cli.site import print_saved as _print_saved

if TYPE_CHECKING:
    from cli.provision_devices import Outcome, Provisioner, Saved
    from device_drivers import DriverConfig, DriverOutput
    from hub.site_edit import Place

device_app = typer.Typer(
    help="Install and check devices: add, list, move and remove them; watch one live; "
    "find the devices on a bus.",
    no_args_is_help=True,
)
scan_app = typer.Typer(help="Find the devices on a bus.", no_args_is_help=True)
device_app.add_typer(scan_app, name="scan")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class Parity(enum.StrEnum):
    """Serial parity."""

    N = "N"
    E = "E"
    O = "O"  # noqa: E741 - the letter everyone uses for odd parity


@contextlib.contextmanager
def _quiet_pymodbus() -> Iterator[None]:
    """Silence pymodbus's own log (one ERROR per unanswered request) while a command runs."""
    logger = logging.getLogger("pymodbus")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _fail(message: str, *hints: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {escape(message)}")
    for hint in hints:
        err_console.print(f"  [yellow]→[/yellow] {escape(hint)}")
    return typer.Exit(code)


# -- anju device scan modbus -------------------------------------------------------------------


@scan_app.command("modbus")
def scan_modbus(
    port: Annotated[
        str,
        typer.Option(
            "--port", "-p", help="serial port or URL: /dev/ttyUSB0, socket://host:port, rfc2217://"
        ),
    ],
    baud: Annotated[
        int, typer.Option("--baud", "-b", min=300, max=921_600, help="line speed")
    ] = 9600,
    parity: Annotated[
        Parity, typer.Option("--parity", case_sensitive=False, help="N, E or O (8 data bits)")
    ] = Parity.N,
    stopbits: Annotated[int, typer.Option("--stopbits", min=1, max=2, help="stop bits")] = 1,
    first: Annotated[int, typer.Option("--from", min=1, max=247, help="first address")] = 1,
    last: Annotated[int, typer.Option("--to", min=1, max=247, help="last address")] = 247,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.02, max=5, help="wait per address, in seconds")
    ] = 0.2,
    function: Annotated[
        int, typer.Option("--function", min=1, max=4, help="probe with this read function code")
    ] = 3,
    address: Annotated[
        int, typer.Option("--address", min=0, max=0xFFFF, help="register or bit to probe")
    ] = 0,
) -> None:
    """Probe each address of a Modbus RTU bus and list the devices that answer.

    Exits with 1 when no device answered.
    """
    from device_drivers import DriverIOError  # noqa: PLC0415 - keep `anju --help` fast
    from device_drivers.modbus import FunctionCode, Probe, ScanHit, scan_bus  # noqa: PLC0415
    from device_drivers.serial_port import SerialSettings  # noqa: PLC0415

    if first > last:
        raise _fail(f"--from {first} is after --to {last}")
    line = SerialSettings(baudrate=baud, parity=parity.value, stopbits=2 if stopbits == 2 else 1)
    probe = Probe(FunctionCode(function), address, 1)
    total = last - first + 1
    found: list[ScanHit] = []

    async def run(progress: Progress) -> None:
        task = progress.add_task(f"{port} {line.label}", total=total, found=0)
        async for hit in scan_bus(
            port, line, first=first, last=last, timeout_s=timeout, probe=probe, owner=port
        ):
            if hit.found:
                found.append(hit)
                progress.console.print(
                    f"  [green]found[/green] unit {hit.unit}: {escape(hit.answer)}"
                )
            progress.update(task, advance=1, found=len(found))

    console.print(f"Scanning {port} at {line.label}, units {first}..{last}, probe {probe.label}")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("found {task.fields[found]}"),
        TimeRemainingColumn(),
    )
    try:
        with _quiet_pymodbus(), Progress(*columns, console=console) as progress:
            asyncio.run(run(progress))
    except DriverIOError as exc:
        raise _fail(
            exc.reason,
            "check that the adapter is plugged in: ls -l /dev/serial/by-id/",
            "check that no other program (an edge agent?) holds the port",
            code=1,
        ) from None
    except KeyboardInterrupt:
        console.print("[yellow]scan interrupted[/yellow]")
    if not found:
        err_console.print(f"No device answered on {port} at {line.label}.")
        err_console.print(
            "  → try the other usual settings: --parity E (some XY-MD02), --baud 4800 or "
            "19200; check A/B polarity, ground and termination"
        )
        raise typer.Exit(1)
    console.print(f"{len(found)} device(s) on {escape(port)} at {line.label}:")
    table = Table()
    table.add_column("unit", justify="right")
    table.add_column("answer to " + probe.label)
    for hit in found:
        table.add_row(str(hit.unit), escape(hit.answer))
    console.print(table)
    console.print(
        "Add them to the gateway config under a modbus_rtu driver: "
        "devices: [{id: ..., unit: N, profile: ...}]"
    )


# -- anju device test --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """The driver to run for one device, and which outputs to show."""

    config: DriverConfig
    device_ids: frozenset[str]
    summary: str


def _load_drivers(path: Path) -> list[Any]:
    """The raw ``drivers`` list of a gateway config, without validating anything else.

    The rest of the config (MQTT, privacy.site_secret, ...) is not needed to test a device, so
    a missing ``${ANJU_SITE_SECRET}`` does not stop an installer.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise _fail(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise _fail(f"{path}: a gateway config is a mapping with a drivers: list")
    drivers = data.get("drivers") or []
    if not isinstance(drivers, list):
        raise _fail(f"{path}: drivers must be a list")
    return drivers


def _device_ids(raw: Mapping[str, Any]) -> list[str]:
    devices = raw.get("devices")
    if not isinstance(devices, list):
        return []
    return [str(d["id"]) for d in devices if isinstance(d, Mapping) and "id" in d]


def _find_target(path: Path, device_id: str, interval: float | None) -> _Target:
    from device_drivers import DriverError, parse_driver_config  # noqa: PLC0415
    from wire.placeholders import expand_placeholders  # noqa: PLC0415

    drivers = _load_drivers(path)
    match: tuple[int, Mapping[str, Any]] | None = None
    for index, raw in enumerate(drivers):
        if isinstance(raw, Mapping) and device_id in _device_ids(raw):
            match = (index, raw)
            break
    else:  # a driver without a devices list is tested by its own id
        for index, raw in enumerate(drivers):
            if isinstance(raw, Mapping) and raw.get("id") == device_id:
                match = (index, raw)
                break
    if match is None:
        known = [
            f"{d} ({raw.get('id', '?')})"
            for raw in drivers
            if isinstance(raw, Mapping)
            for d in _device_ids(raw)
        ]
        raise _fail(
            f"no device {device_id!r} in {path}",
            "known devices (driver): " + (", ".join(known) if known else "none"),
        )
    index, raw = match
    source = f"{path}: drivers[{index}]"
    try:
        expanded = expand_placeholders(dict(raw), source=source)
    except KeyError as exc:
        raise _fail(str(exc.args[0])) from None
    try:
        config = parse_driver_config(expanded)
    except DriverError as exc:
        raise _fail(f"{source}: {exc}") from None
    return _narrow(config, device_id, interval)


def _narrow(config: DriverConfig, device_id: str, interval: float | None) -> _Target:
    """Run only ``device_id`` where the driver allows it; apply ``--interval``."""
    from device_drivers.modbus import ModbusConfig  # noqa: PLC0415

    if isinstance(config, ModbusConfig):
        device = next((d for d in config.devices if d.id == device_id), None)
        if device is not None:
            if interval is not None:
                device = device.model_copy(update={"poll_interval_s": interval})
            config = config.model_copy(update={"devices": (device,)})
            line = config.line.label
            what = device.profile or f"{len(device.registers or ())} custom register(s)"
            every = device.poll_interval_s or config.poll_interval_s
            summary = (
                f"{device_id}: unit {device.unit} on {config.port} at {line}, {what}, "
                f"every {every:g} s"
            )
            return _Target(config, frozenset({device_id}), summary)
    if interval is not None:
        for field in ("poll_interval_s", "interval_s"):
            if field in type(config).model_fields:
                config = config.model_copy(update={field: interval})
    ids = _device_ids(config.model_dump())
    shown = frozenset({device_id}) if device_id in ids else frozenset(ids)
    return _Target(config, shown, f"{device_id}: driver {config.id} ({config.type})")


@device_app.command("test")
def device_test(
    device_id: Annotated[str, typer.Argument(metavar="ID", help="device id in the gateway config")],
    config: Annotated[
        Path, typer.Option("--config", "-c", help="gateway config file (YAML)")
    ] = Path("gateway.yaml"),
    duration: Annotated[
        float, typer.Option("--duration", "-d", min=0, help="stop after this many seconds")
    ] = 0.0,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval", min=0.1, help="poll every this many seconds instead of as configured"
        ),
    ] = None,
) -> None:
    """Run the driver of one device and print its decoded readings and events live.

    Runs until Ctrl-C or --duration.  Exits with 1 when no reading arrived.
    """
    target = _find_target(config, device_id, interval)
    console.print(f"Testing {escape(target.summary)}. Ctrl-C to stop.")
    with _quiet_pymodbus():
        counts = asyncio.run(_watch(target, duration))
    readings = counts.pop("readings", 0)
    events = counts.total()
    console.print(f"{readings} reading(s), {events} event(s).")
    if readings == 0:
        err_console.print(
            f"No reading from {device_id}: it did not answer, or answered what its map does "
            "not expect (see device.fault above)."
        )
        port = getattr(target.config, "port", None)
        if target.config.type == "modbus_rtu" and port:
            err_console.print(
                f"  → check the unit address and line settings: anju device scan modbus "
                f"--port {port} --baud {getattr(target.config, 'baudrate', 9600)} "
                f"--parity {getattr(target.config, 'parity', 'N')}"
            )
        raise typer.Exit(1)


async def _watch(target: _Target, duration: float) -> Counter[str]:
    from device_drivers import DriverIOError, SystemClock, create_driver  # noqa: PLC0415

    counts: Counter[str] = Counter()
    driver = create_driver(target.config, clock=SystemClock())
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, task.cancel)
    units = _units(driver, target)
    try:
        await driver.open()
    except DriverIOError as exc:
        port = getattr(target.config, "port", None)
        hints = ["check the cable and adapter: ls -l /dev/serial/by-id/"]
        if port:
            hints.append(f"then look for the devices on it: anju device scan modbus --port {port}")
        raise _fail(exc.reason, *hints, code=1) from None
    try:
        async with asyncio.timeout(duration if duration > 0 else None):
            async for output in driver.outputs():
                if output.device in target.device_ids:
                    _show(output, units.get(output.device, {}), counts)
    except (TimeoutError, asyncio.CancelledError):
        pass
    finally:
        await driver.aclose()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGINT)
    errors = getattr(driver, "errors", None)
    if callable(errors):
        for device in sorted(target.device_ids):
            problems = errors(device)
            if problems:
                shown = ", ".join(f"{kind} {n}" for kind, n in sorted(problems.items()))
                console.print(f"{escape(device)}: errors: {shown}")
    return counts


def _units(driver: object, target: _Target) -> dict[str, Mapping[str, str]]:
    from wire.measurements import VALUE_UNITS  # noqa: PLC0415

    units: dict[str, Mapping[str, str]] = {}
    value_units = getattr(driver, "value_units", None)
    for device in target.device_ids:
        known = dict(VALUE_UNITS)
        if callable(value_units):
            with contextlib.suppress(KeyError):
                known.update({k: v for k, v in value_units(device).items() if v})
        units[device] = known
    return units


def _show(output: DriverOutput, units: Mapping[str, str], counts: Counter[str]) -> None:
    from device_drivers import Sample  # noqa: PLC0415

    when = dt.datetime.fromtimestamp(output.ts_ms / 1000).astimezone().strftime("%H:%M:%S.%f")
    stamp = f"[dim]{when[:-3]}[/dim]  {escape(output.device)}"
    if isinstance(output, Sample):
        counts["readings"] += 1
        values = "  ".join(
            f"{escape(name)} [bold]{value:g}[/bold]{' ' + units[name] if units.get(name) else ''}"
            for name, value in output.values.items()
        )
        console.print(f"{stamp}  {values}")
        return
    counts[output.kind] += 1
    colour = "green" if output.kind == "device.recovered" else "red"
    data = " ".join(f"{k}={_plain(v)}" for k, v in output.data.items())
    console.print(f"{stamp}  [{colour}]{escape(output.kind)}[/{colour}] {escape(data)}")


def _plain(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- anju device add | list | move | remove ----------------------------------------------------

BuildingOption = Annotated[str | None, typer.Option("--building", help="building id")]
FloorOption = Annotated[
    int | None, typer.Option("--floor", min=-10, max=200, help="floor (negative: basement)")
]
UnitOption = Annotated[str | None, typer.Option("--unit", help="unit number, e.g. 201")]
AreaOption = Annotated[
    str | None, typer.Option("--area", help="e.g. 'Pump room', or 'East gate' outside buildings")
]
GridOption = Annotated[str | None, typer.Option("--grid", help="grid of a place outside buildings")]
GatewayConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--gateway-config",
        help="the gateway's config file (default: gateways/GW.yaml beside the site file)",
    ),
]


def _place(
    building: str | None, floor: int | None, unit: str | None, area: str | None, grid: str | None
) -> Place:
    from hub.site_edit import Place  # noqa: PLC0415 - keep `anju --help` fast

    return Place(building=building, floor=floor, unit=unit, area=area, grid=grid)


def _show_outcome(
    outcome: Outcome, saved: Saved, provisioner: Provisioner, *, json_out: bool
) -> None:
    unset = sorted(provisioner.unset_placeholders())
    if json_out:
        print_json({**outcome.as_dict(), "written": saved.as_dict(), "unset_placeholders": unset})
        return
    for change in outcome.changes:
        colour = "dim" if change.status == "unchanged" else "green"
        console.print(f"[{colour}]{escape(str(change))}[/{colour}]")
    _print_saved(saved, site_file=provisioner.site.path)
    if unset and saved.gateway_files:
        console.print(
            f"[dim]checked with stand-ins for {escape(', '.join(unset))}, not set here[/dim]"
        )


@device_app.command("add")
def device_add(
    device_id: Annotated[str, typer.Argument(metavar="ID", help="device id, e.g. b3-2-201-smoke")],
    gateway: Annotated[str, typer.Option("--gateway", help="the gateway that reads it")],
    driver: Annotated[
        str, typer.Option("--driver", help="driver type: modbus_rtu, simulated, osdp, ...")
    ],
    kind: Annotated[
        str, typer.Option("--kind", help="device class: smoke, temp_humidity, door_reader, ...")
    ],
    building: BuildingOption = None,
    floor: FloorOption = None,
    unit: UnitOption = None,
    area: AreaOption = None,
    grid: GridOption = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="driver setting KEY=VALUE, e.g. unit=3 profile=xy_md02 (repeatable); "
            "driver.KEY=VALUE for the driver's own, e.g. driver.port=/dev/ttyUSB0",
        ),
    ] = None,
    settings_file: Annotated[
        Path | None,
        typer.Option("--settings-file", help="YAML mapping of settings (--set wins)"),
    ] = None,
    driver_id: Annotated[
        str | None,
        typer.Option("--driver-id", help="which driver instance on the gateway (or a new one)"),
    ] = None,
    gateway_config: GatewayConfigOption = None,
    site: SiteOption = None,
    replace: ReplaceOption = False,
    json_out: JsonOption = False,
) -> None:
    """Add a device: its place to the site file, its driver settings to the gateway's config.

    The settings are checked with the driver's own config model, and both files as the hub and
    the edge agent load them, before anything is written.  Re-running with the same values
    changes nothing.  A changed gateway config is to be pushed to its gateway.
    """
    from cli.provision_devices import DeviceRequest, Provisioner, parse_settings  # noqa: PLC0415

    editor = open_site(site)
    with edit_errors():
        provisioner = Provisioner(
            editor, gateway_configs={gateway: gateway_config} if gateway_config else None
        )
        request = DeviceRequest(
            id=device_id,
            gateway=gateway,
            driver=driver,
            kind=kind,
            place=_place(building, floor, unit, area, grid),
            settings=parse_settings(settings or [], settings_file),
            driver_id=driver_id,
        )
        outcome = provisioner.add(request, replace=replace)
        saved = provisioner.save()
    _show_outcome(outcome, saved, provisioner, json_out=json_out)


@device_app.command("list")
def device_list(
    gateway: Annotated[str | None, typer.Option("--gateway", help="only this gateway's")] = None,
    site: SiteOption = None,
    json_out: JsonOption = False,
) -> None:
    """List the devices with their place, and the driver that reads each on its gateway.

    A device only in the site file, or only in a gateway config, is flagged.
    """
    from cli.provision_devices import GatewayFile, Provisioner  # noqa: PLC0415
    from hub.registry import Registry  # noqa: PLC0415
    from hub.site_edit import SiteEditError, YamlFile  # noqa: PLC0415

    editor = open_site(site)
    with edit_errors():
        registry = Registry(editor.site())
    provisioner = Provisioner(editor)
    inventory: dict[str, dict[str, tuple[str, str]]] = {}
    for gw in registry.gateways:
        path = provisioner.gateway_path(gw)
        if path.is_file():
            with contextlib.suppress(SiteEditError):  # listed as not in its gateway config
                inventory[gw] = GatewayFile(YamlFile.load(path), gw).inventory()
    rows: list[dict[str, Any]] = []
    for info in registry.devices.values():
        driver = inventory.get(info.gateway, {}).get(info.id)
        rows.append(
            {
                "id": info.id,
                "gateway": info.gateway,
                "kind": info.kind,
                "grid": info.grid,
                "building": info.building,
                "floor": info.floor,
                "unit": info.unit,
                "area": info.area,
                "place": info.place,
                "driver": driver[0] if driver else None,
                "driver_type": driver[1] if driver else None,
                "status": "ok" if driver else "not in gateway config",
            }
        )
    for gw, devices in inventory.items():
        for device, (driver_name, driver_type) in devices.items():
            if device not in registry.devices:
                rows.append(
                    {
                        "id": device,
                        "gateway": gw,
                        "driver": driver_name,
                        "driver_type": driver_type,
                        "status": "not in site file",
                    }
                )
    rows = [r for r in rows if gateway is None or r["gateway"] == gateway]
    if json_out:
        print_json(rows)
        return
    table = Table(title="devices", title_justify="left")
    for column in ("id", "gateway", "kind", "grid", "place", "driver", "status"):
        table.add_column(column)
    for r in rows:
        status = r["status"] if r["status"] == "ok" else f"[yellow]{r['status']}[/yellow]"
        driver_text = f"{r['driver']} ({r['driver_type']})" if r.get("driver") else ""
        table.add_row(
            *(escape(str(r.get(key) or "")) for key in ("id", "gateway", "kind", "grid", "place")),
            escape(driver_text),
            status,
        )
    console.print(table)


@device_app.command("move")
def device_move(
    device_id: Annotated[str, typer.Argument(metavar="ID", help="device id")],
    building: BuildingOption = None,
    floor: FloorOption = None,
    unit: UnitOption = None,
    area: AreaOption = None,
    grid: GridOption = None,
    site: SiteOption = None,
    json_out: JsonOption = False,
) -> None:
    """Give a device a new place (give the whole place).  Only the site file changes."""
    from cli.provision_devices import Provisioner  # noqa: PLC0415

    editor = open_site(site)
    with edit_errors():
        provisioner = Provisioner(editor)
        outcome = provisioner.move(device_id, _place(building, floor, unit, area, grid))
        saved = provisioner.save()
    _show_outcome(outcome, saved, provisioner, json_out=json_out)


@device_app.command("remove")
def device_remove(
    device_id: Annotated[str, typer.Argument(metavar="ID", help="device id")],
    gateway: Annotated[
        str | None,
        typer.Option("--gateway", help="for a device in a gateway config but not in the site"),
    ] = None,
    gateway_config: GatewayConfigOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="remove it even though doors or access lists name it")
    ] = False,
    site: SiteOption = None,
    json_out: JsonOption = False,
) -> None:
    """Remove a device from the site file and from its gateway's config."""
    from cli.provision_devices import Provisioner  # noqa: PLC0415

    editor = open_site(site)
    with edit_errors():
        entry = editor.device(device_id)
        gw = str(entry["gateway"]) if entry is not None else gateway
        provisioner = Provisioner(
            editor, gateway_configs={gw: gateway_config} if gateway_config and gw else None
        )
        outcome = provisioner.remove(device_id, gateway=gateway, force=force)
        saved = provisioner.save()
    _show_outcome(outcome, saved, provisioner, json_out=json_out)
