"""The Mosquitto configuration the hub generates, and where its files live.

Listeners (all need a user: ``allow_anonymous false`` holds for every one of them):

- ``tls_port`` (8883): TLS with the site CA's server certificate; user name and password.
- ``mtls_port`` (8884, optional): TLS that requires a client certificate from the site CA; the
  certificate's CN becomes the user name (``use_identity_as_username``), so no password is asked,
  and revoked certificates are refused through ``crlfile``.
- ``local_port`` (1883, optional): plain MQTT on 127.0.0.1 only, for the hub and tools on the
  broker's own machine; still user name and password.

``per_listener_settings false`` makes the password file and the ACL apply to every listener.
Mosquitto re-reads the password file, the ACL and the revocation list on SIGHUP.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from wire import MAX_PAYLOAD_BYTES


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BrokerSettings(_Frozen):
    """How the broker listens and keeps what it queues."""

    hosts: tuple[str, ...] = Field(
        min_length=1,
        description="names and addresses gateways use to reach the broker; the server "
        "certificate is valid for each; the first goes into gateway bundles",
    )
    bind_address: str | None = Field(
        default=None, description="address of the TLS listeners; none means every interface"
    )
    tls_port: int = Field(default=8883, ge=1, le=65535, description="TLS, user and password")
    mtls_port: int | None = Field(
        default=8884, ge=1, le=65535, description="TLS with client certificates; none: off"
    )
    local_port: int | None = Field(
        default=1883,
        ge=1,
        le=65535,
        description="plain MQTT on 127.0.0.1 (still a user); none: off",
    )
    run_as_user: str | None = Field(
        default=None,
        description="the user Mosquitto switches to when started as root (its default: mosquitto)",
    )
    # Mosquitto keeps 1000 messages per offline persistent client by default and silently drops
    # the rest: a hub away for a few minutes would lose a site's telemetry at the broker.
    max_queued_messages: int = Field(default=1_000_000, ge=1000, description="per client")
    max_queued_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=0,
        description="per client; bounds the broker's memory while the hub is away (gateways keep "
        "everything unacknowledged and send it again)",
    )
    autosave_interval_s: int = Field(
        default=300, ge=1, description="how often queued messages are written to disk"
    )
    persistent_client_expiration: str = Field(
        default="14d",
        pattern=r"^[0-9]+[hdwmy]$",
        description="forget a persistent session gone this long (longer than gateways keep data)",
    )
    log_file: Path | None = Field(default=None, description="none: stderr (the journal)")


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerPaths:
    """Every file of the provisioning directory (``<hub data dir>/broker`` by default)."""

    root: Path

    @property
    def inventory(self) -> Path:
        """Settings, the hub user and every gateway provisioned (JSON)."""
        return self.root / "inventory.json"

    @property
    def lock(self) -> Path:
        """Held while the directory is changed, so two commands never interleave."""
        return self.root / ".lock"

    @property
    def conf(self) -> Path:
        """The Mosquitto configuration."""
        return self.root / "mosquitto.conf"

    @property
    def passwd(self) -> Path:
        """The Mosquitto password file (hashes only)."""
        return self.root / "passwd"

    @property
    def acl(self) -> Path:
        """The Mosquitto ACL file."""
        return self.root / "acl"

    @property
    def ca_cert(self) -> Path:
        """The site CA's certificate (public: goes into every bundle)."""
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The site CA's key (0600; never leaves this directory)."""
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The broker's certificate."""
        return self.root / "server.pem"

    @property
    def server_key(self) -> Path:
        """The broker's key."""
        return self.root / "server.key"

    @property
    def crl(self) -> Path:
        """Revoked client certificates."""
        return self.root / "crl.pem"

    @property
    def hub_env(self) -> Path:
        """The hub's MQTT password as an environment file (0600)."""
        return self.root / "hub.env"

    @property
    def state_dir(self) -> Path:
        """Writable by the broker: its persistence file and pid file."""
        return self.root / "state"

    @property
    def pid_file(self) -> Path:
        """Where Mosquitto writes its process id (what ``reload`` signals)."""
        return self.state_dir / "mosquitto.pid"


def _listener_tls(paths: BrokerPaths) -> list[str]:
    return [
        f"certfile {paths.server_cert}",
        f"keyfile {paths.server_key}",
        f"cafile {paths.ca_cert}",
        "tls_version tlsv1.2",
    ]


def render_mosquitto_conf(settings: BrokerSettings, paths: BrokerPaths) -> str:
    """The text of ``mosquitto.conf`` (no secrets: only paths to the files that hold them)."""
    bind = f" {settings.bind_address}" if settings.bind_address else ""
    lines = [
        "# Generated by `anju broker init`: edits are overwritten; change the settings and run it",
        "# again.  Mosquitto re-reads passwd, acl and crl.pem on SIGHUP (`anju broker reload`).",
        "",
        "# -- every listener: a known user, the same password file and ACL",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {paths.passwd}",
        f"acl_file {paths.acl}",
    ]
    if settings.run_as_user:
        lines.append(f"user {settings.run_as_user}")
    lines += [
        "",
        "# -- queued messages survive a broker restart and a long hub outage",
        "persistence true",
        f"persistence_location {paths.state_dir}/",
        f"autosave_interval {settings.autosave_interval_s}",
        f"max_queued_messages {settings.max_queued_messages}",
        f"max_queued_bytes {settings.max_queued_bytes}",
        f"persistent_client_expiration {settings.persistent_client_expiration}",
        f"pid_file {paths.pid_file}",
        "",
        "# -- traffic",
        "# Alarms and acks are small: send them now, not after a delayed ACK.",
        "set_tcp_nodelay true",
        # The largest payload of the wire contract, plus room for the topic and properties.
        f"max_packet_size {MAX_PAYLOAD_BYTES + 64 * 1024}",
        "",
        "# -- logging",
        f"log_dest {f'file {settings.log_file}' if settings.log_file else 'stderr'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "",
        "# -- gateways and remote tools: TLS, user name and password",
        f"listener {settings.tls_port}{bind}",
        *_listener_tls(paths),
        "require_certificate false",
    ]
    if settings.mtls_port is not None:
        lines += [
            "",
            "# -- gateways with client certificates: the certificate's CN is the user name",
            f"listener {settings.mtls_port}{bind}",
            *_listener_tls(paths),
            "require_certificate true",
            "use_identity_as_username true",
            f"crlfile {paths.crl}",
        ]
    if settings.local_port is not None:
        lines += [
            "",
            "# -- the hub and tools on this machine: loopback only, still a user and password",
            f"listener {settings.local_port} 127.0.0.1",
        ]
    return "\n".join(lines) + "\n"
