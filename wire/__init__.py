"""The edge↔hub contract of anju: topics, payloads, codec and event kinds (schema v1)."""

from __future__ import annotations

from wire.codec import MAX_PAYLOAD_BYTES, PAYLOAD_BY_CHANNEL, decode, decode_as, encode
from wire.errors import DecodeError, TopicError, WireError
from wire.events import (
    EVENT_SPECS,
    LIFE_SAFETY_KINDS,
    PSEUDONYM_PATTERN,
    EventSpec,
    is_life_safety,
    validate_event_data,
)
from wire.measurements import ALERT_TAGS, DEVICE_TAGS, EVENT_TAGS, VALUE_UNITS, Measurement
from wire.payloads import (
    MAX_READINGS_PER_BATCH,
    MAX_TS_MS,
    MIN_TS_MS,
    SCHEMA_VERSION,
    Ack,
    Command,
    DataBatch,
    Event,
    GatewayState,
    Health,
    HubState,
    Reading,
    Reply,
)
from wire.topics import (
    HUB_STATE_TOPIC,
    ROOT,
    Channel,
    GatewayTopics,
    TopicAddress,
    is_valid_id,
    parse_topic,
    uplink_filter,
)

__all__ = [
    "ALERT_TAGS",
    "DEVICE_TAGS",
    "EVENT_SPECS",
    "EVENT_TAGS",
    "HUB_STATE_TOPIC",
    "LIFE_SAFETY_KINDS",
    "MAX_PAYLOAD_BYTES",
    "MAX_READINGS_PER_BATCH",
    "MAX_TS_MS",
    "MIN_TS_MS",
    "PAYLOAD_BY_CHANNEL",
    "PSEUDONYM_PATTERN",
    "ROOT",
    "SCHEMA_VERSION",
    "VALUE_UNITS",
    "Ack",
    "Channel",
    "Command",
    "DataBatch",
    "DecodeError",
    "Event",
    "EventSpec",
    "GatewayState",
    "GatewayTopics",
    "Health",
    "HubState",
    "Measurement",
    "Reading",
    "Reply",
    "TopicAddress",
    "TopicError",
    "WireError",
    "decode",
    "decode_as",
    "encode",
    "is_life_safety",
    "is_valid_id",
    "parse_topic",
    "uplink_filter",
    "validate_event_data",
]
