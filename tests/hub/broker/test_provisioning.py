"""Provisioning state: what init, add, rotate and revoke leave in the directory."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509

from hub.broker import (
    BrokerError,
    BrokerPaths,
    BundleOptions,
    add_gateway,
    add_hub_user,
    init_broker,
    list_gateways,
    load_inventory,
    reload_broker,
    revoke_gateway,
    rotate_gateway,
    verify_password,
)
from hub.broker.passwords import read_password_file
from hub.broker.pki import issued_by, server_hosts
from tests.hub.broker.brokers import broker_settings, hub_password, read_env


@pytest.fixture
def paths(tmp_path: Path) -> BrokerPaths:
    paths = BrokerPaths(tmp_path / "broker")
    init_broker(paths, broker_settings(tmp_path), sites=("s1", "s2"))
    return paths


def opts(tmp_path: Path, **changes: Any) -> BundleOptions:
    values: dict[str, Any] = {
        "out_dir": tmp_path / "bundles",
        "install_dir": PurePosixPath(tmp_path / "etc-anju"),
        "data_dir": PurePosixPath(tmp_path / "queue"),
        "site_secret": "k",
    }
    values.update(changes)
    return BundleOptions(**values)


def bundle_password(tmp_path: Path, gateway: str) -> str:
    return read_env(tmp_path / "bundles" / gateway / "secrets.env")["ANJU_MQTT_PASSWORD"]


def crl(paths: BrokerPaths) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(paths.crl.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_every_file_with_secrets_kept_private(paths: BrokerPaths) -> None:
    for path in (paths.conf, paths.passwd, paths.acl, paths.ca_cert, paths.crl, paths.inventory):
        assert path.is_file(), path
    for secret in (paths.ca_key, paths.hub_env, paths.server_key, paths.passwd):
        assert mode(secret) & 0o077 in (0, 0o040), f"{secret} is readable by others"
    assert mode(paths.ca_key) == 0o600
    assert mode(paths.hub_env) == 0o600
    assert paths.state_dir.is_dir()
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    assert issued_by(server, ca)
    assert server_hosts(server) == {"127.0.0.1", "localhost"}
    entries = read_password_file(paths.passwd)
    assert set(entries) == {"anju-hub"}
    assert verify_password(hub_password(paths), entries["anju-hub"])
    assert "user anju-hub" in paths.acl.read_text()
    inventory = load_inventory(paths)
    assert inventory.hub.sites == ("s1", "s2")
    assert inventory.gateways == ()


def test_init_again_keeps_the_ca_the_hub_password_and_the_gateways(
    paths: BrokerPaths, tmp_path: Path
) -> None:
    add_gateway(paths, "gw-1", "s1", opts(tmp_path))
    ca_before = paths.ca_cert.read_bytes()
    server_before = paths.server_cert.read_bytes()
    password_before = hub_password(paths)
    settings = load_inventory(paths).settings
    init_broker(paths, settings, sites=("s1", "s2"))
    assert paths.ca_cert.read_bytes() == ca_before
    assert paths.server_cert.read_bytes() == server_before
    assert hub_password(paths) == password_before
    assert "gw-1" in read_password_file(paths.passwd)
    # New host names: a new server certificate, from the same CA.
    result = init_broker(
        paths, settings.model_copy(update={"hosts": ("broker.example",)}), sites=("s1", "s2")
    )
    assert result.issued_server_cert
    assert not result.created_ca
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    assert server_hosts(server) == {"broker.example"}
    assert paths.ca_cert.read_bytes() == ca_before


def test_init_refuses_to_drop_a_site_that_still_has_gateways(
    paths: BrokerPaths, tmp_path: Path
) -> None:
    add_gateway(paths, "gw-1", "s2", opts(tmp_path))
    with pytest.raises(BrokerError, match="gateways of s2 are provisioned"):
        init_broker(paths, load_inventory(paths).settings, sites=("s1",))


def test_add_gateway_hashes_its_password_and_grants_its_rights(
    paths: BrokerPaths, tmp_path: Path
) -> None:
    done = add_gateway(paths, "gw-1", "s1", opts(tmp_path))
    assert done.record.auth == "password"
    assert done.port == load_inventory(paths).settings.tls_port
    password = bundle_password(tmp_path, "gw-1")
    entries = read_password_file(paths.passwd)
    assert verify_password(password, entries["gw-1"])
    assert password not in paths.passwd.read_text()
    assert password not in paths.inventory.read_text()
    acl = paths.acl.read_text()
    assert "user gw-1\ntopic write anju/v1/s1/gw-1/state" in acl
    assert [g.id for g in list_gateways(paths)] == ["gw-1"]


def test_add_gateway_with_a_certificate(paths: BrokerPaths, tmp_path: Path) -> None:
    done = add_gateway(paths, "gw-c", "s1", opts(tmp_path), auth="cert")
    assert "gw-c" not in read_password_file(paths.passwd)
    cert = x509.load_pem_x509_certificate((tmp_path / "bundles/gw-c/client.pem").read_bytes())
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    assert issued_by(cert, ca)
    assert done.record.cert_serial == format(cert.serial_number, "x")
    assert done.port == load_inventory(paths).settings.mtls_port
    assert "user gw-c" in paths.acl.read_text()


def test_add_refuses_duplicates_unknown_sites_and_reserved_names(
    paths: BrokerPaths, tmp_path: Path
) -> None:
    add_gateway(paths, "gw-1", "s1", opts(tmp_path))
    with pytest.raises(BrokerError, match="anju gateway rotate gw-1"):
        add_gateway(paths, "gw-1", "s2", opts(tmp_path))
    with pytest.raises(BrokerError, match="anju broker init --site s9"):
        add_gateway(paths, "gw-2", "s9", opts(tmp_path))
    for bad in ("anju-hub", "alerts", "gw/1", "+"):
        with pytest.raises(BrokerError):
            add_gateway(paths, bad, "s1", opts(tmp_path))
    with pytest.raises(BrokerError, match=r"not valid for 'elsewhere\.example'"):
        add_gateway(paths, "gw-3", "s1", opts(tmp_path, broker_host="elsewhere.example"))


def test_before_init_every_command_says_to_run_init(tmp_path: Path) -> None:
    empty = BrokerPaths(tmp_path / "nothing")
    with pytest.raises(BrokerError, match="run `anju broker init` first"):
        add_gateway(empty, "gw-1", "s1", opts(tmp_path))
    with pytest.raises(BrokerError, match="run `anju broker init` first"):
        list_gateways(empty)


def test_a_bundle_that_cannot_be_written_changes_nothing(
    paths: BrokerPaths, tmp_path: Path
) -> None:
    passwd_before = paths.passwd.read_bytes()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(BrokerError):
        add_gateway(paths, "gw-1", "s1", opts(tmp_path, out_dir=blocker))
    assert paths.passwd.read_bytes() == passwd_before
    assert list_gateways(paths) == ()


def test_rotate_replaces_the_password(paths: BrokerPaths, tmp_path: Path) -> None:
    add_gateway(paths, "gw-1", "s1", opts(tmp_path))
    old = bundle_password(tmp_path, "gw-1")
    done = rotate_gateway(paths, "gw-1", opts(tmp_path))
    new = bundle_password(tmp_path, "gw-1")
    assert new != old
    encoded = read_password_file(paths.passwd)["gw-1"]
    assert verify_password(new, encoded)
    assert not verify_password(old, encoded)
    assert done.record.rotated is not None
    assert done.record.created == load_inventory(paths).gateway("gw-1").created  # type: ignore[union-attr]


def test_rotating_a_certificate_revokes_the_old_one(paths: BrokerPaths, tmp_path: Path) -> None:
    first = add_gateway(paths, "gw-c", "s1", opts(tmp_path), auth="cert")
    second = rotate_gateway(paths, "gw-c", opts(tmp_path))
    assert first.record.cert_serial != second.record.cert_serial
    assert first.record.cert_serial is not None
    assert second.record.cert_serial is not None
    revoked = crl(paths)
    assert revoked.get_revoked_certificate_by_serial_number(int(first.record.cert_serial, 16))
    assert not revoked.get_revoked_certificate_by_serial_number(int(second.record.cert_serial, 16))
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    assert revoked.is_signature_valid(ca.public_key())  # type: ignore[arg-type]


def test_rotate_can_switch_from_certificate_to_password(paths: BrokerPaths, tmp_path: Path) -> None:
    first = add_gateway(paths, "gw-c", "s1", opts(tmp_path), auth="cert")
    second = rotate_gateway(paths, "gw-c", opts(tmp_path), auth="password")
    assert second.record.auth == "password"
    assert second.record.cert_serial is None
    assert first.record.cert_serial is not None
    assert crl(paths).get_revoked_certificate_by_serial_number(int(first.record.cert_serial, 16))
    assert verify_password(
        bundle_password(tmp_path, "gw-c"), read_password_file(paths.passwd)["gw-c"]
    )


def test_revoke_removes_password_and_rights_and_revokes_the_certificate(
    paths: BrokerPaths, tmp_path: Path
) -> None:
    add_gateway(paths, "gw-1", "s1", opts(tmp_path))
    cert = add_gateway(paths, "gw-c", "s1", opts(tmp_path), auth="cert")
    revoke_gateway(paths, "gw-1")
    record = revoke_gateway(paths, "gw-c")
    assert record.revoked is not None
    assert not record.active
    assert "gw-1" not in read_password_file(paths.passwd)
    acl = paths.acl.read_text()
    assert "user gw-1" not in acl
    assert "user gw-c" not in acl
    assert cert.record.cert_serial is not None
    assert crl(paths).get_revoked_certificate_by_serial_number(int(cert.record.cert_serial, 16))
    assert {g.id: g.status for g in list_gateways(paths)} == {"gw-1": "revoked", "gw-c": "revoked"}
    with pytest.raises(BrokerError, match="was revoked"):
        rotate_gateway(paths, "gw-1", opts(tmp_path))
    with pytest.raises(BrokerError, match="not provisioned"):
        revoke_gateway(paths, "gw-9")
    # A replacement device may take the id again, with new credentials.
    again = add_gateway(paths, "gw-1", "s1", opts(tmp_path))
    assert again.record.active
    assert "gw-1" in read_password_file(paths.passwd)


def test_hub_user_gets_a_new_password(paths: BrokerPaths) -> None:
    old = hub_password(paths)
    hub = add_hub_user(paths)
    new = hub_password(paths)
    assert new != old
    assert hub.rotated is not None
    encoded = read_password_file(paths.passwd)["anju-hub"]
    assert verify_password(new, encoded)
    assert not verify_password(old, encoded)


def test_passwords_added_by_hand_are_kept(paths: BrokerPaths, tmp_path: Path) -> None:
    with paths.passwd.open("a") as handle:
        handle.write("tool:$7$101$AAAA$BBBB\n")
    add_gateway(paths, "gw-1", "s1", opts(tmp_path))
    assert read_password_file(paths.passwd)["tool"] == "$7$101$AAAA$BBBB"


def test_a_damaged_inventory_says_where(paths: BrokerPaths) -> None:
    paths.inventory.write_text('{"version": 1, "settings": {"hosts": []}}')
    with pytest.raises(BrokerError, match=r"inventory.json: settings.hosts"):
        list_gateways(paths)


def test_reload_refuses_without_a_running_mosquitto(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="does not exist: Mosquitto is not running"):
        reload_broker(pid_file=tmp_path / "none.pid")
    stale = tmp_path / "stale.pid"
    stale.write_text(f"{os.getpid()}\n")
    with pytest.raises(BrokerError, match="not Mosquitto"):
        reload_broker(pid_file=stale)
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    stale.write_text(done.stdout)
    with pytest.raises(BrokerError, match="not running"):
        reload_broker(pid_file=stale)
    stale.write_text("garbage")
    with pytest.raises(BrokerError, match="cannot read a process id"):
        reload_broker(pid_file=stale)


def test_as_root_the_broker_user_gets_group_read_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mosquitto 2.0 reads the password file and the ACL after switching to its own user.
    broker_uid = os.getuid() if os.getuid() != 0 else 12345
    entry = SimpleNamespace(pw_uid=broker_uid, pw_gid=os.getgid())
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(pwd, "getpwnam", lambda _name: entry)
    paths = BrokerPaths(tmp_path / "broker")
    init_broker(paths, broker_settings(tmp_path, run_as_user="mosquitto"), sites=("s1",))
    for readable in (paths.passwd, paths.acl, paths.server_key):
        assert mode(readable) == 0o640, readable
        assert readable.stat().st_gid == os.getgid()
    for private in (paths.ca_key, paths.hub_env, paths.inventory):
        assert mode(private) == 0o600, private
    assert paths.state_dir.stat().st_uid == broker_uid
    assert mode(paths.root) == 0o750
