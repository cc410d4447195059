"""The root error of broker provisioning.

Foreign errors (``OSError``, ``cryptography`` errors, a failed ``kill``) are translated into
:class:`BrokerError` where they happen, with a message that says what to do next.
"""

from __future__ import annotations

from hub.errors import HubError


class BrokerError(HubError):
    """Broker provisioning failed; the message says why and what to do next."""
