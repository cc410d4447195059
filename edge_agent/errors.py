"""Errors of the edge agent.

EdgeError
 ├── ConfigError   the gateway config does not load or validate (names file and field)
 └── QueueError    the outbound queue refused a message
"""

from __future__ import annotations


class EdgeError(Exception):
    """Root of every error raised by :mod:`edge_agent`."""


class ConfigError(EdgeError, ValueError):
    """A gateway config that cannot be used."""

    def __init__(self, source: str, field: str, reason: str) -> None:
        super().__init__(f"{source}: {field}: {reason}")
        self.source = source
        self.field = field
        self.reason = reason


class QueueError(EdgeError):
    """The outbound queue refused a message."""
