"""Broker security against a real Mosquitto running the configuration `anju broker init` wrote.

Every gateway here was provisioned as an installer would: its credentials come from its bundle,
the hub's from ``hub.env``.  MQTT 3.1.1 drops an unauthorised publish silently, so those tests
publish a marker afterwards and assert that the marker arrived and the forbidden message did not;
MQTT 5 also answers with reason code 0x87 (not authorized).  Mosquitto 2.0 grants every
SUBSCRIBE and applies read rights at delivery, so reading is tested by what is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import MQTTProtocolVersion
from pydantic import SecretStr
from typer.testing import CliRunner

from cli.gateway import gateway_app
from edge_agent import EdgeAgent, load_gateway_config
from hub import Hub, HubConfig, HubMqttSettings
from hub.broker import BrokerPaths, BundleOptions, add_gateway, reload_broker
from hub.broker.pki import create_ca, issue_client_cert, save_pair
from tests.hub.broker.brokers import (
    Client,
    GeneratedMosquitto,
    connect,
    hub_password,
    provisioned_broker,
    read_env,
)
from tests.servers import ServerNotInstalledError, ServerStartError

pytestmark = pytest.mark.integration

SITE_SECRET = "broker-security-site-secret"  # noqa: S105 - a test key, not a credential


@dataclass
class Site:
    """A running broker with gateways provisioned on it."""

    broker: GeneratedMosquitto
    paths: BrokerPaths
    bundles: Path

    @property
    def ca(self) -> Path:
        return self.paths.ca_cert

    def password(self, gateway: str) -> str:
        return read_env(self.bundles / gateway / "secrets.env")["ANJU_MQTT_PASSWORD"]

    @property
    def tls_port(self) -> int:
        return self.broker.settings.tls_port

    @property
    def mtls_port(self) -> int:
        port = self.broker.settings.mtls_port
        assert port is not None
        return port

    @property
    def local_port(self) -> int:
        port = self.broker.settings.local_port
        assert port is not None
        return port


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    bundles = tmp_path / "bundles"
    try:
        broker = provisioned_broker(tmp_path / "broker", sites=("s1", "s2"))
    except ServerNotInstalledError as exc:
        pytest.fail(str(exc), pytrace=False)
    options = BundleOptions(out_dir=bundles, site_secret=SITE_SECRET)
    for gateway, site_id, auth in (
        ("gw-a", "s1", "password"),
        ("gw-b", "s1", "password"),
        ("gw-c", "s1", "cert"),
        ("gw-x", "s2", "password"),
    ):
        add_gateway(broker.paths, gateway, site_id, options, auth=auth)  # type: ignore[arg-type]
    try:
        broker.start()
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield Site(broker, broker.paths, bundles)
    finally:
        broker.stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    started: list[Client] = []
    try:
        yield started
    finally:
        for client in started:
            with contextlib.suppress(Exception):
                client.close()


def gateway_client(
    site: Site,
    clients: list[Client],
    gateway: str,
    *,
    protocol: MQTTProtocolVersion = paho.MQTTv311,
) -> Client:
    """A gateway connected with the password of its bundle, under its agent's client id."""
    site_id = "s2" if gateway == "gw-x" else "s1"
    outcome, client = connect(
        site.tls_port,
        username=gateway,
        password=site.password(gateway),
        ca=site.ca,
        client_id=f"anju-gw-{site_id}-{gateway}",
        protocol=protocol,
    )
    assert client is not None, f"{gateway} could not connect: {outcome.reason}"
    clients.append(client)
    return client


def cert_client(site: Site, clients: list[Client], gateway: str = "gw-c") -> Client:
    directory = site.bundles / gateway
    outcome, client = connect(
        site.mtls_port,
        ca=site.ca,
        cert=directory / "client.pem",
        key=directory / "client.key",
        client_id=f"anju-gw-s1-{gateway}",
    )
    assert client is not None, f"{gateway} could not connect: {outcome.reason}"
    clients.append(client)
    return client


