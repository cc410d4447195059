"""Sessions and liveness with real processes: a killed gateway's devices become "unknown"."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from hub import Hub, HubConfig, HubMqttSettings
from hub.config import MetricsSettings
from hub.ingest import DeviceState
from tests.integration.test_spine import SITE
from tests.servers import Mosquitto, free_port

pytestmark = pytest.mark.integration


def start_edge(config_file: Path) -> subprocess.Popen[bytes]:
    anju = Path(sys.executable).with_name("anju")
    env = {**os.environ, "ANJU_SITE_SECRET": "liveness-test-site-secret"}
    return subprocess.Popen(
        [str(anju), "edge", "run", "--config", str(config_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def until(condition: Callable[[], bool], timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


def metric(url: str, name: str) -> float:
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


async def test_killed_gateway_goes_offline_and_its_devices_unknown(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(SITE), encoding="utf-8")
    metrics_port = free_port()
    hub = Hub(
        HubConfig(
            site_file=site_file,
            data_dir=tmp_path / "hub",
            mqtt=HubMqttSettings(host=mosquitto.host, port=mosquitto.port),
            metrics=MetricsSettings(port=metrics_port),
        )
    )
    config_file = tmp_path / "gw-north.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "site": "sunrise",
                "gateway": "gw-north",
                "data_dir": str(tmp_path / "edge"),
                "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "keepalive_s": 5},
                "privacy": {"site_secret": "${ANJU_SITE_SECRET}"},
                "batch": {"max_delay_s": 0.2},
                "drivers": [
                    {
                        "type": "simulated",
                        "id": "sim",
                        "interval_s": 1,
                        "devices": [{"id": "b3-2-201-th", "kind": "temp_humidity"}],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    status = hub.ingestor.gateways["gw-north"]
    hub_task = asyncio.create_task(hub.run())
    edge = start_edge(config_file)
    try:
        await until(lambda: status.online and status.acked > 0)
        assert hub.ingestor.device_state("b3-2-201-th") is DeviceState.ONLINE
        assert (
            await asyncio.to_thread(metric, metrics_url, 'anju_gateway_online{gateway="gw-north"}')
            == 1
        )
        first_session, acked_before = status.session, status.acked

        edge.send_signal(signal.SIGKILL)
        edge.wait(5)
        # The broker publishes the Last Will at once: the hub cannot know the device's state.
        await until(lambda: not status.online)
        await hub.ingestor.wait_idle()
        stored_before_kill = status.acked
        assert hub.ingestor.device_state("b3-2-201-th") is DeviceState.UNKNOWN
        assert (
            await asyncio.to_thread(metric, metrics_url, 'anju_gateway_online{gateway="gw-north"}')
            == 0
        )

        # It comes back with a new session; its seqs go on from where they were, never reused.
        edge = start_edge(config_file)
        await until(lambda: status.online and status.acked > acked_before)
        assert status.session != first_session
        assert hub.ingestor.device_state("b3-2-201-th") is DeviceState.ONLINE
        # A resend of what was stored but whose acknowledgement died with the process is
        # dropped as a duplicate; a reused seq would show up as a duplicate of a newer one.
        duplicates = [e for e in await hub.store.quarantine() if e.field == "seq"]
        assert all(orjson.loads(e.payload)["seq"] <= stored_before_kill for e in duplicates)

        # A clean stop is announced too, though a clean disconnect suppresses the Last Will.
        edge.send_signal(signal.SIGTERM)
        assert edge.wait(10) == 0
        await until(lambda: not status.online)
        await hub.ingestor.wait_idle()
        records = await hub.store.gateway_records()
        assert records[0].online is False
    finally:
        if edge.poll() is None:
            edge.kill()
        hub.stop()
        await hub_task
