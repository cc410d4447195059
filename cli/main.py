"""The `anju` command."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.live import Live

from cli.alerts import alerts_app, status_command
from cli.dashboards import dashboards_app
from cli.device import device_app
from cli.edge import run_agent, setup_logging
from cli.gateway import broker_app, gateway_app
from cli.push import push_command
from cli.rules import rules_app
from cli.site import building_app, grid_app, import_command, person_app, site_app, unit_app
from cli.stopping import STOP

app = typer.Typer(
    name="anju",
    help="anju (安居): edge and hub for the safety and facilities of residential communities.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
hub_app = typer.Typer(help="The hub daemon.", no_args_is_help=True)
edge_app = typer.Typer(help="The gateway's edge agent.", no_args_is_help=True)
app.add_typer(hub_app, name="hub")
app.add_typer(edge_app, name="edge")
app.add_typer(dashboards_app, name="dashboards")
app.add_typer(device_app, name="device")
app.add_typer(alerts_app, name="alerts")
app.add_typer(rules_app, name="rules")
gateway_app.command("push")(push_command)
app.add_typer(gateway_app, name="gateway")
app.add_typer(broker_app, name="broker")
app.add_typer(site_app, name="site")
app.add_typer(grid_app, name="grid")
app.add_typer(building_app, name="building")
app.add_typer(unit_app, name="unit")
app.add_typer(person_app, name="person")
app.command("import")(import_command)
app.command("status")(status_command)

err_console = Console(stderr=True)

LogLevel = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR")]


@hub_app.command("run")
def hub_run(
    config: Annotated[Path, typer.Option("--config", "-c", help="hub config file (YAML)")],
    log_level: LogLevel = "INFO",
) -> None:
    """Run the hub until SIGINT or SIGTERM."""
    from hub import HubError, load_hub_config  # noqa: PLC0415 - keep `anju --help` fast
    from hub.app import Hub  # noqa: PLC0415
    from rules import RulesError  # noqa: PLC0415

    setup_logging(log_level)
    try:
        hub_config = load_hub_config(config)
    except HubError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if STOP.requested:
        return

    async def main() -> None:
        try:
            hub = Hub(hub_config)
        except (HubError, RulesError) as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        STOP.attach(asyncio.get_running_loop(), hub.stop)
        try:
            await hub.run()
        finally:
            STOP.detach()

    asyncio.run(main())


@edge_app.command("run")
def edge_run(
    config: Annotated[Path, typer.Option("--config", "-c", help="gateway config file (YAML)")],
    log_level: LogLevel = "INFO",
) -> None:
    """Run the edge agent until SIGINT or SIGTERM."""
    # The console script runs this through cli.edge.main, without loading this module.
    code = run_agent(config, log_level)
    if code:
        raise typer.Exit(code)


@app.command()
def demo(
    duration: Annotated[
        float, typer.Option("--duration", help="stop by itself after this many seconds")
    ] = 0.0,
    json_summary: Annotated[
        bool, typer.Option("--json", help="no live view; print a JSON summary at the end")
    ] = False,
    speed: Annotated[
        float, typer.Option("--speed", min=0.1, max=3600, help="scenario time per real second")
    ] = 1.0,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="also send alerts to this webhook URL")
    ] = None,
    config_dir: Annotated[
        Path | None, typer.Option("--config-dir", help="site, gateways, rules, scenarios")
    ] = None,
) -> None:
    """Run a whole site here: broker, hub (embedded store), three gateways, a night's scenario."""
    from cli.demo import DEFAULT_CONFIG_DIR, Demo  # noqa: PLC0415
    from cli.view import render  # noqa: PLC0415

    if STOP.requested:
        return
    run_for = duration if duration > 0 else 365 * 86_400.0
    the_demo = Demo(
        config_dir=config_dir or DEFAULT_CONFIG_DIR,
        duration_s=run_for,
        speed=speed,
        webhook_url=webhook,
    )
    setup_logging("INFO", the_demo.run_dir / "demo.log")
    console = Console()
    title = f"anju demo: Sunrise Garden, a night (time compressed x{speed:g})"

    async def main() -> dict[str, object]:
        # A stop signal ends the night early but the usual way: gateways, hub, then broker.
        STOP.attach(asyncio.get_running_loop(), the_demo.stop)
        try:
            if json_summary:
                return await the_demo.run()
            with Live(console=console, refresh_per_second=2, transient=False) as live:

                def refresh(d: Demo) -> None:
                    if d.hub is not None:
                        live.update(render(d.hub, title=title))

                return await the_demo.run(on_tick=refresh)
        finally:
            STOP.detach()

    summary = asyncio.run(main())
    if json_summary:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        console.print(f"logs and data: {the_demo.run_dir}")