def hub_client(
    site: Site,
    clients: list[Client],
    *,
    protocol: MQTTProtocolVersion = paho.MQTTv311,
    local: bool = False,
) -> Client:
    """A client with the hub's credentials, subscribed to the uplink as the hub subscribes."""
    outcome, client = connect(
        site.local_port if local else site.tls_port,
        username="anju-hub",
        password=hub_password(site.paths),
        ca=None if local else site.ca,
        protocol=protocol,
    )
    assert client is not None, f"the hub could not connect: {outcome.reason}"
    clients.append(client)
    for channel in ("state", "data", "event", "health", "reply"):
        client.subscribe(f"anju/v1/+/+/{channel}")
    return client


# -- connecting and publishing --------------------------------------------------------------------


def test_a_provisioned_gateway_connects_over_tls_and_the_hub_receives_what_it_publishes(
    site: Site, clients: list[Client]
) -> None:
    hub = hub_client(site, clients)
    local_hub = hub_client(site, clients, local=True)
    gateway = gateway_client(site, clients, "gw-a")
    gateway.publish("anju/v1/s1/gw-a/data", b"by password")
    hub.wait_for("anju/v1/s1/gw-a/data", b"by password")
    local_hub.wait_for("anju/v1/s1/gw-a/data", b"by password")
    with_cert = cert_client(site, clients)
    with_cert.publish("anju/v1/s1/gw-c/event", b"by certificate")
    hub.wait_for("anju/v1/s1/gw-c/event", b"by certificate")
    # A gateway of the other site, through the same broker.
    other = gateway_client(site, clients, "gw-x")
    other.publish("anju/v1/s2/gw-x/state", b"other site")
    hub.wait_for("anju/v1/s2/gw-x/state", b"other site")


def test_the_hub_acks_and_commands_a_gateway_and_receives_its_reply(
    site: Site, clients: list[Client]
) -> None:
    hub = hub_client(site, clients)
    gw_a = gateway_client(site, clients, "gw-a")
    gw_a.subscribe("anju/v1/s1/gw-a/ack")
    gw_a.subscribe("anju/v1/s1/gw-a/cmd/+")
    hub.publish("anju/v1/s1/gw-a/ack", b"ack")
    hub.publish("anju/v1/s1/gw-a/cmd/ping", b"ping")
    gw_a.wait_for("anju/v1/s1/gw-a/ack", b"ack")
    gw_a.wait_for("anju/v1/s1/gw-a/cmd/ping", b"ping")
    gw_a.publish("anju/v1/s1/gw-a/reply", b"pong")
    hub.wait_for("anju/v1/s1/gw-a/reply", b"pong")


@pytest.mark.parametrize(
    "topic",
    [
        "anju/v1/s1/gw-b/data",  # another gateway of its site
        "anju/v1/s1/gw-b/state",  # its presence, retained
        "anju/v1/s1/gw-b/ack",  # an ack would make gw-b forget data the hub never stored
        "anju/v1/s2/gw-a/data",  # its own id under another site
        "anju/v1/s2/gw-x/event",  # a gateway of another site
        "anju/v1/s1/gw-a/ack",  # an ack to itself: only the hub acknowledges
        "anju/v1/s1/gw-a/cmd/ping",  # a command: only the hub commands
        "anju/v1/hub/state",  # the hub's presence
    ],
)
def test_a_gateway_cannot_publish_outside_its_own_uplink(
    site: Site, clients: list[Client], topic: str
) -> None:
    hub = hub_client(site, clients)
    watcher = gateway_client(site, clients, "gw-b")  # would see forged acks or commands of gw-b
    watcher.subscribe("anju/v1/s1/gw-b/ack")
    gw_a = gateway_client(site, clients, "gw-a")
    gw_a.subscribe("anju/v1/s1/gw-a/ack")
    gw_a.subscribe("anju/v1/s1/gw-a/cmd/+")
    hub.subscribe("anju/v1/hub/state")

    assert gw_a.publish(topic, b"forged") is None  # MQTT 3.1.1: a PUBACK, and silence
    gw_a.publish("anju/v1/s1/gw-a/data", b"marker")
    hub.wait_for("anju/v1/s1/gw-a/data", b"marker")
    hub.publish("anju/v1/s1/gw-a/ack", b"hub-marker")
    gw_a.wait_for("anju/v1/s1/gw-a/ack", b"hub-marker")
    for observer in (hub, watcher, gw_a):
        assert (topic, b"forged") not in observer.messages


