"""The hub keeps the rules' timers across a restart: a `for` that started before it fires on time
after it."""

from __future__ import annotations

from pathlib import Path

from hub import Hub, HubConfig, NotifierSettings
from hub.columns import Readings
from hub.lifecycle import SystemTransition

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
T0 = 1_800_000_000_000


def _hub(tmp_path: Path) -> Hub:
    return Hub(
        HubConfig(
            site_file=CONFIG_DIR / "site.yaml",
            rules=(CONFIG_DIR / "rules" / "safety.yaml",),
            data_dir=tmp_path,
            notifiers=NotifierSettings(log=False),
        )
    )


def _close(hub: Hub) -> None:
    hub.store.close()
    hub.alert_store.close()


async def test_a_pending_threshold_survives_a_restart_and_fires_at_its_deadline(
    tmp_path: Path,
) -> None:
    hub = _hub(tmp_path)
    device = hub.registry.devices["b3-2-201-th"]
    slot = hub.devices.slot_of[device.id]
    hub.rules.on_readings(Readings.one(slot, T0, {"temperature": 60.0}))
    hub.rules.on_readings(Readings.one(slot, T0 + 4000, {"temperature": 61.0}))
    assert hub.rules.backlog == 2  # evaluated off the ingest path
    assert hub.rules.evaluate() == 2
    [pending] = [a for a in hub.rules.engine.active() if a.rule_id == "high-temperature"]
    assert pending.state == "pending"
    await hub.save_rule_state()
    _close(hub)

    again = _hub(tmp_path)
    try:
        [restored] = [a for a in again.rules.engine.active() if a.rule_id == "high-temperature"]
        assert restored.since_ms == T0
        fired = again.rules.engine.on_reading(
            again.rules.subject(device),
            T0 + 10_000,
            {"temperature": 62.0},
        )
        assert [(t.rule_id, t.state, t.since_ms) for t in fired] == [
            ("high-temperature", "firing", T0)
        ]
    finally:
        _close(again)


async def test_a_corrupt_snapshot_is_ignored_and_the_hub_starts_fresh(tmp_path: Path) -> None:
    hub = _hub(tmp_path)
    await hub.alert_store.save_engine(b"{not json", T0)
    _close(hub)
    again = _hub(tmp_path)
    try:
        assert again.rules.engine.active() == []
    finally:
        _close(again)


async def test_an_alert_opened_after_the_last_snapshot_is_taken_back_and_can_clear(
    tmp_path: Path,
) -> None:
    hub = _hub(tmp_path)
    device = hub.registry.devices["b3-2-201-th"]
    fired = SystemTransition(
        rule_id="high-temperature",
        device=device.id,
        state="firing",
        ts_ms=T0 + 10_000,
        since_ms=T0,
        severity="critical",
        issue_class="hard",
        summary="Possible fire",
        message="hot",
        labels=dict(device.labels),
        value=61.0,
    )
    # The alert is on disk; the crash came before any rule snapshot.
    outcome = hub.alerts.book.on_transition(fired, T0 + 10_000)
    await hub.alert_store.commit(outcome, [], T0 + 10_000)
    _close(hub)

    again = _hub(tmp_path)
    try:
        [adopted] = again.rules.engine.active()
        assert (adopted.rule_id, adopted.state, adopted.since_ms) == (
            "high-temperature",
            "firing",
            T0,
        )
        cleared = again.rules.engine.on_reading(
            again.rules.subject(device), T0 + 20_000, {"temperature": 21.0}
        )
        assert [(t.rule_id, t.state) for t in cleared] == [("high-temperature", "resolved")]
    finally:
        _close(again)
