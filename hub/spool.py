"""The spool between acknowledgement and the time-series store.

Every accepted message is durable in the hub's SQLite before it is acknowledged: one row per
message, its payload exactly as received (and, for a data batch of which some readings were
refused, which ones). A forwarder drains the spool to the time-series store in order, building
each write from the columns the ingest path decoded (kept in memory meanwhile); only after a
restart does it decode spooled payloads again.

When the store is down the spool grows and nothing else waits: ingestion, acknowledgements and
alerting go on.  When it returns, the backlog drains oldest first in large writes.  A crash
between a write and its removal from the spool writes those messages again on restart; the
points are the same (series and timestamp), so InfluxDB overwrites them, VictoriaMetrics run
with ``-dedup.minScrapeInterval=1ms`` keeps one, and the embedded store replaces them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import Sequence

import numpy as np

from hub.columns import DeviceTable, Readings
from hub.errors import SinkError
from hub.registry import DeviceInfo
from hub.sinks import Point, SinkBatch, TimeSeriesSink
from hub.store import HubStore, SpoolRow
from wire import Channel, DecodeError, Event, Health, Measurement, decode_as
from wire.columns import decode_data_columns

logger = logging.getLogger(__name__)

# One write gathers spooled messages up to this many readings, so a backlog drains in big
# requests (a write body of roughly 150 bytes a reading; the sink splits larger bodies).
_MAX_READINGS_PER_WRITE = 50_000
_ROWS_PER_READ = 2_000
_MAX_BACKOFF_S = 10.0


def event_point(device: DeviceInfo, event: Event) -> Point:
    """The time-series point of an accepted event (a count, tagged with its kind)."""
    tags = f"{device.tags},kind={event.kind}"
    return Point(Measurement.EVENT.value, tags, {"count": 1.0}, event.ts, device.id)


def health_point(tags: str, gateway: str, health: Health) -> Point:
    """The time-series point of a gateway's health report."""
    fields = {"queue_depth": float(health.queue_depth), "oldest_age_s": health.oldest_age_s}
    fields.update({f"dropped_{k}": float(v) for k, v in health.dropped.items() if k.isidentifier()})
    return Point(Measurement.GATEWAY.value, tags, fields, health.ts, gateway)


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class SpoolEntry:
    """One accepted message: what is spooled, and what the forwarder will write of it."""

    channel: Channel
    gateway: str
    payload: bytes
    count: int  # readings (or points) it holds
    rejected: bytes | None  # int32 indices of refused readings, for a partly accepted batch
    readings: Readings | None
    points: tuple[Point, ...]

    def row(self) -> SpoolRow:
        """The spool row: the message as received."""
        return SpoolRow(self.channel.value, self.gateway, self.count, self.payload, self.rejected)


class SpoolDecoder:
    """Rebuilds a spool entry from its row (after a restart) against the current registry."""

    def __init__(self, devices: DeviceTable) -> None:
        self._devices = devices

    def entry(self, row: SpoolRow) -> SpoolEntry | None:
        """The entry of ``row``; None (logged) if it no longer decodes or places."""
        channel = Channel(row.channel)
        try:
            if channel is Channel.DATA:
                return self._data(row)
            if channel is Channel.EVENT:
                event = decode_as(Event, row.payload)
                device = self._device(event.dev)
                if device is None:
                    return None
                point = event_point(device, event)
            else:
                health = decode_as(Health, row.payload)
                tags = self._devices.gateway_tags.get(row.gateway, "")
                point = health_point(tags, row.gateway, health)
        except DecodeError as exc:
            logger.error(  # noqa: TRY400 - the reason is in the message
                "spooled %s message of %s dropped: %s", channel, row.gateway, exc
            )
            return None
        return SpoolEntry(channel, row.gateway, row.payload, 1, None, None, (point,))

    def _device(self, dev: str) -> DeviceInfo | None:
        slot = self._devices.slot_of.get(dev)
        device = self._devices.device(slot) if slot is not None else None
        if device is None:
            logger.error("spooled event of device %r dropped: no longer in the registry", dev)
        return device

    def _data(self, row: SpoolRow) -> SpoolEntry | None:
        columns = decode_data_columns(row.payload)
        keep = np.ones(len(columns), dtype=np.bool_)
        if row.rejected:
            keep[np.frombuffer(row.rejected, dtype=np.int32)] = False
        slots = self._devices.slots(columns.devs)
        removed = keep & (slots < 0)
        if removed.any():
            logger.error(
                "%d spooled readings of %s dropped: their devices left the registry",
                int(removed.sum()),
                row.gateway,
            )
            keep &= ~removed
        readings = Readings(slots, columns.ts, columns.fields).take(keep)
        return SpoolEntry(Channel.DATA, row.gateway, row.payload, len(readings), None, readings, ())


