"""The ``config`` command: a whole gateway config in a Command, its result in a Reply."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from wire import (
    CONFIG_COMMAND,
    Channel,
    Command,
    ConfigApplied,
    ConfigPush,
    GatewayTopics,
    Reply,
    config_version,
    decode,
    decode_as,
    encode,
    parse_topic,
)

TS = 1_700_000_000_000
CONFIG = {
    "site": "sunrise",
    "gateway": "gw-north",
    "privacy": {"site_secret": "${ANJU_SITE_SECRET}"},
    "drivers": [{"type": "simulated", "id": "sim", "devices": [{"id": "th", "kind": "co2"}]}],
}


def test_the_config_command_has_its_own_topic() -> None:
    topic = GatewayTopics("sunrise", "gw-north").cmd(CONFIG_COMMAND)
    assert topic == "anju/v1/sunrise/gw-north/cmd/config"
    assert parse_topic(topic).command == "config"


def test_a_pushed_config_travels_in_a_command_with_placeholders_intact() -> None:
    push = ConfigPush(version=config_version(CONFIG), config=CONFIG)
    command = Command(id="c1", ts=TS, args=push.model_dump())
    received = decode(Channel.CMD, encode(command))
    assert isinstance(received, Command)
    again = ConfigPush.model_validate(received.args)
    assert again == push
    assert again.config["privacy"] == CONFIG["privacy"]
    assert "${ANJU_SITE_SECRET}" in encode(command).decode()
    assert config_version(again.config) == again.version


def test_the_version_ignores_key_order_and_survives_json() -> None:
    reordered = dict(reversed(list(CONFIG.items())))
    assert config_version(reordered) == config_version(CONFIG)
    with_date: dict[Any, Any] = {**CONFIG, "note": dt.date(2025, 1, 2), 7: "seven"}
    as_json = orjson.loads(orjson.dumps(with_date, option=orjson.OPT_NON_STR_KEYS))
    assert config_version(as_json) == config_version(with_date)
    assert config_version({**CONFIG, "site": "other"}) != config_version(CONFIG)
    assert len(config_version(CONFIG)) == 16


@pytest.mark.parametrize(
    "args",
    [
        {"config": CONFIG},
        {"version": "", "config": CONFIG},
        {"version": "v1", "config": ["not", "a", "mapping"]},
        {"version": "v1", "config": CONFIG, "extra": True},
    ],
)
def test_malformed_push_arguments_are_refused(args: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ConfigPush.model_validate(args)


def test_the_result_rides_in_a_reply() -> None:
    applied = ConfigApplied(
        version="abc", started=["sim-b"], unchanged=["sim-a"], changed=["access"], persisted=True
    )
    reply = Reply(
        id="c1", ts=TS, ok=True, result=applied.model_dump(mode="json", exclude_none=True)
    )
    received = decode_as(Reply, encode(reply))
    assert ConfigApplied.model_validate(received.result) == applied
    rolled_back = ConfigApplied(version="abc", restarted=["x"], rolled_back=True, error="no port")
    assert ConfigApplied.model_validate(rolled_back.model_dump()) == rolled_back
    with pytest.raises(ValidationError):
        ConfigApplied(version="abc", started=["bad id/with slash"])
