"""The site CA and what it signs, checked with cryptography's own X.509 path validation."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from hub.broker import BrokerError
from hub.broker.pki import (
    build_crl,
    create_ca,
    issue_client_cert,
    issue_server_cert,
    issued_by,
    load_pair,
    save_pair,
    server_hosts,
)

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def policy(ca: x509.Certificate, at: dt.datetime = NOW + dt.timedelta(days=1)) -> PolicyBuilder:
    return PolicyBuilder().store(Store([ca])).time(at)


def test_ca_is_a_self_signed_p256_ca_for_ten_years() -> None:
    ca = create_ca("s1", now=NOW)
    cert = ca.cert
    assert isinstance(ca.key.curve, ec.SECP256R1)
    assert cert.subject == cert.issuer
    assert issued_by(cert, cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=3649) < lifetime < dt.timedelta(days=3651)
    assert "s1" in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_server_certificate_chains_to_the_ca_for_each_name_and_address() -> None:
    ca = create_ca("s1", now=NOW)
    server = issue_server_cert(ca, ["broker.example", "10.0.0.5", "localhost"], now=NOW)
    assert server_hosts(server.cert) == {"broker.example", "10.0.0.5", "localhost"}
    for name in (
        x509.DNSName("broker.example"),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.5")),
    ):
        chain = policy(ca.cert).build_server_verifier(name).verify(server.cert, [])
        assert chain[-1] == ca.cert
    with pytest.raises(VerificationError):
        policy(ca.cert).build_server_verifier(x509.DNSName("other.example")).verify(server.cert, [])
    usage = server.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_client_certificate_names_the_gateway_and_chains_to_the_ca() -> None:
    ca = create_ca("s1", now=NOW)
    client = issue_client_cert(ca, "gw-1", site="s1", now=NOW)
    cn = client.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "gw-1"
    verified = policy(ca.cert).build_client_verifier().verify(client.cert, [])
    assert verified.subjects == [x509.UniformResourceIdentifier("urn:anju:s1:gw-1")]
    usage = client.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # Another site's CA does not vouch for it.
    other = create_ca("s2", now=NOW)
    with pytest.raises(VerificationError):
        policy(other.cert).build_client_verifier().verify(client.cert, [])


def test_leaves_never_outlive_the_ca() -> None:
    ca = create_ca("s1", valid_days=30, now=NOW)
    client = issue_client_cert(ca, "gw-1", site="s1", now=NOW)
    assert client.not_after <= ca.not_after


def test_crl_is_signed_by_the_ca_and_names_the_revoked_serials() -> None:
    ca = create_ca("s1", now=NOW)
    kept = issue_client_cert(ca, "gw-1", site="s1", now=NOW)
    gone = issue_client_cert(ca, "gw-2", site="s1", now=NOW)
    crl = build_crl(ca, [(gone.serial, NOW)], now=NOW)
    assert crl.is_signature_valid(ca.key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(gone.serial) is not None
    assert crl.get_revoked_certificate_by_serial_number(kept.serial) is None
    # OpenSSL refuses every client once the list is past its next update.
    assert crl.next_update_utc is not None
    assert crl.next_update_utc >= ca.not_after


def test_keys_are_saved_0600_and_load_back(tmp_path: Path) -> None:
    ca = create_ca("s1")
    save_pair(ca, tmp_path / "ca.pem", tmp_path / "ca.key")
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca.pem").stat().st_mode) == 0o644
    loaded = load_pair(tmp_path / "ca.pem", tmp_path / "ca.key")
    assert loaded.cert == ca.cert
    assert loaded.serial == ca.serial


def test_loading_a_key_of_another_certificate_fails(tmp_path: Path) -> None:
    one, two = create_ca("s1"), create_ca("s1")
    save_pair(one, tmp_path / "one.pem", tmp_path / "one.key")
    save_pair(two, tmp_path / "two.pem", tmp_path / "two.key")
    with pytest.raises(BrokerError, match="is not the key of"):
        load_pair(tmp_path / "one.pem", tmp_path / "two.key")
    with pytest.raises(BrokerError, match="run `anju broker init` first"):
        load_pair(tmp_path / "missing.pem", tmp_path / "missing.key")
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(BrokerError, match="not a PEM certificate"):
        load_pair(tmp_path / "bad.pem", tmp_path / "one.key")


def test_hosts_must_be_names_or_addresses() -> None:
    ca = create_ca("s1")
    for bad in ("", "under_score.example", "-dash.example", "two words"):
        with pytest.raises(BrokerError, match="neither an IP address nor a DNS name"):
            issue_server_cert(ca, [bad])
    with pytest.raises(BrokerError, match="at least one host"):
        issue_server_cert(ca, [])