class Forwarder:
    """Drains the spool into the time-series sink, in order, retrying until it succeeds."""

    def __init__(self, store: HubStore, sink: TimeSeriesSink, devices: DeviceTable) -> None:
        self._store = store
        self._sink = sink
        self._devices = devices
        self._decoder = SpoolDecoder(devices)
        self._cache: dict[int, SpoolEntry] = {}
        self._last_id = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self.depth_batches, self.depth_points = store.spool_depth_sync()
        # Messages up to this id were spooled before this process started (a crash, an outage).
        self._backlog_max_id = store.spool_max_id_sync()
        if self.depth_batches == 0:
            self._drained.set()
        self.sink_ok = True
        self.counters: collections.Counter[str] = collections.Counter()

    def spooled(self, last_id: int, entries: Sequence[SpoolEntry]) -> None:
        """Messages were committed to the spool with ids up to ``last_id``, in order.

        Their entries are kept, so the forwarder never reads back or decodes them again.
        """
        first_id = last_id - len(entries) + 1
        for offset, entry in enumerate(entries):
            spool_id = first_id + offset
            if spool_id > self._last_id:  # else the forwarder found it before it was announced
                self._cache[spool_id] = entry
                self.depth_batches += 1
                self.depth_points += entry.count
        self._drained.clear()
        self._wake.set()

    async def wait_drained(self) -> None:
        """Wait until the spool is empty."""
        await self._drained.wait()

    async def run(self) -> None:
        """Forward forever."""
        while True:
            # Cleared before looking, so a message spooled meanwhile wakes the wait below.
            self._wake.clear()
            ids = await self._store.spooled_ids(self._last_id, _ROWS_PER_READ)
            if not ids:
                if not self._wake.is_set():  # nothing was spooled while we looked
                    self._drained.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                continue
            await self._forward(ids)

    async def _forward(self, ids: list[int]) -> None:
        missing = [i for i in ids if i not in self._cache]
        rows = await self._store.spooled_rows(missing) if missing else {}
        taken: list[int] = []
        readings: list[Readings] = []
        points: list[Point] = []
        total = counted = 0
        for spool_id in ids:
            entry = self._cache.pop(spool_id, None)
            if entry is not None or spool_id <= self._backlog_max_id:
                counted += 1  # announced (or from before start), so in the depth counters
            if entry is None:
                row = rows.get(spool_id)
                entry = self._decoder.entry(row) if row is not None else None
            taken.append(spool_id)
            if entry is not None:
                if entry.readings is not None and len(entry.readings):
                    readings.append(entry.readings)
                points.extend(entry.points)
                total += entry.count
            if total >= _MAX_READINGS_PER_WRITE:
                break
        batch = SinkBatch(Readings.concat(readings) if readings else None, points, self._devices)
        await self._write(batch)
        await self._store.unspool_through(taken[-1])
        self._last_id = taken[-1]
        self.depth_batches = max(0, self.depth_batches - counted)
        self.depth_points = max(0, self.depth_points - total)
        self.counters["points_written"] += total
        self.counters["writes"] += 1

    async def _write(self, batch: SinkBatch) -> None:
        delay = 0.25
        while True:
            try:
                await self._sink.write(batch)
            except SinkError as exc:
                if self.sink_ok:
                    logger.warning("time-series store unavailable, spooling: %s", exc)
                self.sink_ok = False
                self.counters["write_errors"] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)
                continue
            if not self.sink_ok:
                logger.info("time-series store is back; draining %d points", self.depth_points)
            self.sink_ok = True
            return
