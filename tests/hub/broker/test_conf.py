"""The generated mosquitto.conf, and the example in config/mosquitto kept in step with it."""

from __future__ import annotations

from pathlib import Path

from hub.broker import BrokerPaths, BrokerSettings, render_mosquitto_conf

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "mosquitto" / "mosquitto.conf"


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_security_and_queueing_settings() -> None:
    paths = BrokerPaths(Path("/srv/broker"))
    text = render_mosquitto_conf(BrokerSettings(hosts=("b.example",)), paths)
    got = lines(text)
    for expected in (
        "per_listener_settings false",
        "allow_anonymous false",
        "password_file /srv/broker/passwd",
        "acl_file /srv/broker/acl",
        "persistence true",
        "persistence_location /srv/broker/state/",
        "max_queued_messages 1000000",
        "max_queued_bytes 536870912",
        "set_tcp_nodelay true",
        "pid_file /srv/broker/state/mosquitto.pid",
    ):
        assert expected in got
    # Global options come before the first listener, or they would not be global.
    assert got.index("allow_anonymous false") < got.index("listener 8883")


def test_listeners() -> None:
    paths = BrokerPaths(Path("/srv/broker"))
    got = lines(render_mosquitto_conf(BrokerSettings(hosts=("b",), bind_address="10.0.0.2"), paths))
    tls = got.index("listener 8883 10.0.0.2")
    mtls = got.index("listener 8884 10.0.0.2")
    local = got.index("listener 1883 127.0.0.1")
    assert tls < mtls < local
    assert got[tls + 1 : mtls] == [
        "certfile /srv/broker/server.pem",
        "keyfile /srv/broker/server.key",
        "cafile /srv/broker/ca.pem",
        "tls_version tlsv1.2",
        "require_certificate false",
    ]
    assert got[mtls + 5 : local] == [
        "require_certificate true",
        "use_identity_as_username true",
        "crlfile /srv/broker/crl.pem",
    ]
    # The only plain listener is on loopback.
    assert [line for line in got if line.startswith("listener")] == [
        "listener 8883 10.0.0.2",
        "listener 8884 10.0.0.2",
        "listener 1883 127.0.0.1",
    ]


def test_optional_listeners_can_be_left_out() -> None:
    settings = BrokerSettings(hosts=("b",), mtls_port=None, local_port=None, run_as_user="mq")
    got = lines(render_mosquitto_conf(settings, BrokerPaths(Path("/b"))))
    assert [line for line in got if line.startswith("listener")] == ["listener 8883"]
    assert "use_identity_as_username true" not in got
    assert "user mq" in got


def test_example_is_what_the_cli_generates() -> None:
    text = EXAMPLE.read_text()
    generated = render_mosquitto_conf(
        BrokerSettings(hosts=("broker.example",)), BrokerPaths(Path("var/hub/broker"))
    )
    assert text.endswith(generated)
    assert "password" not in "".join(lines(text)).replace("password_file", "")
