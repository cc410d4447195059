"""The gateway daemon: runs drivers, batches telemetry, queues and publishes, handles acks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import shutil
import socket
import ssl
import time
import uuid
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import aiomqtt
from pydantic import ValidationError

from device_drivers import (
    Clock,
    DeviceEvent,
    DriverConfig,
    Sample,
    SystemClock,
    create_driver,
)
from edge_agent.config import GatewayConfig, parse_gateway_config
from edge_agent.doors import Doors
from edge_agent.pseudonym import Pseudonymiser
from edge_agent.queue import DurableQueue, Priority
from edge_agent.reconfigure import (
    DriverPlan,
    changed_sections,
    check_new_config,
    file_version,
    plan_drivers,
    save_config,
)
from wire import (
    CONFIG_COMMAND,
    Ack,
    Channel,
    Command,
    ConfigApplied,
    ConfigPush,
    DecodeError,
    Event,
    GatewayState,
    GatewayTopics,
    Health,
    ReadingChecker,
    ReadingTuple,
    Reply,
    TopicError,
    config_version,
    decode_as,
    encode,
    encode_data_batch,
    is_life_safety,
    parse_topic,
    validate_event_data,
)

logger = logging.getLogger(__name__)

_SEND_CHUNK = 200
_FAILED_STARTS_TO_FAULT = 2
# A driver being replaced must have let go of its port before its successor opens it.
_DRIVER_STOP_TIMEOUT_S = 10.0
_REPLY_WAIT_S = 10.0
_MAX_TEXT = 256
_EXPIRY_CHECK_S = 60.0


def agent_version() -> str:
    """Version string sent in the birth message."""
    try:
        return f"anju-edge/{version('anju')}"
    except PackageNotFoundError:
        return "anju-edge/dev"


class _Stop(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside the task group to end :meth:`EdgeAgent.run`."""


def _forget_lost_cancellation(stopping: asyncio.Event) -> None:
    """After a lost connection, drop a cancellation request that was counted, never delivered.

    A broker that goes away mid-publish leaves one behind on Python 3.11 (the connection's task
    group and aiomqtt's ``wait_for`` race). Only a stop may end the reconnect loop; a
    cancellation that is really delivered still propagates as ``CancelledError``.
    """
    task = asyncio.current_task()
    if task is not None and not stopping.is_set():
        while task.cancelling():
            task.uncancel()


@dataclasses.dataclass(slots=True)
class DriverState:
    """What the agent knows of one driver instance."""

    state: str = "starting"
    restarts: int = 0
    last_error: str | None = None
    devices: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class _Settings:
    """What a config push swaps, kept so that a rollback can swap it back."""

    config: GatewayConfig
    pseudonymiser: Pseudonymiser
    allow: dict[str, frozenset[str]]
    doors: Doors


