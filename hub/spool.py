"""The spool between acknowledgement and the time-series store.

Every accepted batch is durable in the hub's SQLite before it is acknowledged, and a forwarder
drains it to the time-series store in order.

When the store is down the spool grows and nothing else waits: ingestion, acknowledgements and
alerting go on.  When it returns, the backlog drains oldest first in large writes.  A crash
between a write and its removal from the spool writes that batch again on restart; the points
are the same (series and timestamp), so InfluxDB overwrites them, and VictoriaMetrics run with
``-dedup.minScrapeInterval=1ms`` keeps one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Sequence

import orjson

from hub.errors import SinkError
from hub.sinks import Point, TimeSeriesSink
from hub.store import HubStore

logger = logging.getLogger(__name__)

# One write gathers spooled batches up to this many points, so a backlog drains in big requests.
_MAX_POINTS_PER_WRITE = 20_000
_MAX_BACKOFF_S = 10.0


def encode_points(points: Sequence[Point]) -> bytes:
    """Serialise points for the spool."""
    return orjson.dumps([(p.measurement, p.tags, p.fields, p.ts_ms, p.device) for p in points])


def decode_points(body: bytes) -> list[Point]:
    """Points back from the spool."""
    return [Point(m, t, f, ts, d) for m, t, f, ts, d in orjson.loads(body)]


class Forwarder:
    """Drains the spool into the time-series sink, in order, retrying until it succeeds."""

    def __init__(self, store: HubStore, sink: TimeSeriesSink) -> None:
        self._store = store
        self._sink = sink
        self._cache: dict[int, list[Point]] = {}
        self._last_id = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self.depth_batches, self.depth_points = store.spool_depth_sync()
        # Batches up to this id were spooled before this process started (a crash, an outage).
        self._backlog_max_id = store.spool_max_id_sync()
        if self.depth_batches == 0:
            self._drained.set()
        self.sink_ok = True
        self.counters: collections.Counter[str] = collections.Counter()

    def spooled(self, spool_id: int, points: list[Point]) -> None:
        """A batch was committed to the spool (its points are kept to avoid reading them back)."""
        if spool_id <= self._last_id:
            return  # the forwarder found it in the spool before it was announced
        self._cache[spool_id] = points
        self.depth_batches += 1
        self.depth_points += len(points)
        self._drained.clear()
        self._wake.set()

    async def wait_drained(self) -> None:
        """Wait until the spool is empty."""
        await self._drained.wait()

    async def run(self) -> None:
        """Forward forever."""
        while True:
            # Cleared before looking, so a batch spooled meanwhile wakes the wait below.
            self._wake.clear()
            rows = await self._store.spooled(self._last_id, 64)
            if not rows:
                if not self._wake.is_set():  # nothing was spooled while we looked
                    self._drained.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                continue
            ids: list[int] = []
            points: list[Point] = []
            counted = 0
            for spool_id, _count, body in rows:
                batch = self._cache.pop(spool_id, None)
                if batch is not None or spool_id <= self._backlog_max_id:
                    counted += 1  # announced (or from before start), so in the depth counters
                points.extend(batch if batch is not None else decode_points(body))
                ids.append(spool_id)
                if len(points) >= _MAX_POINTS_PER_WRITE:
                    break
            await self._write(points)
            for spool_id in ids:
                await self._store.unspool(spool_id)
            self._last_id = ids[-1]
            self.depth_batches = max(0, self.depth_batches - counted)
            self.depth_points = max(0, self.depth_points - len(points))
            self.counters["points_written"] += len(points)
            self.counters["writes"] += 1

    async def _write(self, points: list[Point]) -> None:
        delay = 0.25
        while True:
            try:
                await self._sink.write(points)
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
