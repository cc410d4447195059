"""The server fixtures are real: Mosquitto routes QoS 1 messages, VictoriaMetrics stores what
``influxdb-client`` writes, the webhook receiver records real HTTP requests."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests import servers
from tests.servers import Mosquitto, VictoriaMetrics, WebhookReceiver

pytestmark = pytest.mark.integration


# -- MQTT helpers


@contextmanager
def mqtt_client(
    broker: Mosquitto, client_id: str, subscribe: str | None = None
) -> Iterator[tuple[mqtt.Client, queue.Queue[mqtt.MQTTMessage]]]:
    """A connected paho client (its network loop in a thread) and the queue of its messages."""
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)

    def on_connect(
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        assert not reason_code.is_failure, reason_code
        if subscribe is None:
            ready.set()
        else:
            client.subscribe(subscribe, qos=1)

    def on_subscribe(
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        assert not any(code.is_failure for code in reason_codes), reason_codes
        ready.set()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        received.put(message)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    try:
        assert ready.wait(10), f"no CONNACK/SUBACK from {broker!r}:\n{broker.log_text()}"
        yield client, received
    finally:
        client.disconnect()
        client.loop_stop()


def publish_qos1(broker: Mosquitto, topic: str, payload: bytes, retain: bool = False) -> None:
    with mqtt_client(broker, f"pub-{time.monotonic_ns()}") as (client, _):
        info = client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=10)
        assert info.is_published()


# -- Mosquitto


def test_mosquitto_routes_a_qos1_message(mosquitto: Mosquitto) -> None:
    with mqtt_client(mosquitto, "sub", subscribe="anju/v1/s1/+/data") as (_, received):
        publish_qos1(mosquitto, "anju/v1/s1/gw1/data", b'{"v": 1}')
        message = received.get(timeout=10)

    assert message.topic == "anju/v1/s1/gw1/data"
    assert message.payload == b'{"v": 1}'
    assert message.qos == 1
    assert mosquitto.host == "127.0.0.1"
    assert "running" in mosquitto.log_text()


def test_mosquitto_restart_keeps_the_port(mosquitto: Mosquitto) -> None:
    port = mosquitto.port
    first_pid = mosquitto.pid

    mosquitto.restart()
    assert (mosquitto.port, mosquitto.is_running) == (port, True)
    assert mosquitto.pid != first_pid

    mosquitto.kill()
    assert not mosquitto.is_running
    with pytest.raises(OSError), socket.create_connection((mosquitto.host, port), timeout=1):
        pass

    mosquitto.start()
    assert mosquitto.port == port
    with mqtt_client(mosquitto, "after-restart", subscribe="t/#") as (_, received):
        publish_qos1(mosquitto, "t/1", b"x")
        assert received.get(timeout=10).payload == b"x"
    assert mosquitto.log_text().count("running") == 3


def test_mosquitto_persistence_and_extra_config(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    broker = mosquitto_factory(persistence=True, extra_config=["max_keepalive 60"])
    assert "max_keepalive 60" in broker.config_path.read_text()
    publish_qos1(broker, "anju/v1/hub/state", b"online", retain=True)

    broker.restart()  # graceful: the retained message is saved and loaded again

    with mqtt_client(broker, "late", subscribe="anju/v1/hub/state") as (_, received):
        message = received.get(timeout=10)
    assert (message.payload, message.retain) == (b"online", True)


def test_a_missing_binary_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ANJU_MOSQUITTO", str(tmp_path / "nowhere"))
    with pytest.raises(servers.ServerNotInstalledError, match="ANJU_MOSQUITTO"):
        Mosquitto(tmp_path)
    monkeypatch.delenv("ANJU_MOSQUITTO")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(servers.ServerNotInstalledError, match="make servers"):
        servers.find_binary("victoria-metrics", "ANJU_UNSET_FOR_TEST")


# -- VictoriaMetrics


def test_influxdb_client_writes_reach_victoria_metrics(victoria: VictoriaMetrics) -> None:
    now_ms = int(time.time() * 1000)
    with (
        InfluxDBClient(url=victoria.url, token="unused", org="anju") as client,  # noqa: S106
        client.write_api(write_options=SYNCHRONOUS) as write_api,
    ):
        write_api.write(
            bucket="anju",
            record=[
                f"reading,site=s1,device=d1 temperature=21.5 {now_ms - 1000}",
                f"reading,site=s1,device=d1 temperature=22.25,humidity=40i {now_ms}",
            ],
            write_precision=WritePrecision.MS,
        )

    # The measurement and the field make the name, tags become labels; no label for the bucket.
    assert victoria.export('{__name__=~"reading_.*"}') == [
        {
            "metric": {"__name__": "reading_humidity", "device": "d1", "site": "s1"},
            "values": [40],
            "timestamps": [now_ms],
        },
        {
            "metric": {"__name__": "reading_temperature", "device": "d1", "site": "s1"},
            "values": [21.5, 22.25],
            "timestamps": [now_ms - 1000, now_ms],
        },
    ]
    assert victoria.series_count('{__name__=~"reading_.*", site="s1"}') == 2
    assert victoria.query('reading_temperature{device="d1"}')[0]["value"][1] == "22.25"


def test_v2_write_answers_204_and_points_are_visible_after_a_flush(
    victoria: VictoriaMetrics,
) -> None:
    now_ms = int(time.time() * 1000)
    response = victoria.write_lines([f"door,site=s1,door=north open=1 {now_ms}"])
    assert response.status_code == httpx.codes.NO_CONTENT

    # One flush makes the new series visible to the very next export, with no waiting.
    assert victoria.export("door_open")[0]["timestamps"] == [now_ms]

    # The v1 endpoint's ?db= becomes a `db` label.
    httpx.post(
        f"{victoria.url}/write", params={"db": "anju", "precision": "ms"}, content=b"v1 x=1"
    ).raise_for_status()
    assert victoria.wait_for("v1_x")[0]["metric"] == {"__name__": "v1_x", "db": "anju"}


def test_victoria_metrics_keeps_data_across_a_restart(victoria: VictoriaMetrics) -> None:
    victoria.write_lines(["kept,site=s1 v=1 1700000000000"])  # 2023: old points are kept too
    port = victoria.port

    victoria.restart()

    assert victoria.port == port
    assert victoria.export("kept_v")[0]["values"] == [1]
    with pytest.raises(TimeoutError, match="never_written"):
        victoria.wait_for("never_written", timeout=0.2)


# -- webhook receiver


def test_webhook_receiver_records_posts_and_answers_as_told(
    webhook_receiver: WebhookReceiver,
) -> None:
    alert = {"status": "firing", "alerts": [{"labels": {"alertname": "smoke"}}]}
    response = httpx.post(
        f"{webhook_receiver.url}/hook/wecom?key=k1", json=alert, headers={"X-Test": "1"}
    )
    assert response.status_code == httpx.codes.OK

    [request] = webhook_receiver.wait_for(lambda requests: len(requests) == 1)
    assert (request.method, request.path, request.query) == ("POST", "/hook/wecom", {"key": ["k1"]})
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-test"] == "1"
    assert request.json == alert

    webhook_receiver.set_responses([503])
    webhook_receiver.status = 500
    codes = [httpx.post(webhook_receiver.url, content=b"not json").status_code for _ in range(2)]
    assert codes == [503, 500]
    assert [r.json for r in webhook_receiver.requests] == [alert, None, None]


def test_influxdb_client_request_shape(webhook_receiver: WebhookReceiver) -> None:
    """What influxdb-client sends, as a receiver that answers 204 like InfluxDB sees it."""
    webhook_receiver.status = 204
    webhook_receiver.response_body = b""
    with (
        InfluxDBClient(url=webhook_receiver.url, token="unused", org="anju") as client,  # noqa: S106
        client.write_api(write_options=SYNCHRONOUS) as write_api,
    ):
        write_api.write(bucket="anju", record="m,a=b f=1 1", write_precision=WritePrecision.MS)

    [request] = webhook_receiver.requests
    assert request.path == "/api/v2/write"
    assert request.query == {"org": ["anju"], "bucket": ["anju"], "precision": ["ms"]}
    assert request.headers["authorization"] == "Token unused"
    assert request.body == b"m,a=b f=1 1"


def test_session_servers_serve(
    mosquitto_session: Mosquitto, victoria_session: VictoriaMetrics
) -> None:
    with mqtt_client(mosquitto_session, "session", subscribe="session/#") as (_, received):
        publish_qos1(mosquitto_session, "session/1", b"s")
        assert received.get(timeout=10).payload == b"s"
    victoria_session.write_lines(["session_probe v=1"])
    assert victoria_session.series_count("session_probe_v") == 1


def test_a_server_that_cannot_start_reports_its_log(mosquitto: Mosquitto, tmp_path: Path) -> None:
    clash = Mosquitto(tmp_path / "clash", port=mosquitto.port, start_timeout=5)
    with pytest.raises(servers.ServerStartError, match="exited with code") as failure:
        clash.start()
    assert "Address already in use" in str(failure.value)
    assert not clash.is_running
