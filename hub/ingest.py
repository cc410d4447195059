"""The ingest path: validate, quarantine, deduplicate, enrich, evaluate rules, store, acknowledge.

:meth:`Ingestor.handle` runs on the event loop for every message and never waits for I/O.
Accepted points, events and quarantined messages are buffered; :meth:`Ingestor.run_writer`
flushes them, and only after a flush has made a message durable does the hub acknowledge it to
its gateway.  Rules run at ingest time, so alerts never wait behind storage.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import logging
import time
from collections.abc import Callable, Mapping
from itertools import chain
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray
from pydantic import BaseModel

from hub.columns import DeviceTable, LatestValues, Readings
from hub.errors import StoreError
from hub.registry import DeviceInfo, Registry
from hub.spool import Forwarder, SpoolEntry, event_point, health_point
from hub.store import Batch, GatewayRecord, HubStore, QuarantineEntry, StoredEvent
from wire import (
    Ack,
    Channel,
    DecodeError,
    Event,
    GatewayState,
    Health,
    Reply,
    TopicError,
    decode,
    parse_topic,
    seq_ranges,
)
from wire.columns import DataLists, columns_of, parse_data

logger = logging.getLogger(__name__)

_SEEN_WINDOW = 100_000
# Data messages are made columns together once this many readings wait (or a burst ends).
_MAX_STAGED_READINGS = 5_000
_SEQ_CHANNELS = frozenset({Channel.DATA, Channel.EVENT})


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


class SeqWindow:
    """Which seqs of one gateway were already accepted (bounded memory).

    Seqs that fall out of the window raise the floor; anything at or below it counts as seen.
    """

    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        self._seen: set[int] = set()
        self._order: collections.deque[int] = collections.deque()
        self._floor = -1

    def check_and_add(self, seq: int) -> bool:
        """Record ``seq``; return False if it was seen before."""
        if seq <= self._floor or seq in self._seen:
            return False
        self._seen.add(seq)
        self._order.append(seq)
        if len(self._order) > self._size:
            old = self._order.popleft()
            self._seen.discard(old)
            self._floor = max(self._floor, old)
        return True


class DeviceState(enum.StrEnum):
    """What the hub can say about a device right now."""

    ONLINE = "online"  # its gateway is up and the device answers
    OFFLINE = "offline"  # its gateway reports it faulty or silent
    UNKNOWN = "unknown"  # its gateway is down: nobody can tell


@dataclasses.dataclass(slots=True)
class GatewayStatus:
    """What the hub knows of one gateway right now."""

    online: bool = False
    session: str | None = None
    agent: str | None = None
    config_hash: str | None = None
    last_seen_ms: int | None = None
    skew_ms: int | None = None
    health: dict[str, Any] | None = None
    window: SeqWindow = dataclasses.field(default_factory=SeqWindow)
    acked: int = -1


@dataclasses.dataclass(frozen=True, slots=True)
class _Staged:
    """A data message checked and deduplicated, waiting to be made columns with its burst."""

    topic: str
    gateway: str
    payload: bytes
    received: int
    lists: DataLists


@dataclasses.dataclass(slots=True)
class _Pending:
    """Everything received since the last flush."""

    spool: list[SpoolEntry] = dataclasses.field(default_factory=list)
    readings: int = 0
    events: list[StoredEvent] = dataclasses.field(default_factory=list)
    quarantine: list[QuarantineEntry] = dataclasses.field(default_factory=list)
    seen: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)
    gateway_states: dict[str, GatewayRecord] = dataclasses.field(default_factory=dict)
    seqs: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    urgent: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.spool or self.events or self.quarantine or self.seqs or self.gateway_states
        )


class RuleSink:
    """What the ingest path hands readings and events to (the rules engine, via the hub)."""

    def on_readings(self, readings: Readings) -> None:
        """A message's readings were accepted (columns; slots of :attr:`Ingestor.devices`)."""

    def on_event(self, device: DeviceInfo, ts_ms: int, kind: str, data: Mapping[str, Any]) -> None:
        """An event was accepted."""

    def on_gateway(self, gateway: str, *, online: bool, ts_ms: int) -> None:
        """A gateway came online or went offline."""


