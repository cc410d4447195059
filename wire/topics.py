"""Topic names of the v1 contract: ``anju/v1/{site}/{gateway}/{channel}[/{command}]``."""

from __future__ import annotations

import dataclasses
import enum
import re

from wire.errors import TopicError

ROOT = "anju/v1"
HUB_STATE_TOPIC = f"{ROOT}/hub/state"
# A site or gateway id becomes a topic level, so it may not hold MQTT wildcards or separators.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)
RESERVED_SITE_IDS = frozenset({"hub"})


class Channel(enum.StrEnum):
    """The last fixed level of a gateway topic."""

    STATE = "state"
    DATA = "data"
    EVENT = "event"
    HEALTH = "health"
    ACK = "ack"
    CMD = "cmd"
    REPLY = "reply"


# What the hub subscribes to: everything gateways send.
GATEWAY_UPLINK_CHANNELS = (
    Channel.STATE,
    Channel.DATA,
    Channel.EVENT,
    Channel.HEALTH,
    Channel.REPLY,
)


def is_valid_id(value: str) -> bool:
    """Whether ``value`` may be used as a site, gateway or device id."""
    return _ID_RE.fullmatch(value) is not None


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayTopics:
    """All topics of one gateway."""

    site: str
    gateway: str

    def __post_init__(self) -> None:
        for name, value in (("site", self.site), ("gateway", self.gateway)):
            if not is_valid_id(value):
                msg = f"{name} id {value!r} must match {ID_PATTERN}"
                raise ValueError(msg)
        if self.site in RESERVED_SITE_IDS:
            msg = f"site id {self.site!r} is reserved"
            raise ValueError(msg)

    @property
    def base(self) -> str:
        """The prefix every topic of this gateway starts with."""
        return f"{ROOT}/{self.site}/{self.gateway}"

    def channel(self, channel: Channel) -> str:
        """Topic of a fixed channel (not ``cmd``, which needs a command name)."""
        return f"{self.base}/{channel.value}"

    @property
    def state(self) -> str:
        """Retained presence topic, also the Last Will."""
        return self.channel(Channel.STATE)

    @property
    def data(self) -> str:
        """Telemetry batches."""
        return self.channel(Channel.DATA)

    @property
    def event(self) -> str:
        """Discrete events."""
        return self.channel(Channel.EVENT)

    @property
    def health(self) -> str:
        """Agent self-metrics."""
        return self.channel(Channel.HEALTH)

    @property
    def ack(self) -> str:
        """Hub's end-to-end acknowledgements."""
        return self.channel(Channel.ACK)

    @property
    def reply(self) -> str:
        """Command results."""
        return self.channel(Channel.REPLY)

    def cmd(self, name: str) -> str:
        """Topic of one command."""
        if not is_valid_id(name):
            msg = f"command name {name!r} must match {ID_PATTERN}"
            raise ValueError(msg)
        return f"{self.base}/{Channel.CMD.value}/{name}"

    @property
    def cmd_filter(self) -> str:
        """Subscription filter for every command to this gateway."""
        return f"{self.base}/{Channel.CMD.value}/+"


def uplink_filter(channel: Channel, site: str = "+") -> str:
    """Subscription filter for one uplink channel of all gateways (of one site, if given)."""
    return f"{ROOT}/{site}/+/{channel.value}"


GATEWAY_UPLINK_CHANNELS_FILTERS = tuple(uplink_filter(c) for c in GATEWAY_UPLINK_CHANNELS)


@dataclasses.dataclass(frozen=True, slots=True)
class TopicAddress:
    """A parsed gateway topic."""

    site: str
    gateway: str
    channel: Channel
    command: str | None = None


def parse_topic(topic: str) -> TopicAddress:
    """Parse a gateway topic, or raise :class:`TopicError` saying why it is not one."""
    parts = topic.split("/")
    if len(parts) < 5 or f"{parts[0]}/{parts[1]}" != ROOT:  # noqa: PLR2004
        raise TopicError(topic, f"not under {ROOT}/{{site}}/{{gateway}}/")
    site, gateway, channel_name = parts[2], parts[3], parts[4]
    try:
        channel = Channel(channel_name)
    except ValueError:
        raise TopicError(topic, f"unknown channel {channel_name!r}") from None
    if not is_valid_id(site) or not is_valid_id(gateway):
        raise TopicError(topic, "site or gateway id is not valid")
    if channel is Channel.CMD:
        if len(parts) != 6 or not is_valid_id(parts[5]):  # noqa: PLR2004
            raise TopicError(topic, "a command topic ends in one command name")
        return TopicAddress(site, gateway, channel, parts[5])
    if len(parts) != 5:  # noqa: PLR2004
        raise TopicError(topic, "unexpected levels after the channel")
    return TopicAddress(site, gateway, channel)
