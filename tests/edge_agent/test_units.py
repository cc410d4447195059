"""Pseudonymisation, the outbound queue and the gateway config."""

from __future__ import annotations

import orjson
import pytest

from edge_agent import ConfigError, MemoryQueue, Priority, Pseudonymiser, parse_gateway_config
from wire import Channel

SECRET = b"0123456789abcdef-site-secret"


def test_pseudonym_is_keyed_stable_and_hides_the_number():
    one = Pseudonymiser(SECRET)
    other_site = Pseudonymiser(b"another-site-secret-0000")
    pseudonym = one.pseudonym("0012345678")
    assert pseudonym == one.pseudonym(" 0012345678 ")
    assert pseudonym.startswith("h1:")
    assert len(pseudonym) == 35
    assert "12345678" not in pseudonym
    assert pseudonym != other_site.pseudonym("0012345678")
    assert pseudonym != one.pseudonym("0012345679")


def test_short_secrets_are_refused():
    with pytest.raises(ValueError, match="16 bytes"):
        Pseudonymiser(b"short")


def test_raw_credentials_only_on_explicit_opt_out():
    assert Pseudonymiser(b"", send_raw=True).pseudonym("00ABC") == "raw:00abc"


def _append(queue: MemoryQueue, priority: Priority, tag: str) -> int:
    return queue.append(
        Channel.EVENT, priority, lambda seq: orjson.dumps({"seq": seq, "tag": tag}), 0
    )


def test_queue_assigns_increasing_seqs_and_sends_life_safety_first():
    queue = MemoryQueue()
    a = _append(queue, Priority.TELEMETRY, "telemetry")
    b = _append(queue, Priority.EVENT, "event")
    c = _append(queue, Priority.LIFE_SAFETY, "smoke")
    assert a < b < c
    assert [orjson.loads(m.payload)["seq"] for m in queue.take_unsent(10)] == [c, b, a]
    assert queue.take_unsent(10) == []


def test_queue_forgets_only_what_is_acknowledged_and_resends_the_rest():
    queue = MemoryQueue()
    seqs = [_append(queue, Priority.TELEMETRY, str(i)) for i in range(5)]
    queue.take_unsent(10)
    assert queue.ack(seqs[2]) == 3
    assert queue.stats().depth == 2
    assert queue.resend_unacked() == 2
    assert [m.seq for m in queue.take_unsent(10)] == seqs[3:]


def test_full_queue_drops_oldest_telemetry_and_counts_it():
    queue = MemoryQueue(max_messages=3)
    t1 = _append(queue, Priority.TELEMETRY, "t1")
    _append(queue, Priority.LIFE_SAFETY, "smoke")
    _append(queue, Priority.TELEMETRY, "t2")
    _append(queue, Priority.EVENT, "door")
    stats = queue.stats()
    assert stats.depth == 3
    assert stats.dropped == {"telemetry": 1}
    assert t1 not in [m.seq for m in queue.take_unsent(10)]


def test_queue_seqs_survive_a_restart_without_reuse():
    first = MemoryQueue()
    last = _append(first, Priority.TELEMETRY, "x")
    assert _append(MemoryQueue(), Priority.TELEMETRY, "y") > last


GATEWAY = {
    "site": "s1",
    "gateway": "gw1",
    "privacy": {"site_secret": "${TEST_SITE_SECRET}"},
    "drivers": [
        {"type": "simulated", "id": "sim", "devices": [{"id": "t1", "kind": "temp_humidity"}]}
    ],
}


def test_gateway_config_expands_secrets_from_the_environment(monkeypatch):
    monkeypatch.setenv("TEST_SITE_SECRET", "from-the-environment-123")
    config = parse_gateway_config(GATEWAY)
    assert config.privacy.site_secret is not None
    assert config.privacy.site_secret.get_secret_value() == "from-the-environment-123"
    assert "from-the-environment" not in repr(config)
    assert config.drivers[0].type == "simulated"
    assert len(config.config_hash()) == 16


def test_missing_secret_is_an_error_naming_it(monkeypatch):
    monkeypatch.delenv("TEST_SITE_SECRET", raising=False)
    with pytest.raises(ConfigError, match="TEST_SITE_SECRET"):
        parse_gateway_config(GATEWAY)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"gateway": "gw/1"}, "gateway"),
        ({"mqtt": {"port": 0}}, "mqtt.port"),
        ({"batch": {"max_readings": 0}}, "batch.max_readings"),
        ({"unexpected": 1}, "unexpected"),
        ({"drivers": [{"type": "no-such-driver", "id": "x"}]}, "drivers"),
    ],
)
def test_config_errors_name_the_field(monkeypatch, change, field):
    monkeypatch.setenv("TEST_SITE_SECRET", "from-the-environment-123")
    with pytest.raises(ConfigError) as info:
        parse_gateway_config({**GATEWAY, **change}, source="gw1.yaml")
    assert info.value.field == field
    assert str(info.value).startswith("gw1.yaml: ")
