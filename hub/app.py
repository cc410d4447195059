"""The hub daemon: wires the registry, ingest, storage, rules, alerts and the broker together."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import start_http_server

from hub.alert_store import AlertStore
from hub.alerts import AlertManager
from hub.api import ApiServer, HubApi, api_server
from hub.channels import build_channels
from hub.columns import DeviceTable, Readings
from hub.config import HubConfig
from hub.errors import HubError
from hub.ingest import Ingestor, RuleSink, now_ms
from hub.metrics import hub_registry
from hub.mqtt import HubMqtt
from hub.notifiers import LogNotifier, Notifier, WebhookNotifier
from hub.registry import DeviceInfo, Registry, load_site
from hub.sinks import InfluxSink, TimeSeriesSink
from hub.spool import Forwarder
from hub.store import HubStore
from hub.tsdb import SqliteSink
from rules import Engine, RulesError, RuleSet, Subject, load_rules
from wire import Ack, GatewayTopics, encode

logger = logging.getLogger(__name__)

_TICK_S = 1.0
# Readings the rules take per turn of the event loop: a few ms with 500 rules on numpy, the
# longest an alarm's next step waits behind them.
_READINGS_PER_SLICE = 2_000
_PRUNE_EVERY_S = 3600


def hub_version() -> str:
    """Version string of the hub."""
    try:
        return f"anju-hub/{version('anju')}"
    except PackageNotFoundError:
        return "anju-hub/dev"


class _Stop(Exception):  # noqa: N818 - a control-flow signal, not an error
    pass


class RulesBridge(RuleSink):
    """Feeds accepted data to the rules engine and its transitions to the alert manager.

    Rules run on data time: ``tick`` uses the newest timestamp seen, so a replayed or
    time-compressed stream resolves alerts exactly as it would have live.

    Events are evaluated at once, on the ingest path.  Readings are queued and evaluated by
    :meth:`run` a few at a time: with hundreds of rules a batch of readings costs tens of
    milliseconds, and an alarm's notification, which needs the event loop a dozen times on its
    way out, must not wait behind one such batch each time.
    """

    def __init__(self, engine: Engine, alerts: AlertManager, devices: DeviceTable) -> None:
        self.engine = engine
        self._alerts = alerts
        self._devices = devices
        self._subjects: list[Subject] = []
        # Messages' readings waiting for evaluation, the first one from ``_offset`` on.
        self._readings: collections.deque[Readings] = collections.deque()
        self._offset = 0
        self._backlog = 0
        self._queued = asyncio.Event()
        self.data_time_ms = 0
        self.forget_subjects()

    def subject(self, device: DeviceInfo) -> Subject:
        """The rules' subject for a device, with its registry labels."""
        return self._subjects[self._devices.slot_of[device.id]]

    def on_readings(self, readings: Readings) -> None:
        """Queue a message's readings for evaluation."""
        self.data_time_ms = max(self.data_time_ms, int(readings.ts.max()))
        self._readings.append(readings)
        self._backlog += len(readings)
        self._queued.set()

    def on_event(self, device: DeviceInfo, ts_ms: int, kind: str, data: Mapping[str, Any]) -> None:
        """Evaluate an event."""
        self.data_time_ms = max(self.data_time_ms, ts_ms)
        transitions = self.engine.on_event(self.subject(device), ts_ms, kind, data)
        if transitions:
            self._alerts.submit(transitions)

    def on_gateway(self, gateway: str, *, online: bool, ts_ms: int) -> None:
        """A gateway's presence changed."""
        self._alerts.gateway_presence(gateway, online=online, ts_ms=ts_ms)

    def forget_subjects(self) -> None:
        """Number the registry's devices for the engine anew (moved devices, new labels).

        Slot ``i`` of the engine is slot ``i`` of the hub's device table; a device removed
        from the registry keeps its last subject (no reading of it is accepted any more).
        """
        subjects = self._subjects
        for slot, device in enumerate(self._devices.devices):
            if device is not None:
                subject = Subject(device.id, device.labels)
            else:
                subject = (
                    subjects[slot] if slot < len(subjects) else Subject(self._devices.ids[slot], {})
                )
            if slot < len(subjects):
                subjects[slot] = subject
            else:
                subjects.append(subject)
        self.engine.set_subjects(subjects)

    def evaluate(self, limit: int | None = None) -> int:
        """Evaluate queued readings (at most ``limit``); how many were.

        Queued messages are joined into one batch for the engine: a burst of small messages
        costs the engine's fixed work once.
        """
        done = 0
        parts: list[Readings] = []
        queue = self._readings
        while queue and (limit is None or done < limit):
            readings = queue[0]
            start = self._offset
            stop = len(readings) if limit is None else min(len(readings), start + limit - done)
            whole = start == 0 and stop == len(readings)
            parts.append(readings if whole else readings.window(start, stop))
            done += stop - start
            if stop == len(readings):
                queue.popleft()
                self._offset = 0
            else:
                self._offset = stop
        if parts:
            batch = Readings.concat(parts)
            transitions = self.engine.on_batch(batch.slots, batch.ts, batch.fields)
            if transitions:
                self._alerts.submit(transitions)
        self._backlog -= done
        return done

    @property
    def backlog(self) -> int:
        """Readings waiting for evaluation."""
        return self._backlog

    async def run(self) -> None:
        """Evaluate queued readings in small slices, yielding to the event loop between them."""
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self.evaluate(_READINGS_PER_SLICE):  # noqa: ASYNC110 - slices, not a poll
                await asyncio.sleep(0)

    def tick(self) -> None:
        """Let time-based transitions (absence, auto-resolve) happen."""
        # Time moves on only to just before the oldest reading still waiting: a silent
        # device's last reading must be evaluated before its absence is judged.
        now_ms = self.data_time_ms
        if self._readings:
            now_ms = min(now_ms, int(self._readings[0].ts[self._offset :].min()) - 1)
        if now_ms > 0:
            transitions = self.engine.tick(now_ms)
            if transitions:
                self._alerts.submit(transitions)


