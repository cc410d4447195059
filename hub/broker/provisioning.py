"""Provisioning: the broker's files, the hub's user and every gateway's credentials.

State lives in one directory (``<hub data dir>/broker`` by default, see
:class:`~hub.broker.conf.BrokerPaths`): ``inventory.json`` is the record of settings, the hub user
and each gateway (id, site, auth mode, created, rotated, revoked, certificate serial); the password
file, the ACL, the revocation list and ``mosquitto.conf`` are written from it.  Passwords exist in
clear only in a gateway's bundle and in ``hub.env``; the password file holds hashes.

Every change happens under a lock on the directory, and a gateway's bundle is written before any
broker file changes: when writing the bundle fails, nothing was provisioned.  Mosquitto applies
changes on SIGHUP (:func:`reload_broker`); a gateway whose password was removed is disconnected
then, one whose certificate was revoked cannot connect again and has no rights left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import os
import pwd
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.broker.acl import ALERTS_LEVEL, AclUser, gateway_rules, hub_rules, render_acl
from hub.broker.bundle import AuthMode, Bundle, BundleContent, BundleOptions, write_bundle
from hub.broker.conf import BrokerPaths, BrokerSettings, render_mosquitto_conf
from hub.broker.errors import BrokerError
from hub.broker.files import PUBLIC_MODE, SECRET_MODE, read_text, write_atomic
from hub.broker.passwords import (
    check_username,
    generate_password,
    hash_password,
    read_password_file,
    write_password_file,
)
from hub.broker.pki import (
    KeyPair,
    build_crl,
    cert_pem,
    create_ca,
    crl_pem,
    issue_client_cert,
    issue_server_cert,
    key_pem,
    load_pair,
    save_pair,
    server_hosts,
)
from wire.topics import ID_PATTERN, RESERVED_SITE_IDS, is_valid_id

Id = Annotated[str, Field(pattern=ID_PATTERN)]
HexSerial = Annotated[str, Field(pattern=r"^[0-9a-f]+$")]
DEFAULT_HUB_USER = "anju-hub"
HUB_CREDENTIAL_VAR = "ANJU_HUB_MQTT_PASSWORD"
# Renew the broker's certificate on `init` when it has less than this left.
_SERVER_RENEW_BEFORE = dt.timedelta(days=60)
_INIT_HINT = "run `anju broker init` first"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HubUser(_Frozen):
    """The hub's own broker user."""

    username: str = Field(description="MQTT user name")
    sites: tuple[Id, ...] = Field(min_length=1, description="sites whose gateways it serves")
    created: dt.datetime
    rotated: dt.datetime | None = None


class RevokedCert(_Frozen):
    """A client certificate the broker must refuse."""

    serial: HexSerial
    gateway: Id
    revoked: dt.datetime


class GatewayRecord(_Frozen):
    """One provisioned gateway."""

    id: Id
    site: Id
    auth: AuthMode
    created: dt.datetime
    rotated: dt.datetime | None = None
    revoked: dt.datetime | None = None
    cert_serial: HexSerial | None = Field(default=None, description="current client certificate")
    cert_not_after: dt.datetime | None = None

    @property
    def active(self) -> bool:
        """Whether the gateway may connect."""
        return self.revoked is None

    @property
    def status(self) -> str:
        """``active`` or ``revoked``."""
        return "active" if self.active else "revoked"


class Inventory(_Frozen):
    """Everything provisioned on one broker."""

    version: Literal[1] = 1
    settings: BrokerSettings
    hub: HubUser
    gateways: tuple[GatewayRecord, ...] = ()
    revoked_certs: tuple[RevokedCert, ...] = ()

    def gateway(self, gateway_id: str) -> GatewayRecord | None:
        """The record of ``gateway_id``, if provisioned (even revoked)."""
        return next((g for g in self.gateways if g.id == gateway_id), None)

    def with_gateway(self, record: GatewayRecord) -> Inventory:
        """A copy with ``record`` added or replacing the one of the same id."""
        others = tuple(g for g in self.gateways if g.id != record.id)
        gateways = tuple(sorted((*others, record), key=lambda g: (g.site, g.id)))
        return self.model_copy(update={"gateways": gateways})