class EdgeAgent:
    """One gateway's agent.

    ``run()`` returns when :meth:`stop` is called.  The queue is injectable so the durable
    store-and-forward queue can replace the in-memory one.

    ``config_path`` is the file ``config`` was loaded from: a pushed config that applies is saved
    there (see :meth:`reconfigure`).  ``settle_s`` is how long drivers started by a push must run
    before the push counts as applied.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        clock: Clock | None = None,
        queue: DurableQueue | None = None,
        config_path: Path | None = None,
        settle_s: float = 5.0,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.config_version = file_version(config_path) if config_path is not None else ""
        self.settle_s = settle_s
        self.topics = GatewayTopics(config.site, config.gateway)
        self.session = uuid.uuid4().hex[:16]
        self._clock: Clock = clock or SystemClock()
        self._queue = queue or DurableQueue(
            config.data_dir / f"{config.site}.{config.gateway}.queue.sqlite3",
            max_bytes=config.queue.max_bytes,
            max_age_s=config.queue.max_age_s,
            commit_interval_s=config.queue.commit_interval_s,
        )
        self._backlog_until = 0  # seqs up to this one were queued before the connection came up
        self._last_ack_at = time.monotonic()
        self._client_now: aiomqtt.Client | None = None
        self._pseudonymiser = _pseudonymiser(config)
        self._buffer: list[ReadingTuple] = []
        self._buffer_since: float | None = None
        self._checker = ReadingChecker()
        self._buffered = asyncio.Event()  # the batch has its first reading
        self._commit_due = asyncio.Event()  # the queue has work for its next group commit
        self._queue.on_pending = self._commit_due.set
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        self.counters: Counter[str] = Counter()
        self.drivers: dict[str, DriverState] = {d.id: DriverState() for d in config.drivers}
        self._driver_tasks: dict[str, asyncio.Task[None]] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._applying = False
        self._doors = Doors(config.doors)
        self._allow = _allow_lists(config)
        # Devices known to be faulted or fine, from their drivers' fault and recovery events.
        self.device_states: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop`; then flush the batch and say goodbye on the state topic."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks = tg
                for driver_config in self.config.drivers:
                    self._start_driver(driver_config, self.drivers[driver_config.id])
                tg.create_task(self._batch_loop(), name="batcher")
                tg.create_task(self._commit_loop(), name="queue")
                # Always running: a config push may add the first door.
                tg.create_task(self._door_loop(), name="doors")
                tg.create_task(self._connection_loop(), name="mqtt")
                tg.create_task(self._wait_stop(), name="stop")
        except* _Stop:
            pass
        finally:
            self._tasks = None
            self._driver_tasks.clear()
            self._flush_batch()
            self._queue.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self._stopping.set()

    async def _wait_stop(self) -> None:
        await self._stopping.wait()
        # A clean disconnect suppresses the Last Will, so say goodbye ourselves.
        client = self._client_now
        if client is not None and self.connected:
            offline = GatewayState(
                online=False, ts=self._clock.now_ms(), session=self.session, agent=agent_version()
            )
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(2):
                    await client.publish(self.topics.state, encode(offline), qos=1, retain=True)
        raise _Stop

    @property
    def connected(self) -> bool:
        """Whether the agent currently has a broker connection."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Return once connected to the broker."""
        await self._connected.wait()

    # -- drivers ---------------------------------------------------------------------------

    def _start_driver(self, driver_config: DriverConfig, state: DriverState) -> None:
        tasks = self._tasks
        if tasks is None:
            msg = "drivers start only while the agent runs"
            raise RuntimeError(msg)
        self.drivers[driver_config.id] = state
        self._driver_tasks[driver_config.id] = tasks.create_task(
            self._supervise(driver_config, state), name=f"driver[{driver_config.id}]"
        )

    async def _stop_drivers(self, ids: tuple[str, ...]) -> None:
        tasks = []
        for driver_id in ids:
            del self.drivers[driver_id]  # retires it: see _retired
            task = self._driver_tasks.pop(driver_id)
            task.cancel()
            tasks.append(task)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=_DRIVER_STOP_TIMEOUT_S)
        for task in pending:
            logger.warning("%s did not stop within %g s", task.get_name(), _DRIVER_STOP_TIMEOUT_S)

    async def _supervise(self, driver_config: DriverConfig, state: DriverState) -> None:
        backoff = 1.0
        failures = 0
        faulted: tuple[str, ...] = ()
        while not self._retired(driver_config.id, state):
            try:
                driver = create_driver(driver_config, clock=self._clock, authorise=self._authorise)
                state.devices = driver.device_ids
                async with driver:
                    state.state = "running"
                    backoff, failures = 1.0, 0
                    if faulted:
                        self._driver_recovered(faulted)
                        faulted = ()
                    async for output in driver.outputs():
                        if self._retired(driver_config.id, state):
                            return
                        self._accept(output)
                state.last_error = "driver ended"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failing driver must never stop the agent
                state.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("driver %s failed: %s", driver_config.id, state.last_error)
            if self._retired(driver_config.id, state):
                return
            state.state = "backoff"
            state.restarts += 1
            failures += 1
            self.counters["driver_restarts"] += 1
            # A driver that cannot even start (a port absent at boot) never reports its
            # devices itself: after repeated failures the agent says they stopped answering.
            if failures == _FAILED_STARTS_TO_FAULT and not faulted:
                faulted = state.devices
                self._driver_faulted(faulted, state.last_error or "driver failed")
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, 60.0)

    def _retired(self, driver_id: str, state: DriverState) -> bool:
        # A driver stopped by a config push ends even if a driver swallowed its cancellation
        # (Python 3.11's wait_for can): its state is no longer the one the agent holds.
        return self.drivers.get(driver_id) is not state

    def _authorise(self, device_id: str, credential: str) -> bool | None:
        # Runs inside the driver, but the key and the comparison stay here: the raw number is
        # pseudonymised exactly as it would be for publishing, then looked up.
        allowed = self._allow.get(device_id)
        if allowed is None:
            return None
        return self._pseudonymiser.pseudonym(credential) in allowed

    def _driver_faulted(self, devices: tuple[str, ...], reason: str) -> None:
        now = self._clock.now_ms()
        for device in devices:
            if self.device_states.get(device) != "faulted":
                self._accept(DeviceEvent(device, now, "device.fault", {"reason": reason[:256]}))

    def _driver_recovered(self, devices: tuple[str, ...]) -> None:
        now = self._clock.now_ms()
        for device in devices:
            if self.device_states.get(device) == "faulted":
                self._accept(DeviceEvent(device, now, "device.recovered", {}))

    def _accept(self, output: Sample | DeviceEvent) -> None:
        if isinstance(output, Sample):
            self._accept_sample(output)
        else:
            self._accept_event(output)

    def _accept_sample(self, sample: Sample) -> None:
        # Checked as the hub's strict v1 validation will, into a plain tuple: no model each.
        try:
            reading = self._checker.check(sample.device, sample.ts_ms, sample.values)
        except DecodeError as exc:
            self.counters["rejected_samples"] += 1
            logger.debug("rejected sample of %s: %s", sample.device, exc)
            return
        self.counters["samples"] += 1
        if not self._buffer:
            self._buffer_since = time.monotonic()
            self._buffered.set()
        self._buffer.append(reading)
        if len(self._buffer) >= self.config.batch.max_readings:
            self._flush_batch()

    def _accept_event(self, event: DeviceEvent) -> None:
        self._queue_event(event)
        if self._doors and event.kind.startswith("door."):
            for door_event in self._doors.observe(event):
                self._queue_event(door_event)

    def _queue_event(self, event: DeviceEvent) -> None:
        if event.kind == "device.fault":
            self.device_states[event.device] = "faulted"
        elif event.kind == "device.recovered":
            self.device_states[event.device] = "ok"
        data = dict(event.data)
        if event.credential is not None:
            # The raw number is dropped here: only the pseudonym is queued or published.
            data["credential"] = self._pseudonymiser.pseudonym(event.credential)
        try:
            data = validate_event_data(event.kind, data)
        except DecodeError as exc:
            self.counters["rejected_events"] += 1
            logger.warning("rejected %s event of %s: %s", event.kind, event.device, exc)
            return
        priority = Priority.LIFE_SAFETY if is_life_safety(event.kind) else Priority.EVENT
        self.counters["events"] += 1

        def build(seq: int) -> bytes:
            return encode(
                Event(
                    session=self.session,
                    seq=seq,
                    dev=event.device,
                    ts=event.ts_ms,
                    kind=event.kind,
                    data=data,
                )
            )

        self._queue.append(Channel.EVENT, priority, build, self._clock.now_ms())
        self._wakeup.set()

    def _flush_batch(self) -> None:
        if not self._buffer:
            return
        readings, self._buffer = self._buffer, []
        self._buffer_since = None
        session = self.session

        def build(seq: int) -> bytes:
            return encode_data_batch(session, seq, readings)

        self._queue.append(Channel.DATA, Priority.TELEMETRY, build, self._clock.now_ms())
        self.counters["batches"] += 1
        self._wakeup.set()

    async def _door_loop(self) -> None:
        while True:
            # Without doors there is nothing to time: look again only as often as a push may
            # bring the first one.
            await asyncio.sleep(0.5 if self._doors else 5.0)
            if self._doors:
                for event in self._doors.tick(self._clock.now_ms()):
                    self._queue_event(event)

    async def _commit_loop(self) -> None:
        last_expiry = time.monotonic()
        while True:
            # Asleep until the queue has work; then at most one group per commit interval,
            # written off the event loop (life-safety events commit at once, in append).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_EXPIRY_CHECK_S):
                    await self._commit_due.wait()
            if self._commit_due.is_set():
                await asyncio.sleep(self._queue.commit_wait_s())
                self._commit_due.clear()
                if await self._queue.commit_async():
                    self._wakeup.set()
            if time.monotonic() - last_expiry > _EXPIRY_CHECK_S:
                last_expiry = time.monotonic()
                self._queue.expire()

    async def _batch_loop(self) -> None:
        while True:
            await self._buffered.wait()
            since = self._buffer_since
            if since is None:  # flushed meanwhile (full, or a stop)
                self._buffered.clear()
                continue
            max_delay = self.config.batch.max_delay_s  # a config push may change it
            remaining = since + max_delay - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            self._buffered.clear()
            self._flush_batch()

    # -- broker ----------------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        mqtt = self.config.mqtt
        offline = GatewayState(
            online=False, ts=self._clock.now_ms(), session=self.session, agent=agent_version()
        )
        tls_context = None
        if mqtt.tls_ca_file is not None:
            tls_context = ssl.create_default_context(cafile=str(mqtt.tls_ca_file))
            if mqtt.tls_cert_file is not None:
                tls_context.load_cert_chain(str(mqtt.tls_cert_file), mqtt.tls_key_file)
        return aiomqtt.Client(
            mqtt.host,
            mqtt.port,
            identifier=f"anju-gw-{self.config.site}-{self.config.gateway}",
            username=mqtt.username or self.config.gateway,
            password=mqtt.password.get_secret_value() if mqtt.password else None,
            keepalive=mqtt.keepalive_s,
            clean_session=True,
            will=aiomqtt.Will(self.topics.state, encode(offline), qos=1, retain=True),
            tls_context=tls_context,
            # Events are small and urgent: do not let Nagle hold them for a delayed ACK.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            logger=logging.getLogger("edge_agent.mqtt"),
        )

    async def _connection_loop(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                async with self._client() as client:
                    # aiomqtt waits for CONNACK, SUBACK and PUBACK with asyncio.wait_for, which
                    # on Python 3.11 returns the result and drops a cancellation that arrives
                    # with it: a stop during the connect would leave this loop running for good.
                    if self._stopping.is_set():
                        return
                    self._client_now = client
                    attempt = 0
                    await self._on_connected(client)
                    if self._stopping.is_set():
                        return
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._send_loop(client), name="sender")
                        tg.create_task(self._receive_loop(client), name="receiver")
                        tg.create_task(self._health_loop(client), name="health")
            except* aiomqtt.MqttError as group:
                self.counters["disconnects"] += 1
                logger.warning("broker connection lost: %s", group.exceptions[0])
                _forget_lost_cancellation(self._stopping)
            self._connected.clear()
            self._client_now = None
            attempt += 1
            cap = self.config.mqtt.reconnect_max_s
            await asyncio.sleep(min(cap, 0.5 * 2 ** min(attempt, 10)) * random.uniform(0.5, 1.0))

    async def _on_connected(self, client: aiomqtt.Client) -> None:
        # Subscribe before announcing, so no ack or command can slip past.
        await client.subscribe([(self.topics.ack, 1), (self.topics.cmd_filter, 1)])
        await client.publish(self.topics.state, encode(self._birth()), qos=1, retain=True)
        # Whatever was in flight on the old connection may be lost: send it again.  Everything
        # queued so far is the backlog: it follows live traffic, flagged as a replay.
        self._queue.commit()
        self._queue.resend_unacked()
        self._backlog_until = self._queue.last_seq
        self._last_ack_at = time.monotonic()
        self._connected.set()
        self._wakeup.set()
        logger.info("connected to %s:%s", self.config.mqtt.host, self.config.mqtt.port)

    def _birth(self) -> GatewayState:
        return GatewayState(
            online=True,
            ts=self._clock.now_ms(),
            session=self.session,
            agent=agent_version(),
            config_hash=self.config.config_hash(),
        )

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        topic_of = {Channel.DATA: self.topics.data, Channel.EVENT: self.topics.event}
        tokens, refilled = self.config.replay.max_messages_per_s, time.monotonic()
        while not self._stopping.is_set():
            rate = self.config.replay.max_messages_per_s  # a config push may change it
            self._check_watchdog()
            now = time.monotonic()
            tokens, refilled = min(rate, tokens + (now - refilled) * rate), now
            messages = self._queue.take_live(self._backlog_until, _SEND_CHUNK)
            backlog = []
            if tokens >= 1:
                # In chunks, so a live alarm is never queued behind the whole backlog.
                backlog = self._queue.take_backlog(
                    self._backlog_until, min(int(tokens), _SEND_CHUNK)
                )
                tokens -= len(backlog)
            for message in messages:
                await client.publish(topic_of[message.channel], message.payload, qos=1)
            for message in backlog:
                payload = message.payload.replace(b'"replay":false', b'"replay":true', 1)
                await client.publish(topic_of[message.channel], payload, qos=1)
            self.counters["published"] += len(messages) + len(backlog)
            self.counters["replayed"] += len(backlog)
            if messages or backlog:
                continue
            # Nothing to send now: wait for new data, for a replay token, or to resend.
            self._wakeup.clear()
            pending_backlog = self._queue.has_backlog(self._backlog_until)
            wait = 1 / rate if pending_backlog else min(1.0, self.config.resend_after_s / 2)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()
            # The hub may have lost what it never acknowledged (a restart): offer it again.
            self._queue.resend_unacked(min_age_s=self.config.resend_after_s)

    def _check_watchdog(self) -> None:
        # Connected but silent: messages go out, no acknowledgement comes back.  Reconnecting
        # restores subscriptions the broker may have lost.
        oldest = self._queue.oldest_unacked_sent_s()
        timeout = self.config.ack_timeout_s
        if (
            oldest is not None
            and oldest > timeout
            and time.monotonic() - self._last_ack_at > timeout
        ):
            self.counters["watchdog_reconnects"] += 1
            msg = f"no acknowledgement for {timeout:g} s"
            raise aiomqtt.MqttError(msg)

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = bytes(message.payload)
            try:
                address = parse_topic(str(message.topic))
                if address.channel is Channel.ACK:
                    ack = decode_as(Ack, payload)
                    self.counters["acked"] += self._queue.ack(ack)
                    self._last_ack_at = time.monotonic()
                elif address.channel is Channel.CMD and address.command is not None:
                    command = decode_as(Command, payload)
                    reply = self._handle_command(address.command, command)
                    if reply is not None:
                        await client.publish(self.topics.reply, encode(reply), qos=1)
            except (DecodeError, TopicError) as exc:
                self.counters["rejected_downlink"] += 1
                logger.warning("ignored message on %s: %s", message.topic, exc)

    def _handle_command(self, name: str, command: Command) -> Reply | None:
        """The reply to a command, or None when a task sends it later."""
        if name == CONFIG_COMMAND:
            return self._start_config_command(command)
        now = self._clock.now_ms()
        if name == "ping":
            return Reply(id=command.id, ts=now, ok=True, result={"pong": now})
        if name == "log_level":
            level = str(command.args.get("level", "")).upper()
            if level in {"DEBUG", "INFO", "WARNING", "ERROR"}:
                logging.getLogger().setLevel(level)
                return Reply(id=command.id, ts=now, ok=True, result={"level": level})
            return Reply(id=command.id, ts=now, ok=False, error=f"unknown level {level!r}")
        return Reply(id=command.id, ts=now, ok=False, error=f"unknown command {name!r}")

    def _start_config_command(self, command: Command) -> Reply | None:
        now = self._clock.now_ms()
        try:
            push = ConfigPush.model_validate(command.args)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in err["loc"]) or "$"
            error = _text(f"args.{field}: {err['msg']}")
            return Reply(id=command.id, ts=now, ok=False, error=error)
        tasks = self._tasks
        if tasks is None:
            return Reply(id=command.id, ts=now, ok=False, error="the agent is stopping")
        # Applying takes a while (drivers must settle): the receive loop goes on meanwhile.
        tasks.create_task(self._config_command(command, push), name="reconfigure")
        return None

    async def _config_command(self, command: Command, push: ConfigPush) -> None:
        try:
            applied = await self.reconfigure(push)
        except Exception as exc:
            # This task runs in the agent's task group: an error here must not stop the agent.
            logger.exception("config %s failed", push.version)
            applied = ConfigApplied(
                version=push.version, error=_text(f"{type(exc).__name__}: {exc}")
            )
        reply = Reply(
            id=command.id,
            ts=self._clock.now_ms(),
            ok=applied.error is None,
            result=applied.model_dump(mode="json", exclude_none=True),
            error=applied.error,
        )
        client = await self._current_client()
        if client is None:
            self.counters["replies_lost"] += 1
            logger.warning("config %s: no broker connection for the reply", push.version)
            return
        try:
            async with asyncio.timeout(_REPLY_WAIT_S):
                await client.publish(self.topics.reply, encode(reply), qos=1)
                if applied.error is None and (
                    applied.started or applied.stopped or applied.restarted or applied.changed
                ):
                    # The retained presence carries the config hash: keep it current.
                    birth = self._birth()
                    await client.publish(self.topics.state, encode(birth), qos=1, retain=True)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            self.counters["replies_lost"] += 1
            logger.warning("config %s: reply not sent: %s", push.version, exc)

    async def _current_client(self) -> aiomqtt.Client | None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_REPLY_WAIT_S):
                await self._connected.wait()
        return self._client_now if self.connected else None

    # -- config push -----------------------------------------------------------------------

    async def reconfigure(self, push: ConfigPush) -> ConfigApplied:
        """Switch the running agent to a pushed config, or say why not.

        The config is validated and checked first; a config that fails either changes
        nothing.  Then drivers whose entries were removed or changed stop, added and changed
        ones start, and unchanged ones keep running untouched; doors, access lists and
        privacy settings are swapped; the queue is never touched.  If a started driver fails
        to start within :attr:`settle_s`, or the config cannot be saved to
        :attr:`config_path`, everything is switched back.  One push at a time: a push while
        another is applied is refused as busy.
        """
        if self._applying:
            return ConfigApplied(
                version=push.version, error="busy: another config push is being applied"
            )
        if self._tasks is None:
            return ConfigApplied(version=push.version, error="the agent is not running")
        self._applying = True
        try:
            return await self._reconfigure(push)
        finally:
            self._applying = False

    async def _reconfigure(self, push: ConfigPush) -> ConfigApplied:
        version = push.version
        if version != config_version(push.config):
            return ConfigApplied(version=version, error="version does not match the config")
        if version == self.config_version:
            return ConfigApplied(
                version=version,
                unchanged=list(self.drivers),
                persisted=self.config_path is not None,
            )
        try:
            new = parse_gateway_config(push.config, source="config push")
            check_new_config(self.config, new)
            pseudonymiser = _pseudonymiser(new)
        except ValueError as exc:  # ConfigError and the checks of what cannot change live
            return ConfigApplied(version=version, error=_text(str(exc)))
        return await self._apply(push, new, pseudonymiser)

    async def _apply(
        self, push: ConfigPush, new: GatewayConfig, pseudonymiser: Pseudonymiser
    ) -> ConfigApplied:
        version = push.version
        previous = _Settings(self.config, self._pseudonymiser, self._allow, self._doors)
        plan = plan_drivers(previous.config.drivers, new.drivers)
        sections = list(changed_sections(previous.config, new))
        try:
            await self._stop_drivers(plan.to_stop)
            self._install(
                _Settings(
                    new,
                    pseudonymiser,
                    _allow_lists(new),
                    Doors(new.doors) if "doors" in sections else self._doors,
                )
            )
            for driver_config in new.drivers:
                if driver_config.id in plan.to_start:
                    self._start_driver(driver_config, DriverState())
            error = await self._settle(plan.to_start)
            if error is None and self.config_path is not None:
                try:
                    save_config(self.config_path, push.config, version=version)
                except OSError as exc:
                    error = f"cannot save {self.config_path}: {exc.strerror or exc}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("config %s failed", version)
            error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            logger.warning("config %s rolled back: %s", version, error)
            restarted = await self._roll_back(previous, plan)
            return ConfigApplied(
                version=version,
                restarted=list(restarted),
                unchanged=list(plan.unchanged),
                rolled_back=True,
                error=_text(error),
            )
        self.config_version = version
        self._forget_gone_devices()
        logger.info(
            "config %s applied: started %s, stopped %s, restarted %s",
            version,
            list(plan.started),
            list(plan.stopped),
            list(plan.restarted),
        )
        return ConfigApplied(
            version=version,
            started=list(plan.started),
            stopped=list(plan.stopped),
            restarted=list(plan.restarted),
            unchanged=list(plan.unchanged),
            changed=sections,
            persisted=self.config_path is not None,
        )

    def _install(self, settings: _Settings) -> None:
        self.config = settings.config
        self._pseudonymiser = settings.pseudonymiser
        self._allow = settings.allow
        self._doors = settings.doors

    async def _settle(self, ids: tuple[str, ...]) -> str | None:
        """Why a started driver failed to start within the settle time, or None."""
        if not ids:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settle_s
        while True:
            for driver_id in ids:
                # The first failed start decides: the agent would keep retrying it forever.
                state = self.drivers[driver_id]
                if state.restarts:
                    return f"driver {driver_id} did not start: {state.last_error}"
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(min(0.05, remaining))
        for driver_id in ids:
            if self.drivers[driver_id].state != "running":
                return f"driver {driver_id} did not start within {self.settle_s:g} s"
        return None

    async def _roll_back(self, previous: _Settings, plan: DriverPlan) -> tuple[str, ...]:
        """Stop what the push started and bring back what it stopped; the ids brought back."""
        await self._stop_drivers(tuple(i for i in plan.to_start if i in self._driver_tasks))
        self._install(previous)
        back = tuple(i for i in plan.to_stop if i not in self._driver_tasks)
        for driver_config in previous.config.drivers:
            if driver_config.id in back:
                self._start_driver(driver_config, DriverState())
        self._forget_gone_devices()
        return back

    def _forget_gone_devices(self) -> None:
        # A removed driver's devices no longer report; keep health to devices that exist.
        live = {device for state in self.drivers.values() for device in state.devices}
        for device in [d for d in self.device_states if d not in live]:
            del self.device_states[device]

    async def _health_loop(self, client: aiomqtt.Client) -> None:
        # Loops that await aiomqtt also end on the stop flag: on Python 3.11 aiomqtt's
        # asyncio.wait_for can swallow a cancellation that races with a completed publish.
        while not self._stopping.is_set():
            await client.publish(self.topics.health, encode(self.health()), qos=0)
            await asyncio.sleep(self.config.health_interval_s)

    def health(self) -> Health:
        """The agent's self-metrics."""
        stats = self._queue.stats()
        self.counters["replay_backlog"] = self._queue.backlog_size(self._backlog_until)
        now = self._clock.now_ms()
        oldest_age = 0.0 if stats.oldest_created_ms is None else (now - stats.oldest_created_ms)
        return Health(
            ts=now,
            session=self.session,
            queue_depth=stats.depth,
            oldest_age_s=max(0.0, oldest_age / 1000),
            dropped=stats.dropped,
            drivers={name: s.state for name, s in self.drivers.items()},
            devices=dict(self.device_states),
            counters=dict(self.counters),
            disk_free_bytes=shutil.disk_usage(Path.cwd()).free,
            cpu_temp_c=_cpu_temperature(),
        )


def _pseudonymiser(config: GatewayConfig) -> Pseudonymiser:
    secret = config.privacy.site_secret
    if secret is None and not config.privacy.send_raw_credentials:
        msg = "privacy.site_secret is required (use ${ANJU_SITE_SECRET})"
        raise ValueError(msg)
    return Pseudonymiser(
        secret.get_secret_value().encode() if secret else b"",
        send_raw=config.privacy.send_raw_credentials,
    )


def _allow_lists(config: GatewayConfig) -> dict[str, frozenset[str]]:
    return {reader: frozenset(p) for reader, p in config.access.allow.items()}


def _text(message: str) -> str:
    """A message cut to what a payload's text field holds."""
    return message if len(message) <= _MAX_TEXT else message[: _MAX_TEXT - 1] + "…"


def _cpu_temperature() -> float | None:
    zone = Path("/sys/class/thermal/thermal_zone0/temp")
    try:
        return int(zone.read_text()) / 1000
    except (OSError, ValueError):
        return None
