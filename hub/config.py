"""The hub's configuration, parsed once into frozen models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from hub.channels.settings import ChannelSettings
from hub.errors import ConfigError
from hub.routing import AlertingSettings
from wire.placeholders import (
    ConfigFileError,
    expand_placeholders,
    read_yaml,
    validation_problem,
)

Seconds = Annotated[float, Field(gt=0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HubMqttSettings(_Frozen):
    """How the hub reaches the broker."""

    host: str = Field(default="127.0.0.1", description="broker host")
    port: int = Field(default=1883, ge=1, le=65535, description="broker port")
    username: str | None = Field(default=None, description="the hub's MQTT user")
    password: SecretStr | None = Field(default=None, description="use ${ENV} placeholders")
    client_id: str = Field(default="anju-hub", description="fixed, for a persistent session")
    tls_ca_file: Path | None = Field(default=None, description="CA bundle; enables TLS")


class InfluxSettings(_Frozen):
    """An InfluxDB v2 write endpoint (InfluxDB 2.x/3.x, 1.8+, or VictoriaMetrics)."""

    url: str = Field(description="base URL, e.g. http://127.0.0.1:8086")
    token: SecretStr = Field(default=SecretStr(""), description="use ${INFLUX_TOKEN}")
    org: str = Field(default="anju", description="organisation")
    bucket: str = Field(default="anju", description="bucket (database)")
    timeout_s: Seconds = Field(default=10.0, description="per write request")
    max_write_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=4096,
        description="a write larger than this goes as several requests (InfluxDB 1.x: < 25 MB)",
    )


class IngestSettings(_Frozen):
    """How the hub validates and batches what gateways send."""

    flush_interval_s: Seconds = Field(default=0.2, description="time-series write period")
    max_batch_lines: int = Field(default=20_000, ge=1, description="flush at this many points")
    max_future_skew_s: Seconds = Field(
        default=300.0, description="readings stamped further ahead than this are quarantined"
    )
    quarantine_keep: int = Field(default=10_000, ge=100, description="rows kept for inspection")
    dedup_horizon_s: Seconds = Field(
        default=8 * 86_400,
        description="how long accepted seqs are remembered; longer than gateways keep data",
    )
    rule_state_interval_s: Seconds = Field(
        default=60.0,
        description="how often the rules' timers and windows are saved for a restart",
    )
    shutdown_grace_s: Seconds = Field(
        default=10.0, description="on stop, how long to wait for the spool to drain"
    )


class WebhookSettings(_Frozen):
    """A generic webhook that receives Alertmanager-compatible payloads."""

    name: str = Field(description="shown in logs and delivery records")
    url: str = Field(description="receiver URL")
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers")
    timeout_s: Seconds = Field(default=5.0, description="per request")


class NotifierSettings(_Frozen):
    """Where alerts go."""

    webhooks: tuple[WebhookSettings, ...] = Field(default=(), description="webhook receivers")
    log: bool = Field(default=True, description="also write every notification to the log")
    channels: ChannelSettings = Field(
        default_factory=ChannelSettings,
        description="group robots, e-mail, SMS, MQTT and Grafana annotations",
    )


class MetricsSettings(_Frozen):
    """The Prometheus endpoint of the hub's self-metrics."""

    host: str = Field(default="127.0.0.1", description="listen address")
    port: int = Field(default=0, ge=0, le=65535, description="0 turns the endpoint off")


class ApiSettings(_Frozen):
    """The hub's HTTP API (alerts, silences, status) for the CLI and the console."""

    host: str = Field(default="127.0.0.1", description="listen address")
    port: int = Field(default=0, ge=0, le=65535, description="e.g. 8470; 0 turns the API off")
    token: SecretStr | None = Field(
        default=None, description="bearer token, use ${ANJU_API_TOKEN}; needed off loopback"
    )


class HubConfig(_Frozen):
    """Everything a hub needs to run."""

    site_file: Path = Field(description="the site's registry (grids, buildings, devices, people)")
    rules: tuple[Path, ...] = Field(default=(), description="rule files or directories")
    data_dir: Path = Field(default=Path("var/hub"), description="SQLite files live here")
    mqtt: HubMqttSettings = Field(default_factory=HubMqttSettings)
    influx: InfluxSettings | None = Field(
        default=None, description="time-series store; absent means the embedded SQLite store"
    )
    retention_days: float = Field(default=30, gt=0, description="embedded store retention")
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    notifiers: NotifierSettings = Field(default_factory=NotifierSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    alerting: AlertingSettings = Field(
        default_factory=AlertingSettings,
        description="escalation routes, grouping, silences, inhibition, flapping",
    )
    api: ApiSettings = Field(default_factory=ApiSettings)

    def rule_files(self) -> list[Path]:
        """Every rule file named directly or found in a named directory."""
        files: list[Path] = []
        for path in self.rules:
            files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
        return files


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    # Relative paths in a config file are relative to that file, not to the working directory.
    out = dict(data)
    for key in ("site_file", "data_dir"):
        if isinstance(out.get(key), str):
            out[key] = str(base / out[key])
    if isinstance(out.get("rules"), list):
        out["rules"] = [str(base / p) if isinstance(p, str) else p for p in out["rules"]]
    return out


def parse_hub_config(data: Any, *, source: str = "<config>", base: Path | None = None) -> HubConfig:
    """Validate a parsed YAML tree; errors name the source and the field."""
    try:
        expanded = expand_placeholders(data, source=source)
    except KeyError as exc:
        raise ConfigError(source, "$", str(exc.args[0])) from None
    if isinstance(expanded, dict) and base is not None:
        expanded = _resolve_paths(expanded, base)
    try:
        return HubConfig.model_validate(expanded)
    except ValidationError as exc:
        problem = validation_problem(exc)
        raise ConfigError(source, problem.field, problem.reason) from None


def load_hub_config(path: Path) -> HubConfig:
    """Load and validate a hub config file."""
    try:
        data = read_yaml(path)
    except ConfigFileError as problem:
        raise ConfigError(str(path), problem.field, problem.reason) from None
    return parse_hub_config(data, source=str(path), base=path.parent)
