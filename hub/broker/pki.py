"""The site's own certificate authority and what it signs.

The CA signs the broker's server certificate, the gateways' client certificates and the
revocation list Mosquitto loads (``crlfile``).

Keys are EC P-256 (small, fast on a Raspberry Pi, supported by every TLS stack a gateway runs).
Certificates carry the extensions strict verifiers require (Python 3.13 turns on
``VERIFY_X509_STRICT``): key usage, subject and authority key identifiers, and for leaves the
extended key usage and, on the server, the names clients connect to.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hub.broker.errors import BrokerError
from hub.broker.files import PUBLIC_MODE, SECRET_MODE, write_atomic

CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 5 * 365
# Certificates start a little in the past, so a gateway whose clock lags still accepts them.
_BACKDATE = dt.timedelta(hours=1)
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@dataclasses.dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def serial(self) -> int:
        """The certificate's serial number (what a revocation list names)."""
        return self.cert.serial_number

    @property
    def not_after(self) -> dt.datetime:
        """When the certificate expires (UTC)."""
        return self.cert.not_valid_after_utc


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def create_ca(
    site: str, *, valid_days: int = CA_VALID_DAYS, now: dt.datetime | None = None
) -> KeyPair:
    """A new self-signed CA for one site (or one broker serving several)."""
    key = _new_key()
    start = _now(now) - _BACKDATE
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "anju"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"anju {site} CA"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def _leaf(
    ca: KeyPair,
    common_name: str,
    usage: x509.ObjectIdentifier,
    names: Sequence[x509.GeneralName],
    valid_days: int,
    now: dt.datetime | None,
) -> KeyPair:
    key = _new_key()
    start = _now(now) - _BACKDATE
    end = min(start + dt.timedelta(days=valid_days), ca.not_after)
    public = key.public_key()
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if not host or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise BrokerError(f"{host!r} is neither an IP address nor a DNS name")
    return x509.DNSName(host.rstrip(".").lower())


def issue_server_cert(
    ca: KeyPair,
    hosts: Sequence[str],
    *,
    valid_days: int = LEAF_VALID_DAYS,
    now: dt.datetime | None = None,
) -> KeyPair:
    """The broker's certificate, valid for every name and address in ``hosts``."""
    if not hosts:
        raise BrokerError("the broker needs at least one host name or address (--host)")
    names = [_general_name(h) for h in dict.fromkeys(hosts)]
    return _leaf(ca, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, names, valid_days, now)


def issue_client_cert(
    ca: KeyPair,
    common_name: str,
    *,
    site: str,
    valid_days: int = LEAF_VALID_DAYS,
    now: dt.datetime | None = None,
) -> KeyPair:
    """A client certificate whose CN is the MQTT user name (``use_identity_as_username``).

    It also names the gateway as ``urn:anju:<site>:<gateway>``: strict verifiers want a subject
    alternative name on every leaf.
    """
    names = [x509.UniformResourceIdentifier(f"urn:anju:{site}:{common_name}")]
    return _leaf(ca, common_name, ExtendedKeyUsageOID.CLIENT_AUTH, names, valid_days, now)


def build_crl(
    ca: KeyPair, revoked: Iterable[tuple[int, dt.datetime]], *, now: dt.datetime | None = None
) -> x509.CertificateRevocationList:
    """A revocation list of ``(serial, revoked at)`` pairs, signed by the CA.

    OpenSSL refuses every client once the list's next update has passed, so it runs to the CA's
    own expiry: the list is rebuilt whenever a certificate is revoked anyway.
    """
    start = _now(now) - _BACKDATE
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(start)
        .next_update(max(ca.not_after, start + dt.timedelta(days=1)))
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca.key, hashes.SHA256())


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of a private key (the file's mode protects it)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    """PEM of a revocation list."""
    return crl.public_bytes(serialization.Encoding.PEM)


def save_pair(
    pair: KeyPair, cert_path: Path, key_path: Path, *, key_mode: int = SECRET_MODE
) -> None:
    """Write a certificate (world-readable) and its key (``key_mode``, 0600 by default)."""
    write_atomic(key_path, key_pem(pair.key), mode=key_mode)
    write_atomic(cert_path, cert_pem(pair.cert), mode=PUBLIC_MODE)


def load_pair(cert_path: Path, key_path: Path) -> KeyPair:
    """Load a certificate and its EC key, checking that they belong together."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise BrokerError(f"{exc.filename} does not exist; run `anju broker init` first") from None
    except OSError as exc:
        raise BrokerError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BrokerError(
            f"{cert_path} or {key_path} is not a PEM certificate and key: {exc}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BrokerError(f"{key_path} is not an EC private key")
    if key.public_key() != cert.public_key():
        raise BrokerError(f"{key_path} is not the key of {cert_path}")
    return KeyPair(cert, key)


def server_hosts(cert: x509.Certificate) -> set[str]:
    """The names and addresses a certificate is valid for (its subject alternative names)."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    hosts = {str(n) for n in names.get_values_for_type(x509.IPAddress)}
    hosts.update(names.get_values_for_type(x509.DNSName))
    return hosts


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca`` signed ``cert``."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
