"""The hub's self-metrics, served in the Prometheus text format.

Read at scrape time from the counters the hub keeps anyway, so the hot path pays nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from hub.app import Hub


class HubCollector(Collector):
    """Ingest, spool, acknowledgement, alert and gateway figures of one hub."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        """Build the metric families at scrape time."""
        hub = self._hub
        ingest = CounterMetricFamily(
            "anju_hub_ingest", "Messages and items handled by the ingest path", labels=["what"]
        )
        for name, value in sorted(hub.ingestor.counters.items()):
            ingest.add_metric([name], value)
        yield ingest
        spool = GaugeMetricFamily(
            "anju_hub_spool_depth", "Waiting for the time-series store", labels=["unit"]
        )
        spool.add_metric(["batches"], hub.forwarder.depth_batches)
        spool.add_metric(["points"], hub.forwarder.depth_points)
        yield spool
        yield GaugeMetricFamily(
            "anju_hub_store_up",
            "1 while the time-series store accepts writes",
            value=1 if hub.forwarder.sink_ok else 0,
        )
        forwarded = CounterMetricFamily(
            "anju_hub_forwarder", "Writes to the time-series store", labels=["what"]
        )
        for name, value in sorted(hub.forwarder.counters.items()):
            forwarded.add_metric([name], value)
        yield forwarded
        alerts = CounterMetricFamily("anju_hub_alerts", "Alert transitions", labels=["what"])
        for name, value in sorted(hub.alerts.counters.items()):
            alerts.add_metric([name], value)
        yield alerts
        online = GaugeMetricFamily(
            "anju_gateway_online", "1 while the gateway is connected", labels=["gateway"]
        )
        acked = GaugeMetricFamily(
            "anju_gateway_acked_seq", "Highest seq acknowledged", labels=["gateway"]
        )
        queue = GaugeMetricFamily(
            "anju_gateway_queue_depth", "Messages the gateway still holds", labels=["gateway"]
        )
        for gateway, status in sorted(hub.ingestor.gateways.items()):
            online.add_metric([gateway], 1 if status.online else 0)
            acked.add_metric([gateway], status.acked)
            if status.health is not None:
                queue.add_metric([gateway], status.health.get("queue_depth", 0))
        yield online
        yield acked
        yield queue


def hub_registry(hub: Hub) -> CollectorRegistry:
    """A registry holding only this hub's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub))
    return registry
