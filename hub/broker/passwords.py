"""Mosquitto password file entries, compatible with ``mosquitto_passwd`` of Mosquitto 2.0.

An entry is ``user:$7$<iterations>$<base64 salt>$<base64 hash>``: PBKDF2-HMAC-SHA512 over the
password with a 12-byte random salt and a 64-byte derived key.  Mosquitto 2.0's tool uses 101
iterations; the broker reads the count from each line.  The passwords made here are 192-bit random
tokens, so the low count does not make them guessable offline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from pathlib import Path

from hub.broker.errors import BrokerError
from hub.broker.files import SECRET_MODE, write_atomic

DEFAULT_ITERATIONS = 101
SALT_BYTES = 12
HASH_BYTES = 64
_PREFIX = "$7$"


def generate_password() -> str:
    """A fresh random password (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def hash_password(
    password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """The ``$7$`` hash Mosquitto 2.0 checks ``password`` against."""
    if iterations < 1:
        raise BrokerError("the PBKDF2 iteration count must be at least 1")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return f"{_PREFIX}{iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (as Mosquitto would decide)."""
    parts = encoded.split("$")
    # Split on "$", the hash has five fields: an empty one, "7", iterations, salt and hash.
    if len(parts) != 5 or parts[0] or parts[1] != "7":  # noqa: PLR2004
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        return False
    if iterations < 1 or not expected:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(digest, expected)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def check_username(username: str) -> None:
    """Refuse a user name the password file format cannot hold."""
    if not username or ":" in username or any(c.isspace() for c in username):
        raise BrokerError(f"user name {username!r} may not be empty or hold ':' or spaces")


def parse_password_file(text: str, *, source: str = "<passwd>") -> dict[str, str]:
    """``{user: hash}`` from the text of a password file; blank lines and comments are skipped."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, encoded = line.partition(":")
        if not sep or not user or not encoded:
            raise BrokerError(f"{source}:{number}: not a `user:hash` line; fix or remove it")
        if user in entries:
            raise BrokerError(f"{source}:{number}: user {user!r} appears twice; remove one")
        entries[user] = encoded
    return entries


def render_password_file(entries: Mapping[str, str]) -> str:
    """The text of a password file, users sorted so a diff shows what changed."""
    for user in entries:
        check_username(user)
    return "".join(f"{user}:{entries[user]}\n" for user in sorted(entries))


def read_password_file(path: Path) -> dict[str, str]:
    """The entries of a password file; a missing file has none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BrokerError(f"cannot read the password file {path}: {exc.strerror}") from None
    return parse_password_file(text, source=str(path))


def write_password_file(
    path: Path, entries: Mapping[str, str], *, mode: int = SECRET_MODE, group: int | None = None
) -> None:
    """Replace the password file atomically (the broker may re-read it at any moment)."""
    write_atomic(path, render_password_file(entries), mode=mode, group=group)
