"""The anju hub: ingest, registry, storage sinks, alert lifecycle and notifiers."""

from __future__ import annotations

from hub.alert_store import AlertStore
from hub.alerts import AlertManager, alert_id
from hub.app import Hub, RulesBridge, hub_version
from hub.config import (
    HubConfig,
    HubMqttSettings,
    InfluxSettings,
    IngestSettings,
    NotifierSettings,
    WebhookSettings,
    load_hub_config,
    parse_hub_config,
)
from hub.errors import ConfigError, HubError, RegistryError, SinkError
from hub.ingest import GatewayStatus, Ingestor, SeqWindow
from hub.lifecycle import Alert, AlertBook, LifecycleError, Silence, Status
from hub.notifiers import LogNotifier, Notification, Notifier, NotifyError, WebhookNotifier
from hub.registry import DeviceInfo, Registry, SiteFile, load_site, parse_site
from hub.routing import AlertingSettings
from hub.sinks import InfluxSink, Point, SinkBatch, TimeSeriesSink
from hub.store import AlertRecord, HubStore, QuarantineEntry, StoredEvent
from hub.tsdb import SqliteSink

__all__ = [
    "Alert",
    "AlertBook",
    "AlertManager",
    "AlertRecord",
    "AlertStore",
    "AlertingSettings",
    "ConfigError",
    "DeviceInfo",
    "GatewayStatus",
    "Hub",
    "HubConfig",
    "HubError",
    "HubMqttSettings",
    "HubStore",
    "InfluxSettings",
    "InfluxSink",
    "IngestSettings",
    "Ingestor",
    "LifecycleError",
    "LogNotifier",
    "Notification",
    "Notifier",
    "NotifierSettings",
    "NotifyError",
    "Point",
    "QuarantineEntry",
    "Registry",
    "RegistryError",
    "RulesBridge",
    "SeqWindow",
    "Silence",
    "SinkBatch",
    "SinkError",
    "SiteFile",
    "SqliteSink",
    "Status",
    "StoredEvent",
    "TimeSeriesSink",
    "WebhookNotifier",
    "WebhookSettings",
    "alert_id",
    "hub_version",
    "load_hub_config",
    "load_site",
    "parse_hub_config",
    "parse_site",
]
