"""``anju edge run``: the gateway's daemon, kept apart from the rest of the command.

A gateway has a Pi's budget (DESIGN.md, "The hot path"), so the console script runs
``anju edge run`` through :func:`main` here, with the standard library's argument parser: it
loads the agent only, not typer, rich, the hub, the dashboards nor the provisioning commands.
``anju edge --help`` and the rest of the command line stay in :mod:`cli.main`, whose
``edge run`` command calls the same :func:`run_agent`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from cli.stopping import STOP

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def setup_logging(level: str, file: Path | None = None) -> None:
    """Send the root logger's records to ``file`` (standard error without), at ``level``."""
    handler: logging.Handler = (
        logging.FileHandler(file, encoding="utf-8") if file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def run_agent(config: Path, log_level: str = "INFO") -> int:
    """Run the edge agent until SIGINT or SIGTERM; the exit code (2: the config is wrong)."""
    from edge_agent import EdgeAgent, EdgeError, load_gateway_config  # noqa: PLC0415

    setup_logging(log_level)
    try:
        gateway_config = load_gateway_config(config)
    except EdgeError as exc:
        return _fail(str(exc))
    if STOP.requested:
        return 0

    async def main() -> int:
        try:
            agent = EdgeAgent(gateway_config, config_path=config)
        except ValueError as exc:
            return _fail(str(exc))
        STOP.attach(asyncio.get_running_loop(), agent.stop)
        try:
            await agent.run()
        finally:
            STOP.detach()
        return 0

    return asyncio.run(main())


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return 2


def main(argv: list[str]) -> int:
    """``anju edge run --config FILE [--log-level LEVEL]``; ``argv`` starts with ``run``."""
    parser = argparse.ArgumentParser(prog="anju edge", add_help=False)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", add_help=False)
    run.add_argument("--config", "-c", type=Path, required=True)
    run.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    args = parser.parse_args(argv)
    return run_agent(args.config, args.log_level)