class Ingestor:
    """Turns broker messages into stored, acknowledged data and rule input."""

    def __init__(
        self,
        *,
        registry: Registry,
        devices: DeviceTable,
        store: HubStore,
        forwarder: Forwarder,
        rules: RuleSink,
        publish_ack: Callable[[str, Ack], None],
        flush_interval_s: float = 0.2,
        max_batch_lines: int = 20_000,
        max_future_skew_s: float = 300.0,
        quarantine_keep: int = 10_000,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.registry = registry
        self._store = store
        self._forwarder = forwarder
        self._rules = rules
        self._publish_ack = publish_ack
        self._flush_interval = flush_interval_s
        self._max_lines = max_batch_lines
        self._max_future_ms = int(max_future_skew_s * 1000)
        self._quarantine_keep = quarantine_keep
        self._clock_ms = clock_ms
        self._pending = _Pending()
        self._staged: list[_Staged] = []
        self._staged_readings = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.counters: collections.Counter[str] = collections.Counter()
        self.gateways: dict[str, GatewayStatus] = {gw: GatewayStatus() for gw in registry.gateways}
        # Dedup survives restarts: the window starts with what the store already accepted.
        for gateway, seqs in store.load_seen(per_gateway=_SEEN_WINDOW).items():
            status = self.gateways.get(gateway)
            if status is not None:
                for seq in seqs:
                    status.window.check_and_add(seq)
        self.devices = devices
        self.latest = LatestValues()
        self._faulted: set[str] = set()

    def use_registry(self, registry: Registry) -> None:
        """Take a reloaded registry: new gateways and devices, moved places."""
        self.registry = registry
        self.devices.use(registry)
        for gateway in registry.gateways:
            self.gateways.setdefault(gateway, GatewayStatus())

    # -- the hot path ------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, received_ms: int | None = None) -> None:
        """Process one message from the broker.  Never raises, never blocks."""
        received = self._clock_ms() if received_ms is None else received_ms
        self.counters["messages"] += 1
        try:
            address = parse_topic(topic)
        except TopicError as exc:
            self._quarantine(topic, None, "topic", exc.reason, payload, received)
            return
        gateway = address.gateway
        if address.site != self.registry.site_id:
            self._quarantine(
                topic, gateway, "site", f"unknown site {address.site!r}", payload, received
            )
            return
        status = self.gateways.get(gateway)
        if status is None:
            self._quarantine(
                topic, gateway, "gateway", f"unknown gateway {gateway!r}", payload, received
            )
            return
        if address.channel is Channel.DATA:
            # The hot path: checked as lists here, made columns together with the rest of the
            # burst (process_staged), never an object per reading.
            try:
                lists = parse_data(payload)
            except DecodeError as exc:
                self._reject_undecodable(topic, gateway, address.channel, exc, payload, received)
                return
            status.last_seen_ms = received
            if self._accept_seq(topic, gateway, status, lists.seq, payload, received):
                self._staged.append(_Staged(topic, gateway, payload, received, lists))
                self._staged_readings += len(lists)
                if self._staged_readings >= _MAX_STAGED_READINGS:
                    self.process_staged()
            return
        try:
            message = decode(address.channel, payload)
        except DecodeError as exc:
            self._reject_undecodable(topic, gateway, address.channel, exc, payload, received)
            return
        status.last_seen_ms = received
        self._dispatch(topic, gateway, status, message, payload, received)

    def _reject_undecodable(
        self,
        topic: str,
        gateway: str,
        channel: Channel,
        exc: DecodeError,
        payload: bytes,
        received: int,
    ) -> None:
        # Kept whole in quarantine; acknowledging it stops the gateway resending a message
        # that can never pass (only the gateway itself may publish under its topics).
        seq = _salvage_seq(payload) if channel in _SEQ_CHANNELS else None
        self._quarantine(topic, gateway, exc.field, exc.reason, payload, received, seq=seq)

    def _dispatch(
        self,
        topic: str,
        gateway: str,
        status: GatewayStatus,
        message: BaseModel,
        payload: bytes,
        received: int,
    ) -> None:
        if isinstance(message, Event):
            if self._accept_seq(topic, gateway, status, message.seq, payload, received):
                self._on_event(topic, gateway, message, payload, received)
        elif isinstance(message, GatewayState):
            self._on_state(gateway, status, message, received)
        elif isinstance(message, Health):
            self._on_health(gateway, status, message, payload)
        elif isinstance(message, Reply):
            self.counters["replies"] += 1
            logger.info("reply from %s: %s", gateway, message.model_dump())
        else:  # ack or cmd published by someone else under a gateway's topic
            self._quarantine(topic, gateway, "topic", "not an uplink channel", payload, received)

    def _accept_seq(
        self,
        topic: str,
        gateway: str,
        status: GatewayStatus,
        seq: int,
        payload: bytes,
        received: int,
    ) -> bool:
        if not status.window.check_and_add(seq):
            self.counters["duplicates"] += 1
            # Stored already: record why it was dropped, and acknowledge it again, since the
            # gateway evidently missed the first acknowledgement.
            self._quarantine(
                topic, gateway, "seq", f"duplicate seq {seq}", payload, received, seq=seq
            )
            return False
        self._pending.seqs.setdefault(gateway, []).append(seq)
        self._pending.seen.append((gateway, seq, received))
        return True

    def _check_device(
        self, gateway: str, dev: str, ts: int, received: int
    ) -> tuple[DeviceInfo | None, str, str]:
        device = self.registry.devices.get(dev)
        if device is None:
            return None, "dev", f"unknown device {dev!r}"
        if device.gateway != gateway:
            return None, "dev", f"device {dev!r} belongs to gateway {device.gateway!r}"
        if ts - received > self._max_future_ms:
            return None, "ts", f"{(ts - received) / 1000:.0f} s ahead of the hub clock"
        return device, "", ""

    def process_staged(self) -> None:
        """Make columns of the data messages checked since the last call, and take them in.

        Called at the end of every burst of messages from the broker and before a flush: a
        burst of a thousand one-reading messages costs a few numpy calls, not a few thousand.
        """
        staged, self._staged, self._staged_readings = self._staged, [], 0
        if not staged:
            return
        ts, fields = columns_of([m.lists for m in staged])
        devs = list(chain.from_iterable(m.lists.devs for m in staged))
        sizes = np.fromiter((len(m.lists) for m in staged), dtype=np.int64, count=len(staged))
        ends = np.cumsum(sizes)
        starts = ends - sizes
        slots = self.devices.slots(devs)
        index_of = self.devices.gateway_index
        gateways = np.repeat(
            np.fromiter((index_of[m.gateway] for m in staged), dtype=np.int32, count=len(staged)),
            sizes,
        )
        received = np.repeat(
            np.fromiter((m.received for m in staged), dtype=np.int64, count=len(staged)), sizes
        )
        known = slots >= 0
        mine = known & (self.devices.gateway_of_slot[np.where(known, slots, 0)] == gateways)
        accepted = mine & (ts - received <= self._max_future_ms)
        readings = Readings(slots, ts, fields)
        rejected_rows: list[bytes | None] = [None] * len(staged)
        counts = sizes
        if not accepted.all():
            counts = np.add.reduceat(accepted.astype(np.int64), starts)
            for k in np.flatnonzero(counts < sizes).tolist():
                self._reject_readings(staged[k], devs, slots, ts, accepted, int(starts[k]))
                part = accepted[starts[k] : ends[k]]
                rejected_rows[k] = np.flatnonzero(~part).astype(np.int32).tobytes()
            readings = readings.take(accepted)
        total = len(readings)
        self.counters["readings"] += total
        self.counters["batches"] += len(staged)
        self.counters["replayed_batches"] += sum(1 for m in staged if m.lists.replay)
        if total:
            self.latest.update(readings)
            self._rules.on_readings(readings)
        # One spool row per message, as received; the first carries the columns of them all.
        carrier = readings if total else None
        for k, message in enumerate(staged):
            count = int(counts[k])
            self._pending.spool.append(
                SpoolEntry(
                    Channel.DATA,
                    message.gateway,
                    message.payload,
                    count,
                    rejected_rows[k],
                    carrier,
                    (),
                )
            )
            carrier = None
        self._pending.readings += total
        if self._pending.readings >= self._max_lines:
            self._wake.set()

    def _reject_readings(
        self,
        message: _Staged,
        devs: list[str],
        slots: NDArray[np.int32],
        ts: NDArray[np.int64],
        accepted: NDArray[np.bool_],
        start: int,
    ) -> None:
        """Quarantine a message whose readings were not all accepted (the rest go on)."""
        n = len(message.lists)
        part = accepted[start : start + n]
        rejected = np.flatnonzero(~part)
        index = int(rejected[0])
        field, reason = self._rejection(
            message.gateway,
            devs[start + index],
            int(slots[start + index]),
            int(ts[start + index]),
            message.received,
        )
        summary = f"{len(rejected)} of {n} readings rejected; first: {reason}"
        self._quarantine(
            message.topic,
            message.gateway,
            f"readings.{index}.{field}",
            summary,
            message.payload,
            message.received,
        )
        self.counters["rejected_readings"] += len(rejected)

    def _rejection(
        self, gateway: str, dev: str, slot: int, ts: int, received: int
    ) -> tuple[str, str]:
        """Why a reading was not accepted: the field and the reason."""
        device = self.devices.device(slot) if slot >= 0 else None
        if device is None:
            return "dev", f"unknown device {dev!r}"
        if device.gateway != gateway:
            return "dev", f"device {dev!r} belongs to gateway {device.gateway!r}"
        ahead = ts - received
        return "ts", f"{ahead / 1000:.0f} s ahead of the hub clock"

    def _on_event(
        self, topic: str, gateway: str, event: Event, payload: bytes, received: int
    ) -> None:
        device, field, reason = self._check_device(gateway, event.dev, event.ts, received)
        if device is None:
            self._quarantine(topic, gateway, field, reason, payload, received)
            return
        self.counters["events"] += 1
        if event.kind == "device.fault":
            self._faulted.add(device.id)
        elif event.kind == "device.recovered":
            self._faulted.discard(device.id)
        self.process_staged()  # the spool keeps arrival order
        self._pending.spool.append(
            SpoolEntry(
                Channel.EVENT, gateway, payload, 1, None, None, (event_point(device, event),)
            )
        )
        self._pending.events.append(
            StoredEvent(
                event.ts,
                received,
                gateway,
                event.seq,
                device.id,
                event.kind,
                event.data,
                event.replay,
            )
        )
        self._pending.urgent = True
        self._wake.set()
        self._rules.on_event(device, event.ts, event.kind, event.data)

    def _on_state(
        self, gateway: str, status: GatewayStatus, state: GatewayState, received: int
    ) -> None:
        status.online = state.online
        status.session = state.session
        if state.online:
            status.agent = state.agent
            status.config_hash = state.config_hash
            status.skew_ms = received - state.ts
        self.counters["state_changes"] += 1
        self._pending.gateway_states[gateway] = GatewayRecord(
            gateway=gateway,
            online=state.online,
            session=state.session,
            agent=status.agent,
            config_hash=status.config_hash,
            last_seen_ms=received,
            skew_ms=status.skew_ms,
        )
        logger.info("gateway %s is %s", gateway, "online" if state.online else "offline")
        self._rules.on_gateway(gateway, online=state.online, ts_ms=received)

    def device_state(self, device_id: str) -> DeviceState:
        """Online, offline, or unknown when its gateway is down.

        A dead gateway proves nothing about its devices, so they are not called offline.
        """
        device = self.registry.devices[device_id]
        if not self.gateways[device.gateway].online:
            return DeviceState.UNKNOWN
        return DeviceState.OFFLINE if device_id in self._faulted else DeviceState.ONLINE

    def _on_health(
        self, gateway: str, status: GatewayStatus, health: Health, payload: bytes
    ) -> None:
        status.health = health.model_dump()
        point = health_point(self.devices.gateway_tags[gateway], gateway, health)
        self.process_staged()  # the spool keeps arrival order
        self._pending.spool.append(
            SpoolEntry(Channel.HEALTH, gateway, payload, 1, None, None, (point,))
        )

    def _quarantine(
        self,
        topic: str,
        gateway: str | None,
        field: str,
        reason: str,
        payload: bytes,
        received: int,
        *,
        seq: int | None = None,
    ) -> None:
        self.counters["quarantined"] += 1
        self.counters[f"quarantined.{field.split('.', maxsplit=1)[0]}"] += 1
        self._pending.quarantine.append(
            QuarantineEntry(received, topic, gateway, field, reason, payload)
        )
        if seq is not None and gateway is not None:
            # Acknowledgeable once its quarantine record is durable.
            self._pending.seqs.setdefault(gateway, []).append(seq)
        logger.debug("quarantined message on %s: %s: %s", topic, field, reason)

    # -- durability and acknowledgement --------------------------------------------------------

    async def run_writer(self) -> None:
        """Flush buffered data periodically (at once for events); acknowledge what is durable."""
        while True:
            if not self._pending.urgent:
                try:
                    async with asyncio.timeout(self._flush_interval):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Make everything buffered durable in one transaction, then acknowledge it.

        If the hub's own database cannot be written (a full disk), nothing is acknowledged and
        the batch is retried: the gateways keep the data meanwhile.
        """
        self.process_staged()
        if not self._pending:
            return
        self._idle.clear()
        pending, self._pending = self._pending, _Pending()
        batch = Batch(
            created_ms=self._clock_ms(),
            quarantine=pending.quarantine,
            events=pending.events,
            seen=pending.seen,
            gateway_states=list(pending.gateway_states.values()),
        )
        batch.spool = [entry.row() for entry in pending.spool]
        delay = 0.25
        while True:
            try:
                last_spool_id = await self._store.commit_batch(
                    batch, quarantine_keep=self._quarantine_keep
                )
                break
            except StoreError as exc:
                self.counters["store_errors"] += 1
                logger.error(  # noqa: TRY400 - the reason is in the message; no traceback needed
                    "cannot make data durable, retrying in %.1f s: %s", delay, exc
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if pending.spool:
            self._forwarder.spooled(last_spool_id, pending.spool)
        self.counters["flushes"] += 1
        self._acknowledge(pending.seqs)
        self._idle.set()

    def _acknowledge(self, durable: Mapping[str, list[int]]) -> None:
        for gateway, seqs in durable.items():
            status = self.gateways[gateway]
            ranges = seq_ranges(seqs)
            top = ranges[-1][1]
            status.acked = max(status.acked, top)
            # The seq alone identifies what is acknowledged; the session is informative.
            ack = Ack(session=status.session or "unknown", seq=top, ranges=ranges)
            self._publish_ack(gateway, ack)
            self.counters["acks"] += 1

    async def wait_idle(self) -> None:
        """Wait until everything received so far is durable and acknowledged."""
        await self.flush()
        await self._idle.wait()


def _salvage_seq(payload: bytes) -> int | None:
    """The seq of a payload that failed validation, if it plainly has one."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    seq = obj.get("seq") if isinstance(obj, dict) else None
    if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**63:
        return seq
    return None
