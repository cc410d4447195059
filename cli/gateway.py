"""`anju broker` and `anju gateway`: the site's Mosquitto and the credentials of its gateways.

``anju broker init`` makes the site CA, the broker's certificate, the hub's user and the
Mosquitto configuration in ``<hub data dir>/broker/``.  ``anju gateway add GW`` gives a gateway
its credentials and rights and writes its bundle (``GW/`` and ``GW.tar.gz``); the command it
prints enrols the gateway from the copied archive, offline.  ``rotate`` renews credentials,
``revoke`` shuts a gateway out; both reload the broker when it runs from the generated config.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from hub.broker import (
        AuthMode,
        BrokerPaths,
        BrokerSettings,
        GatewayRecord,
        InitResult,
        Provisioned,
    )

gateway_app = typer.Typer(
    help="Provision gateways: credentials, broker rights and the bundle that enrols them.",
    no_args_is_help=True,
)
broker_app = typer.Typer(
    help="The site's Mosquitto broker: TLS, users, ACL; reload after changes.",
    no_args_is_help=True,
)

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

DEFAULT_HUB_CONFIG = Path("config/hub.yaml")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="hub config file (YAML): its data_dir and site_file"),
]
BrokerDirOption = Annotated[
    Path | None,
    typer.Option("--broker-dir", help="provisioning directory (default: <hub data_dir>/broker)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print a JSON result, no prose")]
ReloadOption = Annotated[
    bool,
    typer.Option("--reload/--no-reload", help="SIGHUP Mosquitto when it runs from the config"),
]


def _fail(message: str, *hints: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {escape(message)}")
    for hint in hints:
        err_console.print(f"  [yellow]→[/yellow] {escape(hint)}")
    return typer.Exit(code)


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {escape(message)}")


def _emit_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


# -- where things are ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Context:
    paths: BrokerPaths
    config_dir: Path | None
    site_file: Path | None


def _context(config: Path, broker_dir: Path | None) -> _Context:
    """The provisioning directory and the site file, from the hub config.

    Only ``data_dir`` and ``site_file`` are read, without expanding placeholders: the hub's own
    secrets need not be in this shell's environment to provision a gateway.
    """
    from hub.broker import BrokerPaths  # noqa: PLC0415 - keep `anju --help` fast
    from wire.placeholders import ConfigFileError, read_yaml  # noqa: PLC0415

    if broker_dir is not None and not config.exists():
        return _Context(BrokerPaths(broker_dir.resolve()), None, None)
    try:
        raw = read_yaml(config)
    except ConfigFileError as problem:
        raise _fail(
            f"{config}: {problem.reason}",
            "give the hub config with --config, or the directory with --broker-dir",
        ) from None
    if not isinstance(raw, Mapping):
        raise _fail(f"{config}: a hub config is a mapping (site_file:, data_dir:, ...)")
    base = config.parent
    data_dir = raw.get("data_dir")
    site_file = raw.get("site_file")
    hub_data = base / data_dir if isinstance(data_dir, str) else Path("var/hub")
    root = broker_dir if broker_dir is not None else hub_data / "broker"
    return _Context(
        paths=BrokerPaths(root.resolve()),
        config_dir=base,
        site_file=base / site_file if isinstance(site_file, str) else None,
    )


def _site_of(ctx: _Context, *, required: bool = True) -> tuple[str, frozenset[str]] | None:
    """The site id of the hub's site file and the gateways it lists."""
    from hub import HubError, load_site  # noqa: PLC0415

    if ctx.site_file is None:
        return None
    try:
        site = load_site(ctx.site_file)
    except HubError as exc:
        if not required:
            return None
        raise _fail(str(exc), "fix the site file, or name the site with --site") from None
    return site.site.id, frozenset(g.id for g in site.gateways)


