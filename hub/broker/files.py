"""Atomic writes with the right mode from the first byte, so a secret is never world-readable."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from hub.broker.errors import BrokerError

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def write_atomic(
    path: Path, data: bytes | str, *, mode: int = SECRET_MODE, group: int | None = None
) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never a part.

    The temporary file gets ``mode`` (and ``group``, for a file the broker's user reads) before
    the first byte is written, is flushed to disk, then renamed over the old one.
    """
    raw = data.encode() if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise BrokerError(f"cannot write {path}: {exc.strerror}; check the directory") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if group is not None:
                os.fchown(handle.fileno(), -1, group)
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise BrokerError(f"cannot write {path}: {exc.strerror}; check the disk") from None


def read_text(path: Path, *, what: str, hint: str) -> str:
    """The text of a provisioning file, or a :class:`BrokerError` naming it and the next step."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BrokerError(f"{what} {path} does not exist; {hint}") from None
    except OSError as exc:
        raise BrokerError(f"cannot read {what} {path}: {exc.strerror}") from None
