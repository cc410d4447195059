"""Config placeholders shared by every anju daemon.

Secrets come from the environment or a credentials directory, never from a checked-in file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_placeholders(value: Any, *, source: str) -> Any:
    """Replace ``${NAME}`` in every string of a parsed YAML tree with the environment's value.

    ``${NAME}`` may also name a file in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``).
    An unset name is an error, so a missing secret never silently becomes an empty string.
    """
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: _lookup(m.group(1), source), value)
    if isinstance(value, list):
        return [expand_placeholders(v, source=source) for v in value]
    if isinstance(value, dict):
        return {k: expand_placeholders(v, source=source) for k, v in value.items()}
    return value


def _lookup(name: str, source: str) -> str:
    if name in os.environ:
        return os.environ[name]
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / name).is_file():
        return (Path(cred_dir) / name).read_text().strip()
    msg = f"{source}: ${{{name}}} is not set in the environment or $CREDENTIALS_DIRECTORY"
    raise KeyError(msg)