def _reload(paths: BrokerPaths, *, required: bool) -> int | None:
    """SIGHUP the broker if it runs from the generated config; its pid, or None."""
    from hub.broker import BrokerError, reload_broker  # noqa: PLC0415

    if not paths.pid_file.exists():
        hint = (
            f"Mosquitto is not running from {paths.conf} (no {paths.pid_file}); "
            f"start it with `mosquitto -c {paths.conf}`, or reload the running broker with "
            "`anju broker reload --pid PID`"
        )
        if required:
            raise _fail("the change is written but no broker was reloaded", hint, code=1)
        _warn(hint)
        return None
    try:
        return reload_broker(pid_file=paths.pid_file)
    except BrokerError as exc:
        if required:
            raise _fail(
                f"the change is written but the broker was not reloaded: {exc}",
                "run `anju broker reload` once Mosquitto runs",
                code=1,
            ) from None
        _warn(f"the broker was not reloaded: {exc}")
        return None


# -- anju broker --------------------------------------------------------------------------------


def _merged_settings(previous: BrokerSettings | None, changes: dict[str, Any]) -> BrokerSettings:
    from pydantic import ValidationError  # noqa: PLC0415

    from hub.broker import BrokerSettings  # noqa: PLC0415

    base = previous.model_dump() if previous is not None else {}
    base.update({k: v for k, v in changes.items() if v is not None})
    for key in ("mtls_port", "local_port"):
        if base.get(key) == 0:
            base[key] = None
    if not base.get("hosts"):
        base["hosts"] = (socket.gethostname(), "localhost", "127.0.0.1")
    try:
        return BrokerSettings.model_validate(base)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"])
        raise _fail(f"{field}: {err['msg']}") from None


def _init_sites(
    ctx: _Context, given: list[str] | None, previous: tuple[str, ...] | None
) -> tuple[str, ...]:
    if given:
        return tuple(given)
    if previous is not None:
        return previous
    found = _site_of(ctx)
    if found is None:
        raise _fail("no site: the hub config names no site file", "pass --site SITE")
    return (found[0],)


