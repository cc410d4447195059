"""``anju edge``: the gateway's daemon, kept apart from the rest of the command.

A gateway has a Pi's budget (DESIGN.md, "The hot path"), so ``anju edge run`` loads this module
and the agent only: not the hub, the dashboards, the provisioning commands, nor ``rich``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.stopping import STOP

edge_app = typer.Typer(
    help="The gateway's edge agent.", no_args_is_help=True, pretty_exceptions_enable=False
)

LogLevel = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR")]


@edge_app.callback()
def _edge() -> None:
    """The gateway's edge agent."""


def setup_logging(level: str, file: Path | None = None) -> None:
    """Send the root logger's records to ``file`` (standard error without), at ``level``."""
    handler: logging.Handler = (
        logging.FileHandler(file, encoding="utf-8") if file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _fail(message: str) -> typer.Exit:
    # Plain text: rich would cost the daemon more memory than all of its drivers.
    sys.stderr.write(f"error: {message}\n")
    return typer.Exit(2)


@edge_app.command("run")
def edge_run(
    config: Annotated[Path, typer.Option("--config", "-c", help="gateway config file (YAML)")],
    log_level: LogLevel = "INFO",
) -> None:
    """Run the edge agent until SIGINT or SIGTERM."""
    from edge_agent import EdgeAgent, EdgeError, load_gateway_config  # noqa: PLC0415

    setup_logging(log_level)
    try:
        gateway_config = load_gateway_config(config)
    except EdgeError as exc:
        raise _fail(str(exc)) from None
    if STOP.requested:
        return

    async def main() -> None:
        try:
            agent = EdgeAgent(gateway_config, config_path=config)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        STOP.attach(asyncio.get_running_loop(), agent.stop)
        try:
            await agent.run()
        finally:
            STOP.detach()

    asyncio.run(main())