def test_mqtt5_publishes_outside_its_uplink_are_answered_not_authorized(
    site: Site, clients: list[Client]
) -> None:
    hub = hub_client(site, clients)
    gw_a = gateway_client(site, clients, "gw-a", protocol=paho.MQTTv5)
    for topic in ("anju/v1/s1/gw-b/data", "anju/v1/s2/gw-a/data", "anju/v1/s1/gw-b/cmd/x"):
        reason = gw_a.publish(topic, b"forged")
        assert reason is not None
        assert reason.value == 0x87, f"{topic}: {reason}"
    reason = gw_a.publish("anju/v1/s1/gw-a/data", b"allowed")
    assert reason is not None
    assert reason.value in (0x00, 0x10), reason  # success, or no matching subscribers
    hub.wait_for("anju/v1/s1/gw-a/data", b"allowed")
    assert [p for _, p in hub.messages if p == b"forged"] == []


# -- reading ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [paho.MQTTv311, paho.MQTTv5])
def test_a_gateway_cannot_read_another_gateways_commands_acks_or_data(
    site: Site, clients: list[Client], protocol: MQTTProtocolVersion
) -> None:
    hub = hub_client(site, clients)
    gw_a = gateway_client(site, clients, "gw-a", protocol=protocol)
    gw_b = gateway_client(site, clients, "gw-b")
    gw_b.subscribe("anju/v1/s1/gw-b/cmd/+")
    for stolen in ("anju/v1/s1/gw-b/cmd/+", "anju/v1/s1/gw-b/ack", "anju/v1/s1/+/data", "#"):
        for code in gw_a.subscribe(stolen):
            # Mosquitto 2.0 grants the SUBACK and filters at delivery; a refusal is fine too.
            assert code.value in (0x00, 0x01, 0x87), f"{stolen}: {code}"
    gw_a.subscribe("anju/v1/s1/gw-a/cmd/+")

    hub.publish("anju/v1/s1/gw-b/cmd/restart", b"for gw-b")
    hub.publish("anju/v1/s1/gw-b/ack", b"ack for gw-b")
    gw_b.publish("anju/v1/s1/gw-b/data", b"gw-b data")
    gw_b.wait_for("anju/v1/s1/gw-b/cmd/restart", b"for gw-b")
    hub.wait_for("anju/v1/s1/gw-b/data", b"gw-b data")
    hub.publish("anju/v1/s1/gw-a/cmd/ping", b"marker")
    gw_a.wait_for("anju/v1/s1/gw-a/cmd/ping", b"marker")
    # MQTT 5 may deliver one copy per matching subscription ("#" and cmd/+): compare sets.
    assert set(gw_a.messages) == {("anju/v1/s1/gw-a/cmd/ping", b"marker")}


# -- who may connect ------------------------------------------------------------------------------


def test_anonymous_clients_cannot_connect_on_any_listener(site: Site) -> None:
    for port, ca in ((site.tls_port, site.ca), (site.local_port, None)):
        outcome, client = connect(port, ca=ca)
        assert client is None
        assert not outcome.connected
        assert "Not authorized" in outcome.reason, outcome.reason
        outcome, client = connect(port, username="", password=None, ca=ca)
        assert client is None
        assert not outcome.connected
    outcome, client = connect(site.mtls_port, ca=site.ca)
    assert client is None
    assert not outcome.connected


def test_wrong_credentials_cannot_connect(site: Site, tmp_path: Path) -> None:
    attempts = [
        ("gw-a", site.password("gw-a") + "x"),
        ("gw-a", site.password("gw-b")),
        ("nobody", site.password("gw-a")),
        ("gw-a", hub_password(site.paths)),
        ("gw-c", "any"),  # a certificate gateway has no password at all
    ]
    for username, password in attempts:
        outcome, client = connect(site.tls_port, username=username, password=password, ca=site.ca)
        assert client is None, username
        assert "Not authorized" in outcome.reason, (username, outcome)
    # The TLS listeners speak only TLS.
    outcome, client = connect(site.tls_port, username="gw-a", password=site.password("gw-a"))
    assert client is None
    assert not outcome.connected
    # A client certificate from another CA, even for the right name, is refused.
    stranger = create_ca("s1")
    forged = issue_client_cert(stranger, "gw-c", site="s1")
    save_pair(forged, tmp_path / "forged.pem", tmp_path / "forged.key")
    outcome, client = connect(
        site.mtls_port, ca=site.ca, cert=tmp_path / "forged.pem", key=tmp_path / "forged.key"
    )
    assert client is None
    assert not outcome.connected
    # And a password gateway cannot use the certificate listener with its password.
    outcome, client = connect(
        site.mtls_port, username="gw-a", password=site.password("gw-a"), ca=site.ca
    )
    assert client is None
    assert not outcome.connected


