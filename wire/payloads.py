"""Payload models of the v1 contract.  Every payload carries ``"v": 1``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal, Self

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


class HubState(Payload):
    """Retained presence of the hub."""

    online: bool
    ts: Timestamp
    version: Text = ""
