"""``anju alerts …`` and ``anju status`` against a running hub's API (real broker, real SQLite)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from cli.main import app
from hub import AlertingSettings, Hub, HubConfig, HubMqttSettings, NotifierSettings
from hub.config import ApiSettings
from hub.errors import ConfigError
from hub.lifecycle import SystemTransition
from tests.servers import Mosquitto, free_port

pytestmark = pytest.mark.integration

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
TOKEN = "operator-token-for-tests"  # noqa: S105 - a test value


def _config(tmp_path: Path, broker: Mosquitto, port: int) -> HubConfig:
    return HubConfig(
        site_file=CONFIG_DIR / "site.yaml",
        data_dir=tmp_path / "hub",
        mqtt=HubMqttSettings(host=broker.host, port=broker.port, client_id="anju-hub-cli"),
        notifiers=NotifierSettings(log=False),
        alerting=AlertingSettings.model_validate({"group_wait": 0, "group_interval": 0}),
        api=ApiSettings(port=port, token=SecretStr(TOKEN)),
    )


@contextlib.asynccontextmanager
async def running(hub: Hub) -> AsyncIterator[Hub]:
    task = asyncio.create_task(hub.run())
    try:
        async with asyncio.timeout(10):
            await hub.started.wait()
            await hub.mqtt.wait_connected()
        yield hub
    finally:
        hub.stop()
        await task


def _leak(device: str, ts_ms: int, state: str = "firing") -> SystemTransition:
    return SystemTransition(
        rule_id="leak",
        device=device,
        state=state,
        ts_ms=ts_ms,
        since_ms=ts_ms,
        severity="major",
        issue_class="ordinary",
        summary="Water leak",
        message=f"Water at {device}",
        labels={"grid": "north", "grid_name": "North grid", "building": "1", "place": "Pump room"},
    )


async def _cli(args: list[str], *, command: Any = None) -> Result:
    if command is None:
        args = ["alerts", *args]
    return await asyncio.to_thread(CliRunner().invoke, app, args)


async def test_operators_list_show_assign_comment_silence_and_resolve(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    port = free_port()
    hub = Hub(_config(tmp_path, mosquitto, port))
    api = ["--hub", f"http://127.0.0.1:{port}", "--token", TOKEN]
    async with running(hub):
        now = hub.alerts.now_ms()
        hub.alerts.submit([_leak("b1-pump-leak", now)])
        await hub.alerts.wait_idle()

        listed = await _cli(["list", "--json", *api])
        assert listed.exit_code == 0, listed.output
        alerts = orjson.loads(listed.output)
        assert [a["subject"] for a in alerts] == ["b1-pump-leak"]
        assert alerts[0]["recipients"] == ["Wang Fang (grid_worker)"]
        alert_id = alerts[0]["id"]

        for args in (
            ["assign", alert_id[:6], "wang-fang", "--by", "security-room"],
            ["comment", alert_id[:6], "valve closed", "--by", "wang-fang"],
        ):
            result = await _cli([*args, *api])
            assert result.exit_code == 0, result.output

        shown = orjson.loads((await _cli(["show", alert_id[:6], "--json", *api])).output)
        assert shown["assignee"] == "wang-fang"
        assert shown["comments"][0]["text"] == "valve closed"
        assert {(d["channel"], d["status"]) for d in shown["deliveries"]} == set()  # no channels

        # A silence by labels holds a new alert back until it is lifted.
        silenced = await _cli(
            [
                "silence",
                "--match",
                "building=1",
                "--for",
                "1h",
                "-m",
                "pump service",
                "--json",
                *api,
            ]
        )
        assert silenced.exit_code == 0, silenced.output
        silence_id = orjson.loads(silenced.output)["id"]
        hub.alerts.submit([_leak("b1-pump-th", now + 1000)])
        await hub.alerts.wait_idle()
        second = hub.alerts.book.active[("leak", "b1-pump-th")]
        assert second.held == f"silenced:{silence_id}"
        listing = await _cli(["silences", "--json", *api])
        assert orjson.loads(listing.output)[0]["match"] == {"building": ["1"]}
        assert (await _cli(["unsilence", silence_id, *api])).exit_code == 0
        released = hub.alerts.book.active[("leak", "b1-pump-th")]
        assert released.held is None
        assert released.notified == ["wang-fang"]

        status = await _cli(["status", "--json", *api], command=app)
        assert status.exit_code == 0, status.output
        fleet = orjson.loads(status.output)
        assert fleet["open_alerts_by_grid"] == {"north": {"firing": 2}}
        assert {g["id"] for g in fleet["gateways"]} == {"gw-north", "gw-south", "gw-gate"}

        resolved = await _cli(["resolve", alert_id[:6], "--by", "wang-fang", *api])
        assert resolved.exit_code == 0, resolved.output
        gone = await _cli(["ack", alert_id[:6], "--by", "x", *api])
        assert gone.exit_code == 1
        assert "no active alert" in gone.output

        refused = await _cli(["list", "--hub", f"http://127.0.0.1:{port}", "--token", "wrong"])
        assert refused.exit_code == 1
        assert "refused the token" in refused.output

    history = await _cli(["list", *api])
    assert history.exit_code == 1
    assert "cannot reach the hub" in history.output


def test_an_api_off_loopback_needs_a_token(tmp_path: Path, mosquitto: Mosquitto) -> None:
    config = _config(tmp_path, mosquitto, free_port()).model_copy(
        update={"api": ApiSettings(host="0.0.0.0", port=8470)}  # noqa: S104
    )
    with pytest.raises(ConfigError, match="needs a token"):
        Hub(config)
