"""Errors of the hub.

HubError
 ├── ConfigError     the hub config or site file does not load or validate
 ├── RegistryError   the registry is inconsistent (unknown building, duplicate device, ...)
 ├── StoreError      the hub's own database cannot be written (a full disk): nothing is acked
 └── SinkError       the time-series store refused or could not be reached (transient)
"""

from __future__ import annotations


class HubError(Exception):
    """Root of every error raised by :mod:`hub`."""


class ConfigError(HubError, ValueError):
    """A hub config or site file that cannot be used."""

    def __init__(self, source: str, field: str, reason: str) -> None:
        super().__init__(f"{source}: {field}: {reason}")
        self.source = source
        self.field = field
        self.reason = reason


class RegistryError(HubError, ValueError):
    """The site's registry is inconsistent."""


class StoreError(HubError):
    """The hub's own database refused a write; the data stays unacknowledged and is retried."""


class SinkError(HubError):
    """Writing to the time-series store failed; the data is kept and retried."""