@dataclasses.dataclass(frozen=True, slots=True)
class InitResult:
    """What ``broker init`` did."""

    paths: BrokerPaths
    inventory: Inventory
    created_ca: bool
    issued_server_cert: bool
    hub_password_created: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Provisioned:
    """A gateway given credentials, and the bundle that carries them."""

    record: GatewayRecord
    bundle: Bundle
    port: int
    host: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# -- the directory ------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(paths: BrokerPaths) -> Iterator[None]:
    try:
        paths.root.mkdir(parents=True, exist_ok=True, mode=0o750)
        handle = paths.lock.open("a")
    except OSError as exc:
        raise BrokerError(f"cannot use {paths.root}: {exc.strerror}; check its rights") from None
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def load_inventory(paths: BrokerPaths) -> Inventory:
    """The inventory of a provisioning directory."""
    text = read_text(paths.inventory, what="the broker inventory", hint=_INIT_HINT)
    try:
        return Inventory.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "$"
        raise BrokerError(
            f"{paths.inventory}: {where}: {err['msg']}; restore it from a backup"
        ) from None


def _save_inventory(paths: BrokerPaths, inventory: Inventory) -> None:
    write_atomic(paths.inventory, inventory.model_dump_json(indent=2) + "\n", mode=SECRET_MODE)


@dataclasses.dataclass(frozen=True, slots=True)
class _BrokerAccess:
    """How files the broker reads are owned: Mosquitto 2.0 reads them after dropping root."""

    mode: int
    group: int | None
    user: int | None


def _broker_access(settings: BrokerSettings) -> _BrokerAccess:
    if os.geteuid() != 0:
        # Not root: the broker runs as whoever runs this (a test, a user's own broker).
        return _BrokerAccess(SECRET_MODE, None, None)
    name = settings.run_as_user or "mosquitto"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return _BrokerAccess(SECRET_MODE, None, None)
    if entry.pw_uid == 0:
        return _BrokerAccess(SECRET_MODE, None, None)
    return _BrokerAccess(0o640, entry.pw_gid, entry.pw_uid)


def _write_broker_files(
    paths: BrokerPaths, inventory: Inventory, passwd: dict[str, str], ca: KeyPair
) -> None:
    """Write the password file, the CRL, the ACL and the config from the inventory."""
    access = _broker_access(inventory.settings)
    write_password_file(paths.passwd, passwd, mode=access.mode, group=access.group)
    revoked = [(int(r.serial, 16), r.revoked) for r in inventory.revoked_certs]
    write_atomic(paths.crl, crl_pem(build_crl(ca, revoked)), mode=PUBLIC_MODE)
    users = [
        AclUser(
            inventory.hub.username,
            hub_rules(inventory.hub.sites),
            comment=f"the hub of {', '.join(inventory.hub.sites)}",
        )
    ]
    users.extend(
        AclUser(g.id, gateway_rules(g.site, g.id), comment=f"gateway {g.id} of {g.site} ({g.auth})")
        for g in inventory.gateways
        if g.active
    )
    write_atomic(paths.acl, render_acl(users), mode=access.mode, group=access.group)
    write_atomic(paths.conf, render_mosquitto_conf(inventory.settings, paths), mode=PUBLIC_MODE)
    _prepare_state_dir(paths, access)


def _prepare_state_dir(paths: BrokerPaths, access: _BrokerAccess) -> None:
    try:
        paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if access.user is not None and access.group is not None:
            os.chown(paths.state_dir, access.user, access.group)
            # The broker's user must reach its files through the directory itself.
            os.chown(paths.root, -1, access.group)
            paths.root.chmod(0o750)
        if access.group is not None and paths.server_key.exists():
            os.chown(paths.server_key, -1, access.group)
            paths.server_key.chmod(access.mode)
    except OSError as exc:
        raise BrokerError(
            f"cannot prepare {paths.state_dir} for the broker: {exc.strerror}"
        ) from None


def _check_id(value: str, what: str) -> None:
    if not is_valid_id(value):
        raise BrokerError(f"{what} id {value!r} must match {ID_PATTERN}")


def _check_sites(sites: tuple[str, ...]) -> None:
    if not sites:
        raise BrokerError("name at least one site (--site, or the hub config's site file)")
    for site in sites:
        _check_id(site, "site")
        if site in RESERVED_SITE_IDS:
            raise BrokerError(f"site id {site!r} is reserved")


