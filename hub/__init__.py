"""The anju hub: ingest, registry, storage, alerts and notifiers."""
