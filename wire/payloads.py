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
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from wire.errors import DecodeError
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
VALUE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
ValueName = Annotated[str, StringConstraints(pattern=VALUE_NAME_PATTERN)]
Timestamp = Annotated[int, Field(ge=MIN_TS_MS, le=MAX_TS_MS, description="epoch milliseconds")]
Seq = Annotated[int, Field(ge=0, lt=2**63)]
Session = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(max_length=256)]
SeqRange = Annotated[list[Seq], Field(min_length=2, max_length=2, description="[first, last]")]


class Payload(BaseModel):
    """Base of every payload: strict types, no unknown fields, finite numbers."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, allow_inf_nan=False, defer_build=True
    )
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

    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, allow_inf_nan=False, defer_build=True
    )
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


# One reading as the gateway batches it: (dev, ts, values).  A plain tuple, not a model: a
# gateway makes hundreds a second (DESIGN.md, "The hot path").
ReadingTuple = tuple[str, int, dict[str, float]]


class ReadingChecker:
    """Checks readings against exactly the rules of :class:`Reading`, without a model each.

    Device ids and sets of value names seen valid once are remembered (up to ``cache_size``
    of each), so a steady stream costs a few dictionary look-ups per reading.
    """

    def __init__(self, cache_size: int = 10_000) -> None:
        self._cache_size = cache_size
        self._ids: set[str] = set()
        self._names: set[tuple[str, ...]] = set()
        self._id_re = re.compile(ID_PATTERN)
        self._name_re = re.compile(VALUE_NAME_PATTERN)

    def check(self, dev: str, ts: int, values: Mapping[str, object]) -> ReadingTuple:
        """The reading as it will be encoded, its values as floats.

        Raises:
            DecodeError: naming the field and the reason, where :class:`Reading` would refuse it.
        """
        if dev not in self._ids:
            if not (isinstance(dev, str) and self._id_re.fullmatch(dev)):
                raise DecodeError("dev", f"not a valid device id: {dev!r}")
            self._remember(self._ids, dev)
        if type(ts) is not int or not MIN_TS_MS <= ts <= MAX_TS_MS:
            raise DecodeError("ts", f"not an epoch-milliseconds timestamp in range: {ts!r}")
        if not 0 < len(values) <= MAX_VALUES_PER_READING:
            raise DecodeError("values", f"needs 1 to {MAX_VALUES_PER_READING} values")
        names = tuple(values)
        if names not in self._names:
            for name in names:
                if not (isinstance(name, str) and self._name_re.fullmatch(name)):
                    raise DecodeError("values", f"invalid name: {name!r}")
            self._remember(self._names, names)
        return dev, ts, _floats(values)

    def _remember(self, cache: set[Any], item: object) -> None:
        if len(cache) < self._cache_size:
            cache.add(item)


def _floats(values: Mapping[str, object]) -> dict[str, float]:
    """The values as floats; ints are widened as pydantic's strict float does, bools refused."""
    out: dict[str, float] = {}
    for name, value in values.items():
        kind = type(value)
        if kind is float:
            number: float = value  # type: ignore[assignment]
        elif kind is int:
            number = float(value)  # type: ignore[arg-type]
        else:
            raise DecodeError(f"values.{name}", f"not a number: {value!r}")
        if not math.isfinite(number):
            raise DecodeError(f"values.{name}", "not a finite number")
        out[name] = number
    return out


def encode_data_batch(
    session: str, seq: int, readings: Sequence[ReadingTuple], *, replay: bool = False
) -> bytes:
    """The bytes of ``encode(DataBatch(...))`` for checked readings, built without models."""
    return orjson.dumps(
        {
            "v": SCHEMA_VERSION,
            "session": session,
            "seq": seq,
            "replay": replay,
            "readings": [{"dev": dev, "ts": ts, "values": values} for dev, ts, values in readings],
        }
    )


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

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, defer_build=True)
    version: ConfigVersion = Field(description="config_version() of config")
    config: dict[str, Any] = Field(description="the gateway config, ${NAME} left unexpanded")


class ConfigApplied(BaseModel):
    """``result`` of the ``config`` command: which drivers it started, stopped or left alone.

    After a rollback, ``restarted`` names the drivers that came back with their previous
    settings and ``started`` and ``stopped`` are empty.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, defer_build=True)
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