@broker_app.command("init")
def broker_init(
    config: ConfigOption = DEFAULT_HUB_CONFIG,
    broker_dir: BrokerDirOption = None,
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            "-H",
            help="name or address gateways use for the broker (repeat; the first goes into "
            "bundles); default: this machine's name, localhost, 127.0.0.1",
        ),
    ] = None,
    site: Annotated[
        list[str] | None,
        typer.Option("--site", "-s", help="site the hub serves (repeat); default: the site file's"),
    ] = None,
    tls_port: Annotated[
        int | None, typer.Option("--tls-port", help="TLS listener, user and password [8883]")
    ] = None,
    mtls_port: Annotated[
        int | None,
        typer.Option("--mtls-port", help="TLS listener for client certificates [8884]; 0: off"),
    ] = None,
    local_port: Annotated[
        int | None,
        typer.Option(
            "--local-port", help="plain listener on 127.0.0.1, with a user [1883]; 0: off"
        ),
    ] = None,
    bind: Annotated[
        str | None, typer.Option("--bind", help="address of the TLS listeners (default: all)")
    ] = None,
    run_as: Annotated[
        str | None,
        typer.Option("--run-as", help="user Mosquitto switches to when started as root"),
    ] = None,
    log_file: Annotated[
        Path | None, typer.Option("--log-file", help="broker log file (default: stderr)")
    ] = None,
    hub_user: Annotated[
        str | None, typer.Option("--hub-user", help="the hub's MQTT user name [anju-hub]")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Create the site CA, the broker's certificate, the hub's user and mosquitto.conf.

    Run it again to change settings: the CA, the hub's password and every gateway are kept.
    """
    from hub.broker import DEFAULT_HUB_USER, BrokerError, init_broker, load_inventory  # noqa: PLC0415

    ctx = _context(config, broker_dir)
    paths = ctx.paths
    try:
        previous = load_inventory(paths) if paths.inventory.exists() else None
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    settings = _merged_settings(
        previous.settings if previous else None,
        {
            "hosts": tuple(host) if host else None,
            "tls_port": tls_port,
            "mtls_port": mtls_port,
            "local_port": local_port,
            "bind_address": bind,
            "run_as_user": run_as,
            "log_file": log_file,
        },
    )
    sites = _init_sites(ctx, site, previous.hub.sites if previous else None)
    try:
        username = hub_user or (previous.hub.username if previous else DEFAULT_HUB_USER)
        result = init_broker(paths, settings, sites=sites, hub_username=username)
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    reloaded = _reload(paths, required=False) if previous is not None else None
    if json_out:
        _emit_json(
            {
                "broker_dir": str(paths.root),
                "config": str(paths.conf),
                "ca": str(paths.ca_cert),
                "hub_env": str(paths.hub_env),
                "hub_user": result.inventory.hub.username,
                "sites": list(result.inventory.hub.sites),
                "settings": result.inventory.settings.model_dump(mode="json"),
                "created_ca": result.created_ca,
                "issued_server_cert": result.issued_server_cert,
                "hub_password_created": result.hub_password_created,
                "reloaded_pid": reloaded,
            }
        )
        return
    _print_init(result, fresh=previous is None, hosts_given=bool(host))


def _print_init(result: InitResult, *, fresh: bool, hosts_given: bool) -> None:
    from hub.broker import HUB_CREDENTIAL_VAR  # noqa: PLC0415

    paths = result.paths
    s = result.inventory.settings
    done = "created" if fresh else "updated"
    console.print(f"[green]✓[/green] broker files {done} in {escape(str(paths.root))}")
    console.print(f"  sites      {', '.join(result.inventory.hub.sites)}")
    console.print(f"  hosts      {', '.join(s.hosts)}  (server certificate)")
    listeners = [f"{s.tls_port} TLS + password"]
    if s.mtls_port:
        listeners.append(f"{s.mtls_port} TLS + client certificate")
    if s.local_port:
        listeners.append(f"127.0.0.1:{s.local_port} plain + password")
    console.print(f"  listeners  {'; '.join(listeners)}")
    console.print(f"  CA         {'new' if result.created_ca else 'kept'}: {paths.ca_cert}")
    if result.hub_password_created:
        console.print(
            f"  hub user   {result.inventory.hub.username}, password in {paths.hub_env} (0600)"
        )
    console.print("Next:")
    console.print(f"  start the broker     mosquitto -c {paths.conf}")
    console.print(
        f"  hub.yaml mqtt:       username: {result.inventory.hub.username}, "
        f"password: ${{{HUB_CREDENTIAL_VAR}}} (EnvironmentFile={paths.hub_env})"
    )
    console.print("  add a gateway        anju gateway add GW")
    if not fresh:
        console.print(
            "  changed listeners or host names take effect when Mosquitto restarts; users, "
            "ACL and revocations on reload"
        )
    if fresh and not hosts_given:
        _warn(
            "the broker's certificate names only this machine; gateways that reach it by "
            "another name or address need `anju broker init --host NAME_OR_IP ...`"
        )


@broker_app.command("reload")
def broker_reload(
    config: ConfigOption = DEFAULT_HUB_CONFIG,
    broker_dir: BrokerDirOption = None,
    pid: Annotated[
        int | None, typer.Option("--pid", help="signal this process instead of the pid file's")
    ] = None,
) -> None:
    """Make Mosquitto re-read the password file, the ACL and the revocation list (SIGHUP)."""
    from hub.broker import BrokerError, reload_broker  # noqa: PLC0415

    paths = _context(config, broker_dir).paths
    try:
        signalled = reload_broker(pid_file=paths.pid_file, pid=pid)
    except BrokerError as exc:
        raise _fail(str(exc), "or `systemctl reload mosquitto` if systemd runs it") from None
    console.print(f"[green]✓[/green] Mosquitto (pid {signalled}) reloads its users, ACL and CRL")


@broker_app.command("hub-user")
def broker_hub_user(
    config: ConfigOption = DEFAULT_HUB_CONFIG,
    broker_dir: BrokerDirOption = None,
    reload: ReloadOption = True,
) -> None:
    """Give the hub a new MQTT password (in hub.env); restart the hub afterwards."""
    from hub.broker import BrokerError, add_hub_user  # noqa: PLC0415

    paths = _context(config, broker_dir).paths
    try:
        hub = add_hub_user(paths)
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    if reload:
        _reload(paths, required=False)
    console.print(f"[green]✓[/green] new password for {hub.username} in {paths.hub_env} (0600)")
    console.print("  restart the hub so it reads it; the old password no longer works")


# -- anju gateway -------------------------------------------------------------------------------


def _check_gateway_config(data: Mapping[str, Any]) -> None:
    """Validate a generated gateway config as the edge agent will, placeholders filled."""
    from pydantic import ValidationError  # noqa: PLC0415

    from edge_agent.config import GatewayConfig  # noqa: PLC0415
    from wire.placeholders import validation_problem  # noqa: PLC0415

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return _PLACEHOLDER.sub("placeholder", value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    try:
        GatewayConfig.model_validate(fill(dict(data)))
    except ValidationError as exc:
        problem = validation_problem(exc)
        raise ValueError(f"{problem.field}: {problem.reason}") from None


def _template(ctx: _Context, gateway: str, template: Path | None) -> Path | None:
    if template is not None:
        return template
    if ctx.config_dir is None:
        return None
    found = ctx.config_dir / "gateways" / f"{gateway}.yaml"
    return found if found.is_file() else None


@dataclasses.dataclass(frozen=True, slots=True)
class _BundleArgs:
    out: Path
    template: Path | None
    broker_host: str | None
    install_dir: str
    data_dir: str
    anju_bin: str


def _bundle_args(
    out: Path | None,
    template: Path | None,
    broker_host: str | None,
    install_dir: str,
    data_dir: str,
    anju_bin: str,
) -> _BundleArgs:
    for name, value in (("--install-dir", install_dir), ("--data-dir", data_dir)):
        if not value.startswith("/"):
            raise _fail(f"{name} must be an absolute path on the gateway, not {value!r}")
    return _BundleArgs(
        out=out if out is not None else Path.cwd(),
        template=template,
        broker_host=broker_host,
        install_dir=install_dir,
        data_dir=data_dir,
        anju_bin=anju_bin,
    )


OutOption = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="write GW/ and GW.tar.gz here (default: current directory)"),
]
TemplateOption = Annotated[
    Path | None,
    typer.Option(
        "--template",
        help="gateway config to start from (drivers, batch, ...); default: "
        "<hub config dir>/gateways/GW.yaml when it exists",
    ),
]
BrokerHostOption = Annotated[
    str | None,
    typer.Option(
        "--broker-host", help="broker name the gateway uses (one of `broker init --host`)"
    ),
]
InstallDirOption = Annotated[
    str, typer.Option("--install-dir", help="where the bundle lives on the gateway")
]
DataDirOption = Annotated[str, typer.Option("--data-dir", help="the gateway's queue directory")]
AnjuBinOption = Annotated[
    str, typer.Option("--anju-bin", help="path of the `anju` command on the gateway")
]


def _options(ctx: _Context, gateway: str, args: _BundleArgs) -> Any:
    from hub.broker import BundleOptions  # noqa: PLC0415
    from hub.broker.bundle import SITE_KEY_VAR  # noqa: PLC0415

    return BundleOptions(
        out_dir=args.out,
        template=_template(ctx, gateway, args.template),
        broker_host=args.broker_host,
        install_dir=PurePosixPath(args.install_dir),
        data_dir=PurePosixPath(args.data_dir),
        anju_bin=args.anju_bin,
        site_secret=os.environ.get(SITE_KEY_VAR) or None,
        check_config=_check_gateway_config,
    )


def _report(done: Provisioned, what: str, reloaded: int | None, *, json_out: bool) -> None:
    record, bundle = done.record, done.bundle
    if json_out:
        _emit_json(
            {
                "gateway": record.id,
                "site": record.site,
                "auth": record.auth,
                "broker": f"{done.host}:{done.port}",
                "bundle_dir": str(bundle.directory),
                "bundle": str(bundle.archive),
                "enrol_command": bundle.enrol_command,
                "site_secret_included": bundle.has_site_secret,
                "reloaded_pid": reloaded,
                "record": record.model_dump(mode="json"),
            }
        )
        return
    auth = "client certificate" if record.auth == "cert" else "password"
    console.print(
        f"[green]✓[/green] gateway {record.id} of {record.site} {what}: {auth} over TLS to "
        f"{done.host}:{done.port}"
    )
    console.print(f"  bundle  {bundle.directory}/ and {bundle.archive}")
    console.print(
        "          [yellow]they hold the gateway's secret: delete both once it is enrolled[/yellow]"
    )
    if reloaded is not None:
        console.print(f"  broker  reloaded (pid {reloaded})")
    if not bundle.has_site_secret:
        from hub.broker.bundle import SITE_KEY_VAR  # noqa: PLC0415

        _warn(
            f"{SITE_KEY_VAR} is not set here, so the bundle has no site secret: add it to "
            "secrets.env on the gateway, or set it and make the bundle again"
        )
    console.print("Enrol the gateway: copy the archive to it, then run this there:")
    console.print(f"  scp {bundle.archive} <user>@<gateway>:")
    console.print(f"  {escape(bundle.enrol_command)}")


@gateway_app.command("add")
def gateway_add(
    gateway: Annotated[str, typer.Argument(help="gateway id (also its MQTT user name)")],
    site: Annotated[
        str | None, typer.Option("--site", "-s", help="its site (default: the site file's)")
    ] = None,
    cert: Annotated[
        bool, typer.Option("--cert", help="a client certificate instead of a password")
    ] = False,
    out: OutOption = None,
    template: TemplateOption = None,
    broker_host: BrokerHostOption = None,
    install_dir: InstallDirOption = "/etc/anju",
    data_dir: DataDirOption = "/var/lib/anju-edge",
    anju_bin: AnjuBinOption = "/usr/local/bin/anju",
    config: ConfigOption = DEFAULT_HUB_CONFIG,
    broker_dir: BrokerDirOption = None,
    reload: ReloadOption = True,
    json_out: JsonOption = False,
) -> None:
    """Create a gateway's credentials and broker rights, and write its bundle."""
    from hub.broker import BrokerError, add_gateway  # noqa: PLC0415

    ctx = _context(config, broker_dir)
    args = _bundle_args(out, template, broker_host, install_dir, data_dir, anju_bin)
    found = _site_of(ctx, required=site is None)
    if site is None:
        if found is None:
            raise _fail("no site: the hub config names no site file", "pass --site SITE")
        site = found[0]
    try:
        done = add_gateway(
            ctx.paths,
            gateway,
            site,
            _options(ctx, gateway, args),
            auth="cert" if cert else "password",
        )
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    if found is not None and found[0] == site and ctx.site_file and ctx.config_dir:
        _register(ctx.site_file, ctx.config_dir / "gateways" / f"{gateway}.yaml", gateway, done)
    reloaded = _reload(ctx.paths, required=False) if reload else None
    _report(done, "added", reloaded, json_out=json_out)


def _register(site_file: Path, hub_copy: Path, gateway: str, done: Provisioned) -> None:
    """List the gateway in the site file and keep its config on the hub.

    `anju device add` edits that copy and `anju gateway push` sends it.
    """
    from hub import HubError  # noqa: PLC0415
    from hub.site_edit import SiteEditor  # noqa: PLC0415

    try:
        editor = SiteEditor.open(site_file)
        if gateway not in editor.gateway_ids():
            editor.add_gateway(gateway)
            editor.save()
    except HubError as exc:
        _warn(f"could not list gateway {gateway} in {site_file}: {exc}; add it under gateways:")
    if not hub_copy.exists():
        hub_copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(done.bundle.directory / "gateway.yaml", hub_copy)


@gateway_app.command("rotate")
def gateway_rotate(
    gateway: Annotated[str, typer.Argument(help="gateway id")],
    cert: Annotated[
        bool | None,
        typer.Option("--cert/--password", help="switch to a certificate or a password"),
    ] = None,
    out: OutOption = None,
    template: TemplateOption = None,
    broker_host: BrokerHostOption = None,
    install_dir: InstallDirOption = "/etc/anju",
    data_dir: DataDirOption = "/var/lib/anju-edge",
    anju_bin: AnjuBinOption = "/usr/local/bin/anju",
    config: ConfigOption = DEFAULT_HUB_CONFIG,
    broker_dir: BrokerDirOption = None,
    reload: ReloadOption = True,
    json_out: JsonOption = False,
) -> None:
    """Renew a gateway's credentials; its queued data stays on the gateway and follows."""
    from hub.broker import BrokerError, rotate_gateway  # noqa: PLC0415

    ctx = _context(config, broker_dir)
    args = _bundle_args(out, template, broker_host, install_dir, data_dir, anju_bin)
    auth: AuthMode | None = None if cert is None else ("cert" if cert else "password")
    try:
        done = rotate_gateway(ctx.paths, gateway, _options(ctx, gateway, args), auth=auth)
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    reloaded = _reload(ctx.paths, required=False) if reload else None
    _report(done, "has new credentials", reloaded, json_out=json_out)


@gateway_app.command("revoke")
def gateway_revoke(
    gateway: Annotated[str, typer.Argument(help="gateway id")],
    config: ConfigOption = DEFAULT_HUB_CONFIG,
    broker_dir: BrokerDirOption = None,
    reload: ReloadOption = True,
    json_out: JsonOption = False,
) -> None:
    """Shut a gateway out: its password goes, its certificate is revoked, its rights removed.

    Exits with 1 when the broker could not be reloaded (the gateway is not shut out yet).
    """
    from hub.broker import BrokerError, revoke_gateway  # noqa: PLC0415

    ctx = _context(config, broker_dir)
    try:
        record = revoke_gateway(ctx.paths, gateway)
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    reloaded = _reload(ctx.paths, required=True) if reload else None
    if json_out:
        _emit_json({"record": record.model_dump(mode="json"), "reloaded_pid": reloaded})
        return
    console.print(f"[green]✓[/green] gateway {record.id} of {record.site} revoked")
    if reloaded is not None:
        console.print(f"  broker  reloaded (pid {reloaded}): it can no longer connect")
    else:
        console.print("  run `anju broker reload` to apply it")


@gateway_app.command("list")
def gateway_list(
    config: ConfigOption = DEFAULT_HUB_CONFIG,
    broker_dir: BrokerDirOption = None,
    json_out: JsonOption = False,
) -> None:
    """Every gateway provisioned on this broker, revoked ones too."""
    from hub.broker import BrokerError, list_gateways  # noqa: PLC0415

    ctx = _context(config, broker_dir)
    try:
        records = list_gateways(ctx.paths)
    except BrokerError as exc:
        raise _fail(str(exc)) from None
    if json_out:
        _emit_json([r.model_dump(mode="json") for r in records])
        return
    if not records:
        console.print("no gateways yet: `anju gateway add GW`")
        return
    table = Table("gateway", "site", "auth", "status", "created", "rotated", "cert expires")
    for record in records:
        table.add_row(*_row(record))
    console.print(table)


def _row(record: GatewayRecord) -> tuple[str, ...]:
    def day(value: Any) -> str:
        return "" if value is None else f"{value:%Y-%m-%d}"

    status = record.status if record.revoked is None else f"revoked {day(record.revoked)}"
    return (
        record.id,
        record.site,
        record.auth,
        status,
        day(record.created),
        day(record.rotated),
        day(record.cert_not_after),
    )
