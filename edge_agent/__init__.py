"""The anju edge agent: the gateway daemon between device drivers and the broker."""

from __future__ import annotations

from edge_agent.agent import DriverState, EdgeAgent, agent_version
from edge_agent.config import (
    BatchSettings,
    DoorConfig,
    GatewayConfig,
    MqttSettings,
    PrivacySettings,
    QueueSettings,
    ReplaySettings,
    load_gateway_config,
    parse_gateway_config,
)
from edge_agent.errors import ConfigError, EdgeError, QueueError
from edge_agent.pseudonym import Pseudonymiser
from edge_agent.queue import DurableQueue, Priority, QueuedMessage, QueueStats

__all__ = [
    "BatchSettings",
    "ConfigError",
    "DoorConfig",
    "DriverState",
    "DurableQueue",
    "EdgeAgent",
    "EdgeError",
    "GatewayConfig",
    "MqttSettings",
    "Priority",
    "PrivacySettings",
    "Pseudonymiser",
    "QueueError",
    "QueueSettings",
    "QueueStats",
    "QueuedMessage",
    "ReplaySettings",
    "agent_version",
    "load_gateway_config",
    "parse_gateway_config",
]
