"""Password hashes as Mosquitto 2.0 writes and checks them: against mosquitto_passwd and a broker."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from hub.broker import BrokerError, hash_password, verify_password
from hub.broker.passwords import (
    DEFAULT_ITERATIONS,
    generate_password,
    parse_password_file,
    read_password_file,
    render_password_file,
    write_password_file,
)
from tests.hub.broker.brokers import connect
from tests.servers import Mosquitto

HASH = re.compile(r"^\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")


def mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    assert Path(found).exists(), "mosquitto_passwd is not installed; run `make servers`"
    return found


def test_hash_has_the_mosquitto_2_format() -> None:
    encoded = hash_password("s3cret")
    match = HASH.fullmatch(encoded)
    assert match is not None, encoded
    assert int(match.group(1)) == DEFAULT_ITERATIONS == 101
    assert len(base64.b64decode(match.group(2))) == 12
    assert len(base64.b64decode(match.group(3))) == 64
    # A fresh salt each time: the same password never hashes the same twice.
    assert hash_password("s3cret") != encoded


def test_a_fixed_salt_gives_the_pbkdf2_sha512_digest() -> None:
    salt = bytes(range(12))
    expected = hashlib.pbkdf2_hmac("sha512", b"pw", salt, 101, 64)
    assert hash_password("pw", salt=salt) == (
        f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(expected).decode()}"
    )


def test_verify_accepts_the_password_and_nothing_else() -> None:
    encoded = hash_password("right", iterations=7)
    assert verify_password("right", encoded)
    assert not verify_password("wrong", encoded)
    assert not verify_password("right", encoded.replace("$7$", "$6$"))
    assert not verify_password("right", "$7$x$abc$def")
    assert not verify_password("right", "garbage")


def test_what_mosquitto_passwd_writes_verifies_here(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run([mosquitto_passwd(), "-b", str(passwd), "gw-1", "from-the-tool"], check=True)
    entries = read_password_file(passwd)
    assert set(entries) == {"gw-1"}
    assert HASH.fullmatch(entries["gw-1"])
    assert verify_password("from-the-tool", entries["gw-1"])
    assert not verify_password("from-the-tool!", entries["gw-1"])


def test_mosquitto_passwd_edits_a_file_written_here(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    write_password_file(passwd, {"ours": hash_password("ours-pw")})
    subprocess.run([mosquitto_passwd(), "-b", str(passwd), "theirs", "theirs-pw"], check=True)
    entries = read_password_file(passwd)
    assert verify_password("ours-pw", entries["ours"])
    assert verify_password("theirs-pw", entries["theirs"])


@pytest.mark.integration
def test_a_broker_accepts_hashes_made_here(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    password = generate_password()
    write_password_file(
        passwd,
        {"gw-default": hash_password(password), "gw-slow": hash_password("other", iterations=1000)},
    )
    broker = Mosquitto(
        tmp_path / "mosquitto",
        allow_anonymous=False,
        extra_config=[f"password_file {passwd}"],
    ).start()
    try:
        for user, secret in (("gw-default", password), ("gw-slow", "other")):
            outcome, client = connect(broker.port, username=user, password=secret)
            assert outcome.connected, outcome.reason
            assert client is not None
            client.close()
        outcome, _ = connect(broker.port, username="gw-default", password=password + "x")
        assert not outcome.connected
        assert "Not authorized" in outcome.reason
    finally:
        broker.stop()


def test_password_file_is_written_0600_and_sorted(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    write_password_file(passwd, {"b": "$7$1$a$b", "a": "$7$1$c$d"})
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    assert passwd.read_text() == "a:$7$1$c$d\nb:$7$1$a$b\n"
    assert not list(tmp_path.glob(".passwd.*")), "a temporary file was left behind"


def test_parse_skips_comments_and_refuses_broken_lines() -> None:
    assert parse_password_file("# c\n\nu:$7$1$a$b\n") == {"u": "$7$1$a$b"}
    with pytest.raises(BrokerError, match=":2: not a `user:hash` line"):
        parse_password_file("u:$7$1$a$b\nbroken\n")
    with pytest.raises(BrokerError, match="appears twice"):
        parse_password_file("u:x\nu:y\n")


def test_user_names_the_file_cannot_hold_are_refused() -> None:
    for bad in ("", "a:b", "a b"):
        with pytest.raises(BrokerError):
            render_password_file({bad: "$7$1$a$b"})


def test_missing_file_has_no_entries(tmp_path: Path) -> None:
    assert read_password_file(tmp_path / "nope") == {}


def test_generated_passwords_are_long_and_distinct() -> None:
    made = {generate_password() for _ in range(50)}
    assert len(made) == 50
    assert all(len(p) == 32 and re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in made)
