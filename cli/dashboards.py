"""`anju dashboards`: generate Grafana provisioning files, or push the boards to a Grafana."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

dashboards_app = typer.Typer(
    help="Grafana dashboards and datasources, generated from code.", no_args_is_help=True
)

console = Console()
err_console = Console(stderr=True)

DEFAULT_VM_URL = "http://127.0.0.1:8428"
DEFAULT_TOKEN_ENV = "GRAFANA_TOKEN"  # noqa: S105 - the name of a variable, not a token


@dashboards_app.command("build")
def build_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="directory to write the tree into")],
    vm_url: Annotated[
        str, typer.Option("--vm-url", help="VictoriaMetrics' URL as Grafana reaches it")
    ] = DEFAULT_VM_URL,
    influx_url: Annotated[
        str | None,
        typer.Option(
            "--influx-url",
            help="also provision an InfluxDB (Flux) datasource at this URL; its token is read "
            "by Grafana from $ANJU_INFLUX_TOKEN",
        ),
    ] = None,
    dashboards_path: Annotated[
        str | None,
        typer.Option(
            "--dashboards-path",
            help="where Grafana finds OUT/dashboards (the provider's path)",
        ),
    ] = None,
) -> None:
    """Write provisioning/datasources, provisioning/dashboards and dashboards/*.json."""
    from dashboards import DashboardsError, InfluxSource, build  # noqa: PLC0415 - fast --help
    from dashboards.provisioning import GRAFANA_DASHBOARDS_PATH  # noqa: PLC0415

    try:
        written = build(
            out,
            vm_url=vm_url,
            influx=InfluxSource(url=influx_url) if influx_url else None,
            dashboards_path=dashboards_path or GRAFANA_DASHBOARDS_PATH,
        )
    except (DashboardsError, OSError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    table = Table(title=f"Written under {out}")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    for path in written:
        table.add_row(str(path.relative_to(out)), str(path.stat().st_size))
    console.print(table)


@dashboards_app.command("push")
def push_command(
    url: Annotated[str, typer.Option("--url", help="Grafana's base URL")],
    token_env: Annotated[
        str,
        typer.Option(
            "--token-env",
            help="the environment variable holding a Grafana service-account token",
        ),
    ] = DEFAULT_TOKEN_ENV,
    folder_uid: Annotated[
        str | None, typer.Option("--folder-uid", help="folder to save into (created if missing)")
    ] = None,
) -> None:
    """Save every board in Grafana through its HTTP API (the token never goes on the CLI)."""
    from dashboards import FOLDER_UID, DashboardsError, all_boards, push  # noqa: PLC0415

    token = os.environ.get(token_env, "").strip()
    if not token:
        err_console.print(f"[red]error:[/red] environment variable {token_env} is not set")
        raise typer.Exit(2)
    try:
        results = push(url, token, all_boards(), folder_uid=folder_uid or FOLDER_UID)
    except DashboardsError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    table = Table(title=f"Pushed to {url}")
    for column in ("uid", "title", "status", "version", "url"):
        table.add_column(column)
    for result in results:
        version = "-" if result.version is None else str(result.version)
        table.add_row(result.uid, result.title, result.status, version, result.url)
    console.print(table)
