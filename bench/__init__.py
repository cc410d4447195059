"""Reproducible benchmarks of anju against real servers (``make bench``; see BENCHMARKS.md).

- ``python -m bench.ingest``: end-to-end hub throughput (publish → acknowledged → stored in
  VictoriaMetrics), beside the ceiling of the same broker and stream without a hub.
- ``python -m bench.alert_latency``: smoke event published → webhook received, under load.
- ``python -m bench.profile_ingest``: where the hub's ingest path spends its time (cProfile).
"""
