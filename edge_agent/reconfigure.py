"""Applying a pushed config to a running agent: what may change live, what changed, saving it.

The agent itself (:meth:`edge_agent.EdgeAgent.reconfigure`) stops and starts the drivers; this
module holds the parts that need no running agent, so they are tested on their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from device_drivers import DriverConfig
from edge_agent.config import GatewayConfig
from edge_agent.errors import EdgeError
from wire import config_version
from wire.placeholders import ConfigFileError, read_yaml

# Settings the running agent holds open (its broker session, its queue file): changing them
# needs a restart of the agent, so a push may only repeat them.
FIXED_FIELDS = ("site", "gateway", "mqtt", "data_dir", "queue")
PREVIOUS_SUFFIX = ".previous"


class ConfigRefusedError(EdgeError, ValueError):
    """A pushed config the running agent cannot apply; nothing was changed."""


@dataclasses.dataclass(frozen=True, slots=True)
class DriverPlan:
    """How the drivers of a running config become those of a new one, by driver id."""

    started: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def to_stop(self) -> tuple[str, ...]:
        """Drivers whose running instance goes: the removed and the changed ones."""
        return self.stopped + self.restarted

    @property
    def to_start(self) -> tuple[str, ...]:
        """Drivers that get a new instance: the added and the changed ones."""
        return self.started + self.restarted


def same_driver(old: DriverConfig, new: DriverConfig) -> bool:
    """Whether two entries configure the same driver the same way."""
    # Compare values, not models: which fields were given explicitly must not matter.
    return type(old) is type(new) and old.model_dump() == new.model_dump()


def plan_drivers(old: Sequence[DriverConfig], new: Sequence[DriverConfig]) -> DriverPlan:
    """Compare driver entries by id: added ones start, removed ones stop, changed ones restart."""
    before = {d.id: d for d in old}
    after = {d.id: d for d in new}
    return DriverPlan(
        started=tuple(i for i in after if i not in before),
        stopped=tuple(i for i in before if i not in after),
        restarted=tuple(i for i in after if i in before and not same_driver(before[i], after[i])),
        unchanged=tuple(i for i in after if i in before and same_driver(before[i], after[i])),
    )


def changed_sections(old: GatewayConfig, new: GatewayConfig) -> tuple[str, ...]:
    """Top-level settings other than the drivers whose values differ."""
    dumped_old, dumped_new = old.model_dump(), new.model_dump()
    return tuple(
        name
        for name in type(old).model_fields
        if name != "drivers" and dumped_old[name] != dumped_new[name]
    )


def check_new_config(old: GatewayConfig, new: GatewayConfig) -> None:
    """Refuse a config the running agent cannot switch to.

    Raises:
        ConfigRefusedError: if a fixed setting changes or two drivers share an id.
    """
    fixed = [name for name in FIXED_FIELDS if name in changed_sections(old, new)]
    if fixed:
        raise ConfigRefusedError(
            f"{', '.join(fixed)} cannot change while the agent runs: "
            "restart the agent with the new config"
        )
    twice = sorted(i for i, n in Counter(d.id for d in new.drivers).items() if n > 1)
    if twice:
        raise ConfigRefusedError(f"driver id {twice[0]!r} appears more than once")


def previous_path(path: Path) -> Path:
    """Where the config a push replaced is kept."""
    return path.with_name(path.name + PREVIOUS_SUFFIX)


def file_version(path: Path) -> str:
    """The :func:`wire.config_version` of a config file, or ``""`` if it cannot be read."""
    try:
        data = read_yaml(path)
    except ConfigFileError:
        return ""
    return config_version(data) if isinstance(data, Mapping) else ""


def save_config(path: Path, config: Mapping[str, Any], *, version: str) -> None:
    """Replace a config file atomically, keeping the file it replaces as ``<name>.previous``.

    Raises:
        OSError: if either file cannot be written; the config file is then unchanged.
    """
    path = path.resolve()  # write through a symlink, not over it
    header = f"# Pushed config {version}; the one it replaced is in {previous_path(path).name}\n"
    body = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o640
    if path.exists():
        _write_atomically(previous_path(path), path.read_bytes(), mode)
    _write_atomically(path, (header + body).encode(), mode)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        tmp.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    # The rename is durable only once the directory is.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
