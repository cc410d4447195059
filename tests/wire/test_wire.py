"""The v1 contract: topics, round trips, and errors that name the field."""

from __future__ import annotations

import re

import orjson
import pytest

import wire
from wire import (
    EVENT_SPECS,
    Channel,
    DataBatch,
    DecodeError,
    Event,
    GatewayTopics,
    Reading,
    TopicError,
    decode,
    encode,
    parse_topic,
    validate_event_data,
)

TS = 1_700_000_000_000


def test_public_api_is_complete():
    public = sorted((n for n in vars(wire) if not n.startswith("_")), key=str)
    modules = {
        "codec",
        "columns",
        "errors",
        "events",
        "measurements",
        "payloads",
        "placeholders",
        "topics",
    }
    assert set(wire.__all__) == set(public) - modules - {"annotations"}


def test_gateway_topics_follow_the_contract():
    topics = GatewayTopics("sunrise", "gw-north")
    assert topics.data == "anju/v1/sunrise/gw-north/data"
    assert topics.state == "anju/v1/sunrise/gw-north/state"
    assert topics.cmd("ping") == "anju/v1/sunrise/gw-north/cmd/ping"
    assert topics.cmd_filter == "anju/v1/sunrise/gw-north/cmd/+"
    assert parse_topic(topics.cmd("ping")).command == "ping"
    assert parse_topic(topics.event).channel is Channel.EVENT


@pytest.mark.parametrize(
    "bad",
    [
        "a/b",
        "anju/v1/s/g",
        "anju/v2/s/g/data",
        "anju/v1/s/g/cmd",
        "anju/v1/s/g/data/x",
        "anju/v1/s+/g/data",
    ],
)
def test_parse_topic_rejects_what_is_not_v1(bad):
    with pytest.raises(TopicError):
        parse_topic(bad)


@pytest.mark.parametrize("bad_id", ["", "a/b", "a+b", "#", "hub", "x" * 65])
def test_ids_that_would_break_topics_are_refused(bad_id):
    with pytest.raises(ValueError, match="id"):
        GatewayTopics(bad_id, "gw")


def test_batch_round_trip():
    batch = DataBatch(
        session="s",
        seq=9,
        readings=[Reading(dev="t1", ts=TS, values={"temperature": 21.5, "humidity": 40.0})],
    )
    assert decode(Channel.DATA, encode(batch)) == batch


def test_event_data_is_normalised_with_defaults():
    event = Event(session="s", seq=1, dev="d", ts=TS, kind="alarm.smoke", data={})
    assert event.data == {"active": True}
    assert orjson.loads(encode(event))["data"] == {"active": True}


def test_every_event_kind_has_a_dotted_stable_name_and_a_schema():
    for kind, spec in EVENT_SPECS.items():
        assert re.fullmatch(r"[a-z]+(\.[a-z_]+)+", kind)
        assert spec.kind == kind
        assert spec.description
    assert {
        "alarm.smoke",
        "alarm.gas",
        "alarm.water_leak",
        "emergency.button",
        "door.forced",
    } == wire.LIFE_SAFETY_KINDS


def test_door_access_accepts_only_pseudonyms_or_explicit_raw_opt_out():
    good = validate_event_data(
        "door.access", {"credential": "h1:" + "ab" * 16, "format": "wiegand26"}
    )
    assert good["credential"].startswith("h1:")
    assert validate_event_data("door.access", {"credential": "raw:26:02f623ae", "format": "osdp"})
    with pytest.raises(DecodeError) as info:
        validate_event_data("door.access", {"credential": "0012345678", "format": "wiegand26"})
    assert info.value.field == "data.credential"


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        (b"{", "$", "not valid JSON"),
        (b'{"v": 3}', "v", "unsupported schema version 3"),
        (
            b'{"v": 1, "session": "s", "seq": 1, "readings": [{"dev": "t", "ts": 5, "values": {"t": 1}}]}',
            "readings.0.ts",
            "greater than or equal",
        ),
        (
            b'{"v": 1, "session": "s", "seq": 1, "readings": [{"dev": "t", "ts": 1700000000000, "values": {}}]}',
            "readings.0.values",
            "at least 1",
        ),
    ],
)
def test_decode_errors_name_the_field_and_the_reason(payload, field, reason):
    with pytest.raises(DecodeError) as info:
        decode(Channel.DATA, payload)
    assert info.value.field == field
    assert reason in info.value.reason
