"""The gateway's configuration, parsed once into frozen models."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from device_drivers import DriverConfig, DriverError, parse_driver_config
from edge_agent.errors import ConfigError
from wire.events import PSEUDONYM_PATTERN
from wire.placeholders import (
    ConfigFileError,
    expand_placeholders,
    read_yaml,
    validation_problem,
)
from wire.topics import ID_PATTERN

Id = Annotated[str, Field(pattern=ID_PATTERN)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MqttSettings(_Frozen):
    """How the gateway reaches the broker."""

    host: str = Field(default="127.0.0.1", description="broker host name or address")
    port: int = Field(default=1883, ge=1, le=65535, description="broker port")
    username: str | None = Field(default=None, description="MQTT user (the gateway id by default)")
    password: SecretStr | None = Field(default=None, description="use ${ENV} placeholders")
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive")
    tls_ca_file: Path | None = Field(default=None, description="CA bundle; enables TLS")
    tls_cert_file: Path | None = Field(default=None, description="client certificate (mTLS)")
    tls_key_file: Path | None = Field(default=None, description="client key (mTLS)")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="cap of reconnect back-off")


class BatchSettings(_Frozen):
    """How telemetry is batched; events are never batched."""

    max_readings: int = Field(default=500, ge=1, le=5000, description="flush at this many")
    max_delay_s: float = Field(default=1.0, gt=0, le=60, description="flush after this long")


class QueueSettings(_Frozen):
    """The durable store-and-forward queue on the gateway's disk."""

    max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=64 * 1024,
        description="disk budget; oldest telemetry goes first",
    )
    max_age_s: float = Field(default=7 * 86_400, gt=0, description="telemetry older than this goes")
    commit_interval_s: float = Field(
        default=0.25, gt=0, le=5, description="group commit period (life-safety commits at once)"
    )


class ReplaySettings(_Frozen):
    """How a backlog is sent after a reconnect, so live traffic keeps flowing."""

    max_messages_per_s: float = Field(default=20.0, gt=0, description="backlog messages per second")


class DoorConfig(_Frozen):
    """A door made of devices on any drivers (for doors no single driver sees whole)."""

    name: Id = Field(description="door name, put in its events")
    contact: Id = Field(description="device id of the door contact; door events carry it")
    exit_buttons: tuple[Id, ...] = Field(default=(), description="request-to-exit devices")
    readers: tuple[Id, ...] = Field(default=(), description="readers whose grants open it")
    grant_window_s: float = Field(default=10.0, gt=0, description="how long a grant holds")
    held_open_s: float | None = Field(default=60.0, gt=0, description="None: never held open")


class AccessSettings(_Frozen):
    """Local access decisions, made on the gateway so a door opens even when the hub is away."""

    allow: dict[Id, tuple[Annotated[str, Field(pattern=PSEUDONYM_PATTERN)], ...]] = Field(
        default_factory=dict,
        description="reader device id -> pseudonyms (h1:...) of the credentials it lets in; "
        "readers not listed leave the decision to others",
    )


class PrivacySettings(_Frozen):
    """Pseudonymisation of credential numbers."""

    site_secret: SecretStr | None = Field(
        default=None, description="per-site HMAC key; use ${ANJU_SITE_SECRET}, never a literal"
    )
    send_raw_credentials: bool = Field(
        default=False, description="opt-out: send raw card numbers (only where the site allows)"
    )


class GatewayConfig(_Frozen):
    """Everything an edge agent needs to run."""

    site: Id = Field(description="site id, the first topic level")
    gateway: Id = Field(description="this gateway's id")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    data_dir: Path = Field(default=Path("var/edge"), description="the queue lives here")
    queue: QueueSettings = Field(default_factory=QueueSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    health_interval_s: float = Field(default=30.0, gt=0, description="self-metrics period")
    resend_after_s: float = Field(
        default=30.0, gt=0, description="publish again what the hub has not acknowledged by then"
    )
    ack_timeout_s: float = Field(
        default=90.0,
        gt=0,
        description="watchdog: reconnect when nothing sent is acknowledged for this long",
    )
    drivers: tuple[DriverConfig, ...] = Field(default=(), description="device drivers to run")
    access: AccessSettings = Field(default_factory=AccessSettings)
    doors: tuple[DoorConfig, ...] = Field(
        default=(), description="doors assembled from devices of several drivers"
    )

    @field_validator("drivers", mode="before")
    @classmethod
    def _parse_drivers(cls, value: Any) -> Any:
        # Each entry is validated by the model its `type` selects (a discriminated union that
        # also covers drivers installed as plug-ins).
        if not isinstance(value, list | tuple):
            return value
        parsed = []
        for raw in value:
            if isinstance(raw, DriverConfig):
                parsed.append(raw)
                continue
            if not isinstance(raw, dict):
                msg = "each driver must be a mapping"
                raise ValueError(msg)  # noqa: TRY004 - pydantic reports ValueError, not TypeError
            try:
                parsed.append(parse_driver_config(raw))
            except DriverError as exc:
                raise ValueError(str(exc)) from None
        return tuple(parsed)

    def config_hash(self) -> str:
        """A short digest of the effective config, reported in the gateway's birth message."""
        # serialize_as_any: each driver's own settings, not only the base model's fields.
        dumped = self.model_dump(
            mode="json", exclude={"mqtt": {"password"}, "privacy": True}, serialize_as_any=True
        )
        return hashlib.sha256(orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def parse_gateway_config(data: Any, *, source: str = "<config>") -> GatewayConfig:
    """Validate a parsed YAML tree; errors name the source and the field."""
    try:
        expanded = expand_placeholders(data, source=source)
    except KeyError as exc:
        raise ConfigError(source, "$", str(exc.args[0])) from None
    try:
        return GatewayConfig.model_validate(expanded)
    except ValidationError as exc:
        problem = validation_problem(exc)
        raise ConfigError(source, problem.field, problem.reason) from None


def load_gateway_config(path: Path) -> GatewayConfig:
    """Load and validate a gateway config file."""
    try:
        data = read_yaml(path)
    except ConfigFileError as problem:
        raise ConfigError(str(path), problem.field, problem.reason) from None
    return parse_gateway_config(data, source=str(path))
