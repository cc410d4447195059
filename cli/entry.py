"""Entry point of the ``anju`` console script: signals first, then everything else."""

from __future__ import annotations

import sys

from cli.stopping import STOP, is_daemon_command


def main() -> None:
    """Run ``anju``; a daemon command treats SIGTERM and SIGINT as a clean stop from here on."""
    if is_daemon_command(sys.argv[1:]):
        STOP.install()
    from cli.main import app  # noqa: PLC0415 - imported after the signals are taken

    if STOP.requested:
        # Stopped while the command was still loading: nothing has begun, nothing to undo.
        raise SystemExit(0)
    app()


if __name__ == "__main__":
    main()
