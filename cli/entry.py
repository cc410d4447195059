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
    # the whole `anju` app would bring the hub's and the installers' modules into its memory.
    if argv[:1] == ["edge"]:
        from cli.edge import edge_app  # noqa: PLC0415

        if STOP.requested:
            raise SystemExit(0)
        edge_app(args=argv[1:], prog_name="anju edge")
        return
    from cli.main import app  # noqa: PLC0415

    if STOP.requested:
        # Stopped while the command was still loading: nothing has begun, nothing to undo.
        raise SystemExit(0)
    app()


if __name__ == "__main__":
    main()
