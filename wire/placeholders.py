"""Config placeholders shared by every anju daemon.

Secrets come from the environment or a credentials directory, never from a checked-in file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

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


class ConfigFileError(ValueError):
    """Why a config file does not load: the dotted field (``$`` for the whole file) and reason.

    Each daemon turns it into its own ``ConfigError`` naming the source.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a config file.

    Raises:
        ConfigFileError: if the file cannot be read or is not YAML.
    """
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigFileError("$", f"cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError("$", f"not valid YAML: {exc}") from None


def validation_problem(exc: ValidationError) -> ConfigFileError:
    """The first problem pydantic found, as a dotted field and its message."""
    err = exc.errors(include_url=False)[0]
    return ConfigFileError(".".join(str(p) for p in err["loc"]) or "$", err["msg"])
