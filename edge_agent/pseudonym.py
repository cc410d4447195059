"""Keyed pseudonyms for credential numbers: a raw card number never leaves the gateway."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "h1:"


class Pseudonymiser:
    """Replaces credential numbers with an HMAC-SHA256 keyed by the site's secret.

    The same card gives the same pseudonym across the site's gateways (so the hub can count
    denied attempts of one card), but without the secret nobody can turn it back into a number
    or test a guessed number against it.
    """

    def __init__(self, site_secret: bytes, *, send_raw: bool = False) -> None:
        if len(site_secret) < 16 and not send_raw:  # noqa: PLR2004
            msg = "the site secret must be at least 16 bytes"
            raise ValueError(msg)
        self._key = site_secret
        self._send_raw = send_raw

    def pseudonym(self, credential: str) -> str:
        """The value published in place of ``credential``."""
        normalised = credential.strip().lower()
        if self._send_raw:
            return f"raw:{normalised}"
        digest = hmac.new(self._key, normalised.encode(), hashlib.sha256).hexdigest()
        return PREFIX + digest[:32]