class Hub:
    """One community's hub.  ``run()`` returns after :meth:`stop`."""

    def __init__(
        self,
        config: HubConfig,
        *,
        rules: RuleSet | None = None,
        sink: TimeSeriesSink | None = None,
        notifiers: Iterable[Notifier] = (),
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.config = config
        self._clock_ms = clock_ms
        self.registry = Registry(load_site(config.site_file))
        self.store = HubStore(config.data_dir / "hub.sqlite3")
        self.store.save_registry(self.registry)
        ruleset = rules if rules is not None else load_rules(config.rule_files())
        self.sink: TimeSeriesSink = sink or _make_sink(config)
        channels: list[Notifier] = [LogNotifier()] if config.notifiers.log else []
        channels += [
            WebhookNotifier(w.name, w.url, headers=dict(w.headers), timeout_s=w.timeout_s)
            for w in config.notifiers.webhooks
        ]
        channels += build_channels(config.notifiers.channels)
        channels += list(notifiers)
        self.alert_store = AlertStore(config.data_dir / "alerts.sqlite3")
        self.alerts = AlertManager(
            store=self.alert_store,
            registry=self.registry,
            notifiers=channels,
            clock_ms=clock_ms,
            settings=config.alerting,
            rule_kinds={rule.id: rule.kind for rule in ruleset},
        )
        self.devices = DeviceTable(self.registry)
        # Devices are numbered before the state comes back, so it attaches to their slots.
        self.rules = RulesBridge(Engine(ruleset), self.alerts, self.devices)
        self._restore_engine(self.rules.engine)
        self._adopt_open_alerts()
        self.forwarder = Forwarder(self.store, self.sink, self.devices)
        ingest = config.ingest
        self.ingestor = Ingestor(
            registry=self.registry,
            devices=self.devices,
            store=self.store,
            forwarder=self.forwarder,
            rules=self.rules,
            publish_ack=self._publish_ack,
            flush_interval_s=ingest.flush_interval_s,
            max_batch_lines=ingest.max_batch_lines,
            max_future_skew_s=ingest.max_future_skew_s,
            quarantine_keep=ingest.quarantine_keep,
            clock_ms=clock_ms,
        )
        self.mqtt = HubMqtt(
            config.mqtt,
            self.ingestor.handle,
            version=hub_version(),
            on_burst=self.ingestor.process_staged,
        )
        self._ack_topics = {
            gw: GatewayTopics(self.registry.site_id, gw).ack for gw in self.registry.gateways
        }
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.api = HubApi(self, config.api) if config.api.port else None
        self._engine_saved_ms = 0
        self._site_mtime = 0
        self._api_server: ApiServer | None = None
        self._api_task: asyncio.Task[None] | None = None

    def _restore_engine(self, engine: Engine) -> None:
        # `for` timers, windows and deadlines as they were at the last snapshot.
        blob = self.alert_store.load_engine_sync()
        if blob is None:
            return
        try:
            report = engine.restore(blob)
        except RulesError as exc:
            logger.warning("rule state not restored, starting fresh: %s", exc)
            # Whatever a broken snapshot left half restored goes with it.
            self.rules.engine = Engine(engine.rules)
            self.rules.forget_subjects()
            return
        logger.info(
            "rule state restored: %d states%s",
            report.states,
            f", {report.dropped} dropped (rules changed: {', '.join(report.dropped_rules)})"
            if report.dropped
            else "",
        )

    def _adopt_open_alerts(self) -> None:
        # Alerts opened after the last snapshot (a crash) are still open in the alert store;
        # the engine takes them back so that they can clear.
        adopted = 0
        for alert in self.alerts.book.active.values():
            device = self.registry.devices.get(alert.subject)
            if device is None:
                continue  # a place or a gateway: rebuilt from what comes next
            adopted += self.rules.engine.adopt(
                alert.rule_id,
                self.rules.subject(device),
                firing=alert.status.value != "pending",
                since_ms=alert.started_ms,
                last_ts_ms=alert.firing_ms or alert.started_ms,
                value=alert.value,
                event_kind=alert.labels.get("event_kind", ""),
            )
        if adopted:
            logger.info("rules took back %d open alerts the last snapshot did not hold", adopted)

    async def save_rule_state(self) -> None:
        """Snapshot the rules engine's state into the alert store."""
        try:
            await self.alert_store.save_engine(self.rules.engine.snapshot(), self._clock_ms())
        except HubError as exc:
            logger.warning("rule state not saved: %s", exc)

    def _publish_ack(self, gateway: str, ack: Ack) -> None:
        self.mqtt.publish(self._ack_topics[gateway], encode(ack), qos=1)

    async def run(self) -> None:
        """Connect, ingest and alert until :meth:`stop`; then flush and disconnect cleanly."""
        self.mqtt.start(asyncio.get_running_loop())
        metrics_server = None
        if self.config.metrics.port:
            metrics_server, _ = start_http_server(
                self.config.metrics.port, self.config.metrics.host, registry=hub_registry(self)
            )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.ingestor.run_writer(), name="hub.writer")
                tg.create_task(self.forwarder.run(), name="hub.forwarder")
                tg.create_task(self.alerts.run(), name="hub.alerts")
                tg.create_task(self.rules.run(), name="hub.rules")
                tg.create_task(self._tick_loop(), name="hub.tick")
                tg.create_task(self._wait_stop(), name="hub.stop")
                if self.api is not None:
                    server = api_server(self.api)
                    self._api_task = tg.create_task(_serve(server), name="hub.api")
                    self._api_server = server
                self.started.set()
        except* _Stop:
            pass
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            await self._shutdown()

    async def status(self) -> dict[str, Any]:
        """The fleet at a glance: gateways, devices by state, open alerts by grid."""
        now = self._clock_ms()
        gateways = []
        for gateway_id, status in sorted(self.ingestor.gateways.items()):
            health = status.health or {}
            gateways.append(
                {
                    "id": gateway_id,
                    "online": status.online,
                    "last_seen_ms": status.last_seen_ms,
                    "seen_ago_s": (now - status.last_seen_ms) / 1000
                    if status.last_seen_ms
                    else None,
                    "queue_depth": health.get("queue_depth"),
                    "agent": status.agent,
                }
            )
        devices: dict[str, dict[str, int]] = {}
        for device_id, device in self.registry.devices.items():
            by_state = devices.setdefault(device.grid or "-", {})
            state = self.ingestor.device_state(device_id).value
            by_state[state] = by_state.get(state, 0) + 1
        alerts: dict[str, dict[str, int]] = {}
        for alert in self.alerts.book.active.values():
            by_status = alerts.setdefault(alert.labels.get("grid") or "-", {})
            by_status[alert.status.value] = by_status.get(alert.status.value, 0) + 1
        return {
            "site": self.registry.site_id,
            "now_ms": now,
            "gateways": gateways,
            "devices_by_grid": devices,
            "open_alerts_by_grid": alerts,
            "deliveries": await self.alert_store.delivery_counts(),
            "received": {
                "readings": self.ingestor.counters["readings"],
                "events": self.ingestor.counters["events"],
                "quarantined": self.ingestor.counters["quarantined"],
            },
        }

    async def _shutdown(self) -> None:
        # What the store did not take yet stays in the spool and is forwarded after a restart.
        self.mqtt.stop()
        await self.save_rule_state()
        await self.alerts.aclose()
        await self.sink.aclose()
        self.store.close()
        self.alert_store.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self._stopping.set()

    async def _wait_stop(self) -> None:
        await self._stopping.wait()
        # Graceful: make everything received durable and acknowledged, deliver what is due,
        # and give the store a moment to take the spool, while every task still runs.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.ingest.shutdown_grace_s):
                await self.ingestor.wait_idle()
                self.rules.evaluate()
                await self.alerts.wait_idle()
                await self.forwarder.wait_drained()
        if self._api_server is not None and self._api_task is not None:
            # Let uvicorn close its socket itself; a cancelled server leaves it listening.
            self._api_server.should_exit = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.shield(self._api_task)
        raise _Stop

    def reload_registry(self) -> bool:
        """Read the site file again (after `anju device add` and friends); False if it is bad.

        New gateways and devices are accepted at once and moved devices get their new place.
        A site file that does not load, or names another site, is refused and the registry in
        use stays.
        """
        try:
            site = load_site(self.config.site_file)
            registry = Registry(site)
        except HubError as exc:
            logger.error("site file not reloaded, the previous one stays in use: %s", exc)  # noqa: TRY400
            return False
        if registry.site_id != self.registry.site_id:
            logger.error(
                "site file not reloaded: it names site %s, the hub serves %s (restart the hub)",
                registry.site_id,
                self.registry.site_id,
            )
            return False
        self.registry = registry
        self.store.save_registry(registry)
        self.ingestor.use_registry(registry)
        self.alerts.use_registry(registry)
        self.rules.forget_subjects()
        for gateway in registry.gateways:
            self._ack_topics.setdefault(gateway, GatewayTopics(registry.site_id, gateway).ack)
        logger.info(
            "site file reloaded: %d gateways, %d devices",
            len(registry.gateways),
            len(registry.devices),
        )
        return True

    def _site_changed(self) -> bool:
        try:
            mtime = self.config.site_file.stat().st_mtime_ns
        except OSError:
            return False
        changed = mtime != self._site_mtime
        self._site_mtime = mtime
        return changed

    async def _tick_loop(self) -> None:
        last_prune = 0.0
        loop = asyncio.get_running_loop()
        last_snapshot = loop.time()
        self._site_changed()
        while True:
            await asyncio.sleep(_TICK_S)
            self.rules.tick()
            if self._site_changed():
                self.reload_registry()
            interval = self.config.ingest.rule_state_interval_s
            if loop.time() - last_snapshot > interval:
                last_snapshot = loop.time()
                await self.save_rule_state()
            if loop.time() - last_prune > _PRUNE_EVERY_S:
                last_prune = loop.time()
                horizon_ms = int(self.config.ingest.dedup_horizon_s * 1000)
                await self.store.prune_seen(self._clock_ms() - horizon_ms)


async def _serve(server: ApiServer) -> None:
    try:
        await server.serve()
    except SystemExit:
        # uvicorn exits when it cannot listen; the hub's alarms matter more than its API.
        config = server.config
        logger.error(  # noqa: TRY400 - uvicorn has logged why
            "the API could not listen on %s:%d; the hub runs without it", config.host, config.port
        )


def _make_sink(config: HubConfig) -> TimeSeriesSink:
    if config.influx is not None:
        influx = config.influx
        return InfluxSink(
            influx.url,
            token=influx.token.get_secret_value(),
            org=influx.org,
            bucket=influx.bucket,
            timeout_s=influx.timeout_s,
            max_write_bytes=influx.max_write_bytes,
        )
    return SqliteSink(config.data_dir / "tsdb.sqlite3", retention_days=config.retention_days)
