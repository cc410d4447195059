"""The ACL file: a gateway's rights are exactly its own uplink, ack and commands."""

from __future__ import annotations

import pytest

from hub.broker import AclRule, AclUser, BrokerError, gateway_rules, hub_rules, render_acl
from wire import GATEWAY_UPLINK_CHANNELS_FILTERS, HUB_STATE_TOPIC, GatewayTopics


def test_a_gateway_writes_its_uplink_and_reads_its_ack_and_commands() -> None:
    rules = gateway_rules("s1", "gw-1")
    assert [r.render() for r in rules] == [
        "topic write anju/v1/s1/gw-1/state",
        "topic write anju/v1/s1/gw-1/data",
        "topic write anju/v1/s1/gw-1/event",
        "topic write anju/v1/s1/gw-1/health",
        "topic write anju/v1/s1/gw-1/reply",
        "topic read anju/v1/s1/gw-1/ack",
        "topic read anju/v1/s1/gw-1/cmd/+",
    ]
    topics = GatewayTopics("s1", "gw-1")
    # What the agent subscribes to and its Last Will are covered.
    readable = {r.topic for r in rules if r.access == "read"}
    assert {topics.ack, topics.cmd_filter} == readable
    assert AclRule("write", topics.state) in rules


def test_the_hub_reads_its_sites_uplink_and_writes_acks_commands_and_presence() -> None:
    rules = hub_rules(["s2", "s1"])
    rendered = [r.render() for r in rules]
    for site in ("s1", "s2"):
        for uplink in GATEWAY_UPLINK_CHANNELS_FILTERS:
            assert f"topic read {uplink.replace('/+/+/', f'/{site}/+/')}" in rendered
        assert f"topic write anju/v1/{site}/+/ack" in rendered
        assert f"topic write anju/v1/{site}/+/cmd/+" in rendered
        assert f"topic write anju/v1/{site}/alerts/#" in rendered
    assert f"topic readwrite {HUB_STATE_TOPIC}" in rendered
    # Never more than its sites: no wildcard in the site level.
    assert not any(r.topic.startswith("anju/v1/+") or r.topic == "#" for r in rules)


def test_render_writes_one_block_per_user() -> None:
    text = render_acl(
        [
            AclUser("anju-hub", hub_rules(["s1"]), comment="the hub"),
            AclUser("gw-1", gateway_rules("s1", "gw-1")),
        ]
    )
    blocks = text.split("\n\n")
    assert blocks[0].startswith("# Generated")
    assert blocks[1].splitlines()[:2] == ["# the hub", "user anju-hub"]
    assert blocks[2].splitlines()[0] == "user gw-1"
    assert "pattern" not in text
    assert text.endswith("\n")


def test_invalid_ids_and_duplicate_users_are_refused() -> None:
    with pytest.raises(BrokerError):
        gateway_rules("s1", "gw/+")
    with pytest.raises(BrokerError):
        gateway_rules("hub", "gw-1")
    with pytest.raises(BrokerError):
        hub_rules(["s#"])
    with pytest.raises(BrokerError, match="twice"):
        render_acl([AclUser("gw-1", ()), AclUser("gw-1", ())])
    with pytest.raises(BrokerError, match="spaces"):
        render_acl([AclUser("gw 1", ())])
