"""Errors of the wire contract.

WireError
 ├── TopicError    a topic that is not part of the v1 contract
 └── DecodeError   a payload that is not valid v1 (names the field and the reason)
"""

from __future__ import annotations


class WireError(Exception):
    """Root of every error raised by :mod:`wire`."""


class TopicError(WireError, ValueError):
    """A topic outside the v1 contract."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"topic {topic!r}: {reason}")
        self.topic = topic
        self.reason = reason


class DecodeError(WireError, ValueError):
    """A payload that does not satisfy the v1 schema.

    Attributes:
        field: dotted path of the offending field (``$`` for the whole payload).
        reason: what is wrong with it, in words an operator can act on.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