# -- broker and hub -----------------------------------------------------------------------------


def init_broker(
    paths: BrokerPaths,
    settings: BrokerSettings,
    *,
    sites: tuple[str, ...],
    hub_username: str = DEFAULT_HUB_USER,
) -> InitResult:
    """Create (or bring up to date) the CA, the server certificate, the hub user and every file.

    Run again with other settings, it keeps the CA, the hub's password and every gateway, issues
    a new server certificate when the host names changed or it nears expiry, and rewrites the
    rest.
    """
    _check_sites(sites)
    check_username(hub_username)
    with _locked(paths):
        now = _now()
        previous = load_inventory(paths) if paths.inventory.exists() else None
        created_ca = False
        if paths.ca_cert.exists() or paths.ca_key.exists():
            ca = load_pair(paths.ca_cert, paths.ca_key)
        elif previous is not None:
            raise BrokerError(
                f"{paths.ca_cert} and {paths.ca_key} are missing but gateways were provisioned "
                "with them; restore them from a backup"
            )
        else:
            ca = create_ca("+".join(sorted(sites)))
            save_pair(ca, paths.ca_cert, paths.ca_key)
            created_ca = True
        issued = _ensure_server_cert(paths, settings, ca, now)
        passwd = read_password_file(paths.passwd)
        hub = _hub_user(previous, hub_username, sites, now)
        hub_password_created = False
        if hub.username not in passwd or not paths.hub_env.exists():
            _set_hub_password(paths, passwd, hub.username)
            hub_password_created = True
        if previous is not None and previous.hub.username != hub.username:
            passwd.pop(previous.hub.username, None)
        gateways = previous.gateways if previous else ()
        if hub.username in {g.id for g in gateways}:
            raise BrokerError(f"{hub.username!r} is a gateway's user name; choose another")
        orphans = sorted({g.site for g in gateways if g.active} - set(hub.sites))
        if orphans:
            raise BrokerError(
                f"gateways of {', '.join(orphans)} are provisioned here; keep the site "
                "(--site) or revoke them first"
            )
        inventory = Inventory(
            settings=settings,
            hub=hub,
            gateways=gateways,
            revoked_certs=previous.revoked_certs if previous else (),
        )
        _write_broker_files(paths, inventory, passwd, ca)
        _save_inventory(paths, inventory)
        return InitResult(paths, inventory, created_ca, issued, hub_password_created)


def _hub_user(
    previous: Inventory | None, username: str, sites: tuple[str, ...], now: dt.datetime
) -> HubUser:
    if previous is None or previous.hub.username != username:
        return HubUser(username=username, sites=tuple(sorted(set(sites))), created=now)
    return previous.hub.model_copy(update={"sites": tuple(sorted(set(sites)))})


def _ensure_server_cert(
    paths: BrokerPaths, settings: BrokerSettings, ca: KeyPair, now: dt.datetime
) -> bool:
    if paths.server_cert.exists() and paths.server_key.exists():
        current = load_pair(paths.server_cert, paths.server_key)
        if (
            server_hosts(current.cert) == {h.lower() for h in settings.hosts}
            and current.not_after - now > _SERVER_RENEW_BEFORE
            and current.cert.issuer == ca.cert.subject
        ):
            return False
    access = _broker_access(settings)
    server = issue_server_cert(ca, settings.hosts, now=now)
    write_atomic(paths.server_key, key_pem(server.key), mode=access.mode, group=access.group)
    write_atomic(paths.server_cert, cert_pem(server.cert), mode=PUBLIC_MODE)
    return True


def _set_hub_password(paths: BrokerPaths, passwd: dict[str, str], username: str) -> None:
    password = generate_password()
    passwd[username] = hash_password(password)
    write_atomic(paths.hub_env, f"{HUB_CREDENTIAL_VAR}={password}\n", mode=SECRET_MODE)


def add_hub_user(paths: BrokerPaths) -> HubUser:
    """Give the hub a new password (written to ``hub.env``); the old one stops working."""
    with _locked(paths):
        inventory = load_inventory(paths)
        ca = load_pair(paths.ca_cert, paths.ca_key)
        passwd = read_password_file(paths.passwd)
        _set_hub_password(paths, passwd, inventory.hub.username)
        hub = inventory.hub.model_copy(update={"rotated": _now()})
        inventory = inventory.model_copy(update={"hub": hub})
        _write_broker_files(paths, inventory, passwd, ca)
        _save_inventory(paths, inventory)
        return hub


