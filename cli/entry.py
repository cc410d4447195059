"""Entry point of the ``anju`` console script: signals first, then everything else."""

from __future__ import annotations

import sys

from cli.stopping import STOP, is_daemon_command


def main() -> None:
    """Run ``anju``; a daemon command treats SIGTERM and SIGINT as a clean stop from here on."""
    argv = sys.argv[1:]
    if is_daemon_command(argv):
        STOP.install()
    # Imported after the signals are taken.  The gateway's daemon loads its own command only:
    # the whole `anju` app would bring typer, rich and the hub's and installers' modules into
    # its memory.  Its help stays with the rest of the command line.
    if argv[:2] == ["edge", "run"] and not {"-h", "--help"} & set(argv):
        from cli.edge import main as edge_main  # noqa: PLC0415

        if STOP.requested:
            raise SystemExit(0)
        raise SystemExit(edge_main(argv[1:]))
    from cli.main import app  # noqa: PLC0415

    if STOP.requested:
        # Stopped while the command was still loading: nothing has begun, nothing to undo.
        raise SystemExit(0)
    app()


if __name__ == "__main__":
    main()
