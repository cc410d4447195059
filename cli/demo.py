"""`anju demo`: a whole site on this machine: broker, hub on the embedded store, three gateways.

The scenario plays a night: it starts at 01:59:30 local time (in the past, so every timestamp
is genuine), with smoke in a flat, a forced gate and a burst of unknown cards.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from cli.broker import DemoBroker, start_demo_broker
from device_drivers import ScaledClock
from device_drivers.simulated import DeviceKind, Scenario, load_scenario
from edge_agent import EdgeAgent, parse_gateway_config
from hub import (
    AlertingSettings,
    Hub,
    HubConfig,
    HubMqttSettings,
    NotifierSettings,
    Registry,
    WebhookSettings,
)
from hub.config import ApiSettings

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
SCENARIO_START = dt.time(1, 59, 30)


def scenario_epoch(timezone: str, duration_s: float, speed: float, now: dt.datetime) -> int:
    """Start of the demo night: the latest 01:59:30 local such that it all lies in the past."""
    local_now = now.astimezone(ZoneInfo(timezone))
    start = dt.datetime.combine(local_now.date(), SCENARIO_START, tzinfo=local_now.tzinfo)
    while start + dt.timedelta(seconds=duration_s * speed) > local_now:
        start -= dt.timedelta(days=1)
    return int(start.timestamp() * 1000)


def place_lookup(registry: Registry) -> Callable[[str, DeviceKind], str | None]:
    """Resolve ``building/floor/unit`` places of a scenario to device ids."""

    def lookup(place: str, kind: DeviceKind) -> str | None:
        parts = place.split("/")
        building = parts[0]
        floor = int(parts[1]) if len(parts) > 1 and parts[1].lstrip("-").isdigit() else None
        unit = parts[2] if len(parts) > 2 else None
        return registry.find_device(building=building, floor=floor, unit=unit, kind=str(kind))

    return lookup


def gateway_configs(
    config_dir: Path, *, host: str, port: int, scenario: Scenario, data_dir: Path
) -> list[dict[str, Any]]:
    """The example gateway configs, pointed at the demo broker and given the scenario."""
    configs = []
    scenario_data = scenario.model_dump(mode="json", exclude_none=True)
    for path in sorted((config_dir / "gateways").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw["mqtt"] = {**raw.get("mqtt", {}), "host": host, "port": port}
        raw["data_dir"] = str(data_dir)
        for driver in raw.get("drivers", []):
            if driver.get("type") == "simulated":
                driver["scenario"] = scenario_data
        configs.append(raw)
    return configs


class Demo:
    """Runs the demo site until ``duration_s`` has passed."""

    def __init__(
        self,
        *,
        config_dir: Path = DEFAULT_CONFIG_DIR,
        duration_s: float = 60.0,
        speed: float = 1.0,
        webhook_url: str | None = None,
        run_dir: Path | None = None,
        alerting: AlertingSettings | None = None,
        api_port: int = 0,
    ) -> None:
        self.config_dir = config_dir
        self.duration_s = duration_s
        self.speed = speed
        self.webhook_url = webhook_url
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="anju-demo-"))
        self.alerting = alerting or AlertingSettings()
        self.api_port = api_port
        self.broker: DemoBroker | None = None
        self.hub: Hub | None = None
        self.agents: list[EdgeAgent] = []
        self.summary: dict[str, Any] = {}
        self._online: dict[str, bool] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """End the night early: the site stops as it would at the end of ``duration_s``."""
        self._stopping.set()

    async def run(self, on_tick: Callable[[Demo], None] | None = None) -> dict[str, Any]:
        """Start everything, play the scenario, stop everything, return the summary."""
        # Each demo run gets its own pseudonymisation key, passed the way a real site would.
        os.environ.setdefault("ANJU_SITE_SECRET", secrets.token_hex(16))
        if self._stopping.is_set():
            return self.summary
        self.broker = await start_demo_broker(self.run_dir)
        try:
            await self._run_site(on_tick)
        finally:
            await self.broker.aclose()
        return self.summary

    async def _run_site(self, on_tick: Callable[[Demo], None] | None) -> None:
        assert self.broker is not None  # noqa: S101 - set by run()
        webhooks = (WebhookSettings(name="demo", url=self.webhook_url),) if self.webhook_url else ()
        hub_config = HubConfig(
            site_file=self.config_dir / "site.yaml",
            rules=(self.config_dir / "rules",),
            data_dir=self.run_dir / "hub",
            mqtt=HubMqttSettings(host=self.broker.host, port=self.broker.port),
            notifiers=NotifierSettings(log=True, webhooks=webhooks),
            alerting=self.alerting,
            api=ApiSettings(port=self.api_port),
        )
        hub = self.hub = Hub(hub_config)
        timezone = hub.registry.site.site.timezone
        epoch = scenario_epoch(timezone, self.duration_s, self.speed, dt.datetime.now(dt.UTC))
        scenario = load_scenario(self.config_dir / "scenarios" / "night-fire.yaml")
        scenario = scenario.resolve(place_lookup(hub.registry)).model_copy(
            update={"epoch_ms": epoch}
        )
        clock = ScaledClock(epoch, self.speed)
        self.agents = [
            EdgeAgent(
                parse_gateway_config(raw, source=f"gateway {raw.get('gateway')}"), clock=clock
            )
            for raw in gateway_configs(
                self.config_dir,
                host=self.broker.host,
                port=self.broker.port,
                scenario=scenario,
                data_dir=self.run_dir / "edge",
            )
        ]
        async with asyncio.TaskGroup() as tg:
            hub_task = tg.create_task(hub.run(), name="demo.hub")
            async with asyncio.timeout(10):
                await hub.mqtt.wait_connected()
            agent_tasks = [
                tg.create_task(agent.run(), name=f"demo.agent[{agent.config.gateway}]")
                for agent in self.agents
            ]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.duration_s
            while loop.time() < deadline and not self._stopping.is_set():
                if on_tick is not None:
                    on_tick(self)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(0.5, max(0.0, deadline - loop.time()))):
                        await self._stopping.wait()
            # Presence as it was while the site ran (stopping announces every gateway offline).
            self._online = {gw: s.online for gw, s in hub.ingestor.gateways.items()}
            for agent in self.agents:
                agent.stop()
            await asyncio.gather(*agent_tasks)
            # Give the last batches a moment to be stored and evaluated.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    await hub.ingestor.wait_idle()
                    hub.rules.evaluate()
                    await hub.alerts.wait_idle()
            self.summary = await self._summarise(hub, epoch)
            if on_tick is not None:
                on_tick(self)
            hub.stop()
            await hub_task

    async def _summarise(self, hub: Hub, epoch: int) -> dict[str, Any]:
        counters = hub.ingestor.counters
        alerts = await hub.alert_store.alerts()
        assert self.broker is not None  # noqa: S101
        return {
            "site": hub.registry.site_id,
            "duration_s": self.duration_s,
            "speed": self.speed,
            "scenario_start": dt.datetime.fromtimestamp(epoch / 1000, tz=dt.UTC).isoformat(),
            "broker": self.broker.kind,
            "store": hub.sink.name,
            "run_dir": str(self.run_dir),
            "readings": counters["readings"],
            "events": counters["events"],
            "quarantined": counters["quarantined"],
            "duplicates": counters["duplicates"],
            "acks": counters["acks"],
            "gateways": {
                gw: {"online": self._online.get(gw, False), "acked_seq": s.acked}
                for gw, s in sorted(hub.ingestor.gateways.items())
            },
            "alerts": [
                {
                    "id": a.id,
                    "rule": a.rule_id,
                    "severity": a.severity,
                    "issue_class": a.issue_class,
                    "state": a.status.value,
                    "device": a.subject,
                    "place": a.labels.get("place"),
                    "grid": a.labels.get("grid_name"),
                    "building": a.labels.get("building") or None,
                    "floor": a.labels.get("floor") or None,
                    "unit": a.labels.get("unit") or None,
                    "message": a.message,
                    "recipients": list(hub.alerts.recipients(a)),
                }
                for a in sorted(alerts, key=lambda a: a.started_ms)
                if a.firing_ms is not None
            ],
        }