def revoke(site: Site, gateway: str) -> str:
    result = CliRunner().invoke(
        gateway_app,
        [
            "revoke",
            gateway,
            "--broker-dir",
            str(site.paths.root),
            "--config",
            str(site.paths.root / "no-hub.yaml"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_revoked_password_gateway_is_disconnected_and_cannot_connect_again(
    site: Site, clients: list[Client]
) -> None:
    gw_a = gateway_client(site, clients, "gw-a")
    gw_b = gateway_client(site, clients, "gw-b")
    out = revoke(site, "gw-a")
    assert f"reloaded (pid {site.broker.pid})" in out
    gw_a.wait_disconnected()
    outcome, client = connect(
        site.tls_port, username="gw-a", password=site.password("gw-a"), ca=site.ca
    )
    assert client is None
    assert "Not authorized" in outcome.reason
    # Everyone else is untouched by the reload.
    assert gw_b.disconnects == []
    hub = hub_client(site, clients)
    gw_b.publish("anju/v1/s1/gw-b/data", b"still here")
    hub.wait_for("anju/v1/s1/gw-b/data", b"still here")


def test_a_revoked_certificate_cannot_connect_and_its_open_session_loses_its_rights(
    site: Site, clients: list[Client]
) -> None:
    hub = hub_client(site, clients)
    connected = cert_client(site, clients)
    revoke(site, "gw-c")
    directory = site.bundles / "gw-c"
    # Mosquitto applies the reload on its next turn after the SIGHUP.
    deadline = time.monotonic() + 5
    while True:
        outcome, client = connect(
            site.mtls_port, ca=site.ca, cert=directory / "client.pem", key=directory / "client.key"
        )
        if client is None:
            break
        client.close()
        assert time.monotonic() < deadline, "the revoked certificate is still accepted"
        time.sleep(0.1)
    assert not outcome.connected
    # Mosquitto keeps an open TLS session, but the ACL no longer lets it publish.
    if not connected.disconnects:
        connected.publish("anju/v1/s1/gw-c/event", b"after revocation")
    gw_b = gateway_client(site, clients, "gw-b")
    gw_b.publish("anju/v1/s1/gw-b/data", b"marker")
    hub.wait_for("anju/v1/s1/gw-b/data", b"marker")
    assert ("anju/v1/s1/gw-c/event", b"after revocation") not in hub.messages


# -- rotation keeps the gateway's queue ----------------------------------------------------------

HUB_SITE: dict[str, Any] = {
    "site": {"id": "s1", "name": "Rotation Garden", "timezone": "Asia/Shanghai"},
    "grids": [{"id": "north", "name": "North", "buildings": [{"id": "3", "name": "Building 3"}]}],
    "gateways": [{"id": "gw-r"}],
    "devices": [
        {"id": f"th-{n}", "gateway": "gw-r", "kind": "temp_humidity", "building": "3"}
        for n in range(4)
    ],
}
TEMPLATE: dict[str, Any] = {
    "site": "s1",
    "gateway": "gw-r",
    "mqtt": {"keepalive_s": 10, "reconnect_max_s": 1},
    "batch": {"max_readings": 50, "max_delay_s": 0.2},
    "health_interval_s": 1,
    "resend_after_s": 2,
    "drivers": [
        {
            "type": "simulated",
            "id": "sim",
            "seed": 5,
            "interval_s": 1,
            "devices": [{"id": f"th-{n}", "kind": "temp_humidity"} for n in range(4)],
        }
    ],
}


def install(archive: Path, install_dir: Path, monkeypatch: pytest.MonkeyPatch) -> EdgeAgent:
    """What the enrol command does with the archive, then the agent systemd would start."""
    install_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(install_dir, filter="data")
    for key, value in read_env(install_dir / "secrets.env").items():
        monkeypatch.setenv(key, value)
    return EdgeAgent(load_gateway_config(install_dir / "gateway.yaml"))


def unacked_seqs(queue_file: Path) -> list[int]:
    with contextlib.closing(sqlite3.connect(queue_file)) as conn:
        return [row[0] for row in conn.execute("SELECT seq FROM message ORDER BY seq")]


async def wait_until(predicate: Any, what: str, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def stopped(task: asyncio.Task[None], what: str) -> None:
    try:
        async with asyncio.timeout(20):
            await task
    except TimeoutError:
        raise AssertionError(f"{what} did not stop") from None


async def test_a_rotated_gateway_keeps_its_queued_data_and_resumes(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "gw-r.yaml"
    template.write_text(yaml.safe_dump(TEMPLATE))
    install_dir = tmp_path / "gateway" / "etc-anju"
    data_dir = tmp_path / "gateway" / "var-lib-anju-edge"
    options = BundleOptions(
        out_dir=tmp_path / "rotation-bundles",
        template=template,
        install_dir=PurePosixPath(install_dir),
        data_dir=PurePosixPath(data_dir),
        site_secret=SITE_SECRET,
    )
    first = add_gateway(site.paths, "gw-r", "s1", options)
    assert reload_broker(pid_file=site.paths.pid_file) == site.broker.pid
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(HUB_SITE))
    hub = Hub(
        HubConfig(
            site_file=site_file,
            data_dir=tmp_path / "hub",
            mqtt=HubMqttSettings(
                host="127.0.0.1",
                port=site.tls_port,
                username="anju-hub",
                password=SecretStr(hub_password(site.paths)),
                tls_ca_file=site.ca,
            ),
        ),
        rules=None,
    )
    hub_task = asyncio.create_task(hub.run())
    try:
        async with asyncio.timeout(10):
            await hub.mqtt.wait_connected()
        old_password = read_env(first.bundle.directory / "secrets.env")["ANJU_MQTT_PASSWORD"]
        agent = install(first.bundle.archive, install_dir, monkeypatch)
        task = asyncio.create_task(agent.run())
        await asyncio.wait_for(agent.wait_connected(), 10)

        def acked() -> int:
            status = hub.ingestor.gateways.get("gw-r")
            return -1 if status is None else status.acked

        await wait_until(lambda: acked() >= 2, "first acks")

        # Rotate while the agent runs: the reload shuts the old password out at once.
        result = CliRunner().invoke(
            gateway_app,
            [
                *("rotate", "gw-r", "--broker-dir", str(site.paths.root)),
                *("--config", str(tmp_path / "no-hub.yaml")),
                *("--out", str(options.out_dir), "--template", str(template)),
                *("--install-dir", str(install_dir), "--data-dir", str(data_dir)),
            ],
            env={"ANJU_SITE_SECRET": SITE_SECRET},
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        assert "reloaded (pid" in result.stdout
        await wait_until(lambda: not agent.connected, "the old credentials to be shut out")
        acked_before = acked()
        # The agent keeps reading its devices and queueing while the broker refuses it.
        await wait_until(lambda: agent._queue.last_seq >= acked_before + 3, "data queued offline")
        assert not agent.connected, "the old password was accepted again"
        agent.stop()
        await stopped(task, "the old agent")
        queue_file = data_dir / "s1.gw-r.queue.sqlite3"
        queued = unacked_seqs(queue_file)
        assert queued, "nothing was queued while the gateway was shut out"
        assert max(queued) > acked_before
        outcome, client = connect(site.tls_port, username="gw-r", password=old_password, ca=site.ca)
        assert client is None
        assert "Not authorized" in outcome.reason

        # Install the new bundle over the old one, as the enrol command does; same queue.
        agent = install(options.out_dir / "gw-r.tar.gz", install_dir, monkeypatch)
        assert agent.config.mqtt.password is not None
        assert agent.config.mqtt.password.get_secret_value() != old_password
        task = asyncio.create_task(agent.run())
        await asyncio.wait_for(agent.wait_connected(), 10)
        await wait_until(
            lambda: acked() >= max(queued),
            "the hub to acknowledge what was queued before the rotation",
        )
        agent.stop()
        await stopped(task, "the new agent")
        left = unacked_seqs(queue_file)
        assert not set(queued) & set(left), f"still unacknowledged after rotation: {left}"
        assert hub.ingestor.counters["quarantined"] == 0
    finally:
        hub.stop()
        await stopped(hub_task, "the hub")
    shutil.rmtree(install_dir, ignore_errors=True)