# -- gateways -----------------------------------------------------------------------------------


def _issue(
    inventory: Inventory,
    ca: KeyPair,
    site: str,
    gateway: str,
    auth: AuthMode,
    options: BundleOptions,
) -> tuple[BundleContent, str | None, KeyPair | None]:
    settings = inventory.settings
    host = options.broker_host or settings.hosts[0]
    if host not in settings.hosts:
        raise BrokerError(
            f"the broker's certificate is not valid for {host!r} (it is for "
            f"{', '.join(settings.hosts)}); add it with `anju broker init --host {host} ...`"
        )
    if auth == "cert":
        if settings.mtls_port is None:
            raise BrokerError(
                "the broker has no client-certificate listener; "
                "run `anju broker init --mtls-port 8884` first"
            )
        client = issue_client_cert(ca, gateway, site=site)
        content = BundleContent(
            site=site,
            gateway=gateway,
            auth=auth,
            host=host,
            port=settings.mtls_port,
            ca_pem=cert_pem(ca.cert),
            client_cert_pem=cert_pem(client.cert),
            client_key_pem=key_pem(client.key),
        )
        return content, None, client
    password = generate_password()
    content = BundleContent(
        site=site,
        gateway=gateway,
        auth=auth,
        host=host,
        port=settings.tls_port,
        ca_pem=cert_pem(ca.cert),
        password=password,
    )
    return content, password, None


def _retire_cert(
    inventory: Inventory, record: GatewayRecord, now: dt.datetime
) -> tuple[RevokedCert, ...]:
    if record.cert_serial is None:
        return inventory.revoked_certs
    entry = RevokedCert(serial=record.cert_serial, gateway=record.id, revoked=now)
    return (*inventory.revoked_certs, entry)


def _provision(
    paths: BrokerPaths,
    inventory: Inventory,
    record: GatewayRecord,
    auth: AuthMode,
    options: BundleOptions,
    revoked_certs: tuple[RevokedCert, ...],
) -> Provisioned:
    ca = load_pair(paths.ca_cert, paths.ca_key)
    content, password, client = _issue(inventory, ca, record.site, record.id, auth, options)
    # The bundle first: if it cannot be written, no credential was changed.
    bundle = write_bundle(content, options)
    if client is not None:
        record = record.model_copy(
            update={
                "auth": auth,
                "cert_serial": format(client.serial, "x"),
                "cert_not_after": client.not_after,
            }
        )
    else:
        record = record.model_copy(
            update={"auth": auth, "cert_serial": None, "cert_not_after": None}
        )
    passwd = read_password_file(paths.passwd)
    if password is not None:
        passwd[record.id] = hash_password(password)
    else:
        passwd.pop(record.id, None)
    inventory = inventory.with_gateway(record).model_copy(update={"revoked_certs": revoked_certs})
    _write_broker_files(paths, inventory, passwd, ca)
    _save_inventory(paths, inventory)
    return Provisioned(record=record, bundle=bundle, port=content.port, host=content.host)


def add_gateway(
    paths: BrokerPaths,
    gateway: str,
    site: str,
    options: BundleOptions,
    *,
    auth: AuthMode = "password",
) -> Provisioned:
    """Give a new gateway its credentials and rights, and write its bundle.

    A revoked gateway may be added again (a replacement device): it gets new credentials.
    """
    _check_id(gateway, "gateway")
    if gateway == ALERTS_LEVEL:
        raise BrokerError(f"{gateway!r} is the topic level of MQTT alerts; choose another id")
    with _locked(paths):
        inventory = load_inventory(paths)
        if site not in inventory.hub.sites:
            raise BrokerError(
                f"this broker's hub serves {', '.join(inventory.hub.sites)}, not {site!r}; "
                f"add the site with `anju broker init --site {site} ...`"
            )
        if gateway == inventory.hub.username:
            raise BrokerError(f"{gateway!r} is the hub's user name; choose another gateway id")
        existing = inventory.gateway(gateway)
        if existing is not None and existing.active:
            raise BrokerError(
                f"gateway {gateway!r} is already provisioned (site {existing.site}); "
                f"use `anju gateway rotate {gateway}` for new credentials"
            )
        revoked_certs = inventory.revoked_certs
        if existing is not None:
            revoked_certs = _retire_cert(inventory, existing, _now())
        record = GatewayRecord(id=gateway, site=site, auth=auth, created=_now())
        return _provision(paths, inventory, record, auth, options, revoked_certs)


