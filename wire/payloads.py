"""Payload models of the v1 contract.  Every payload carries ``"v": 1``.

Commands travel as a :class:`Command` on ``.../cmd/{name}``; the gateway answers with a
:class:`Reply` of the same ``id`` on ``.../reply``.  The commands and their ``args``:

- ``ping``: no args; ``result`` is ``{"pong": ts}``.
- ``log_level``: ``{"level": "DEBUG" | "INFO" | "WARNING" | "ERROR"}``.
- ``config`` (:data:`CONFIG_COMMAND`): a :class:`ConfigPush`, the gateway's whole config as its
  YAML file parses, with ``${NAME}`` placeholders left unexpanded so that no secret travels (the
  gateway expands them from its own environment), and its :func:`config_version`.  The gateway
  validates it, refuses what it cannot change while running (site, gateway id, broker settings,
  data directory, queue), restarts only the drivers whose entries changed, never touches its
  queue, and rolls back a config whose new drivers fail to start.  ``result`` is a
  :class:`ConfigApplied`; ``ok`` is false, with ``error`` set, when the config was refused or
  rolled back, and then the previous config is still running.  A push of the running version
  changes nothing and succeeds; a push while another is being applied is refused as busy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from wire.events import validate_event_data
from wire.topics import ID_PATTERN

SCHEMA_VERSION = 1
# Bounds that keep one message cheap to validate and store.  A gateway splits larger batches.
MAX_READINGS_PER_BATCH = 5000
MAX_VALUES_PER_READING = 64
# Epoch milliseconds between 2020-01-01 and 2100-01-01: outside that a clock is broken.
MIN_TS_MS = 1_577_836_800_000
MAX_TS_MS = 4_102_444_800_000

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
ValueName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Timestamp = Annotated[int, Field(ge=MIN_TS_MS, le=MAX_TS_MS, description="epoch milliseconds")]
Seq = Annotated[int, Field(ge=0, lt=2**63)]
Session = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(max_length=256)]
SeqRange = Annotated[list[Seq], Field(min_length=2, max_length=2, description="[first, last]")]


class Payload(BaseModel):
    """Base of every payload: strict types, no unknown fields, finite numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
    v: Literal[1] = 1


class GatewayState(Payload):
    """Retained presence of a gateway; the Last Will carries ``online: false``."""

    online: bool
    ts: Timestamp
    session: Session
    agent: Text = ""
    config_hash: Text = ""


class Reading(BaseModel):
    """Values of one device at one instant."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
    dev: Id
    ts: Timestamp
    values: Annotated[
        dict[ValueName, float], Field(min_length=1, max_length=MAX_VALUES_PER_READING)
    ]


class DataBatch(Payload):
    """A batch of telemetry from one gateway."""

    session: Session
    seq: Seq
    replay: bool = False
    readings: Annotated[list[Reading], Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)]


class Event(Payload):
    """One discrete event; ``data`` is validated against the kind's schema."""

    session: Session
    seq: Seq
    replay: bool = False
    dev: Id
    ts: Timestamp
    kind: Annotated[str, StringConstraints(max_length=64)]
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_data(self) -> Self:
        # Normalise through the kind's model; DecodeError is a ValueError, so pydantic reports it.
        object.__setattr__(self, "data", validate_event_data(self.kind, self.data))
        return self


class Health(Payload):
    """Agent self-metrics, sent with QoS 0."""

    ts: Timestamp
    session: Session
    queue_depth: int = Field(ge=0)
    oldest_age_s: float = Field(ge=0)
    dropped: dict[Text, int] = Field(default_factory=dict)
    drivers: dict[Text, Text] = Field(default_factory=dict)
    devices: dict[Text, Text] = Field(
        default_factory=dict, description="device id -> faulted | ok, for devices that faulted"
    )
    counters: dict[Text, int] = Field(default_factory=dict)
    disk_free_bytes: int | None = None
    cpu_temp_c: float | None = None


class Ack(Payload):
    """What the hub has durably stored of one gateway's messages.

    With ``ranges``, exactly the seqs in those inclusive ``[first, last]`` ranges are stored and
    ``seq`` is the highest of them.  Without, everything up to ``seq`` is stored.  Ranges let the
    hub acknowledge a live alarm that overtook a replayed backlog without acknowledging the
    backlog it has not seen yet.
    """

    session: Session
    seq: Seq
    ranges: Annotated[list[SeqRange], Field(max_length=10_000)] | None = None

    def covers(self, seq: int) -> bool:
        """Whether this acknowledgement includes ``seq``."""
        if self.ranges is None:
            return seq <= self.seq
        return any(first <= seq <= last for first, last in self.ranges)


def seq_ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Compress seqs into sorted, merged, inclusive ``[first, last]`` ranges."""
    ranges: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return ranges


class Command(Payload):
    """A command from the hub to a gateway."""

    id: Text
    ts: Timestamp
    args: dict[str, Any] = Field(default_factory=dict)


class Reply(Payload):
    """The result of a command."""

    id: Text
    ts: Timestamp
    ok: bool
    result: dict[str, Any] = Field(default_factory=dict)
    error: Text | None = None


CONFIG_COMMAND = "config"
ConfigVersion = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def config_version(config: Mapping[str, Any]) -> str:
    """The version of a gateway config: a digest of its parsed YAML, placeholders unexpanded.

    Key order does not matter, and the digest survives the JSON round trip of a command.
    """
    dumped = orjson.dumps(config, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(dumped).hexdigest()[:16]


class ConfigPush(BaseModel):
    """``args`` of the ``config`` command: a whole gateway config and its version."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    version: ConfigVersion = Field(description="config_version() of config")
    config: dict[str, Any] = Field(description="the gateway config, ${NAME} left unexpanded")


class ConfigApplied(BaseModel):
    """``result`` of the ``config`` command: which drivers it started, stopped or left alone.

    After a rollback, ``restarted`` names the drivers that came back with their previous
    settings and ``started`` and ``stopped`` are empty.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    version: Text = Field(description="the pushed version")
    started: list[Id] = Field(default_factory=list, description="drivers added")
    stopped: list[Id] = Field(default_factory=list, description="drivers removed")
    restarted: list[Id] = Field(default_factory=list, description="drivers whose entry changed")
    unchanged: list[Id] = Field(default_factory=list, description="drivers left running")
    changed: list[Text] = Field(
        default_factory=list, description="other sections that changed (doors, access, ...)"
    )
    rolled_back: bool = Field(default=False, description="applied, failed, and undone")
    persisted: bool = Field(default=False, description="saved to the gateway's config file")
    error: Text | None = Field(default=None, description="why it was refused or rolled back")


class HubState(Payload):
    """Retained presence of the hub."""

    online: bool
    ts: Timestamp
    version: Text = ""