def rotate_gateway(
    paths: BrokerPaths,
    gateway: str,
    options: BundleOptions,
    *,
    auth: AuthMode | None = None,
) -> Provisioned:
    """New credentials for a gateway, optionally in the other auth mode.

    The old ones stop working once the broker reloads.  Nothing on the gateway but its
    credentials changes: its queue is kept and sent once the new bundle is installed.
    """
    with _locked(paths):
        inventory = load_inventory(paths)
        record = _active(inventory, gateway)
        now = _now()
        revoked_certs = _retire_cert(inventory, record, now)
        record = record.model_copy(update={"rotated": now})
        return _provision(paths, inventory, record, auth or record.auth, options, revoked_certs)


def revoke_gateway(paths: BrokerPaths, gateway: str) -> GatewayRecord:
    """Shut a gateway out: no password, its certificate revoked, no rights in the ACL."""
    with _locked(paths):
        inventory = load_inventory(paths)
        record = _active(inventory, gateway)
        now = _now()
        revoked_certs = _retire_cert(inventory, record, now)
        record = record.model_copy(update={"revoked": now, "cert_serial": None})
        inventory = inventory.with_gateway(record).model_copy(
            update={"revoked_certs": revoked_certs}
        )
        passwd = read_password_file(paths.passwd)
        passwd.pop(gateway, None)
        ca = load_pair(paths.ca_cert, paths.ca_key)
        _write_broker_files(paths, inventory, passwd, ca)
        _save_inventory(paths, inventory)
        return record


def _active(inventory: Inventory, gateway: str) -> GatewayRecord:
    record = inventory.gateway(gateway)
    if record is None:
        raise BrokerError(
            f"gateway {gateway!r} is not provisioned; add it with `anju gateway add {gateway}`"
        )
    if not record.active:
        raise BrokerError(
            f"gateway {gateway!r} was revoked; add it again with `anju gateway add {gateway}`"
        )
    return record


def list_gateways(paths: BrokerPaths) -> tuple[GatewayRecord, ...]:
    """Every gateway provisioned on this broker, revoked ones included."""
    return load_inventory(paths).gateways


# -- the running broker -------------------------------------------------------------------------


def reload_broker(*, pid_file: Path | None = None, pid: int | None = None) -> int:
    """Send SIGHUP to Mosquitto so it re-reads the password file, the ACL and the CRL.

    Returns the process id signalled.  With a pid file, the process must be a ``mosquitto``: a
    stale file must not make us signal an unrelated process.
    """
    if pid is None:
        if pid_file is None:
            raise BrokerError("give the broker's pid or pid file")
        try:
            pid = int(pid_file.read_text(encoding="ascii").strip())
        except FileNotFoundError:
            raise BrokerError(
                f"{pid_file} does not exist: Mosquitto is not running with the generated "
                "config; start it (`mosquitto -c <broker dir>/mosquitto.conf`) or give --pid"
            ) from None
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot read a process id from {pid_file}: {exc}") from None
        _check_is_mosquitto(pid, pid_file)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise BrokerError(f"no process {pid}: is Mosquitto running?") from None
    except PermissionError:
        raise BrokerError(
            f"not allowed to signal process {pid}: run as root or as the broker's user"
        ) from None
    return pid


def _check_is_mosquitto(pid: int, pid_file: Path) -> None:
    comm = Path(f"/proc/{pid}/comm")
    try:
        name = comm.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise BrokerError(
            f"{pid_file} names process {pid}, which is not running: is Mosquitto running?"
        ) from None
    except OSError:
        return  # no /proc here: trust the pid file
    if name != "mosquitto":
        raise BrokerError(
            f"{pid_file} names process {pid} ({name}), not Mosquitto: the file is stale; "
            "restart Mosquitto"
        )
