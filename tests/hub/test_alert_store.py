"""The alert store's outbox: a delivery key is sent once, unsent ones survive a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from hub.alert_store import AlertStore
from hub.alerts import AlertManager
from hub.lifecycle import Alert, Dispatch, Outcome, Status
from hub.notifiers import Notification, NotifyError
from hub.registry import Registry
from hub.routing import AlertingSettings

T0 = 1_800_000_000_000


def _alert() -> Alert:
    return Alert(
        id="a1",
        rule_id="leak",
        subject="pump-leak",
        severity="major",
        issue_class="ordinary",
        summary="Leak",
        message="Water in the pump room",
        labels={"grid": "north"},
        value=None,
        status=Status.FIRING,
        started_ms=T0,
        updated_ms=T0,
        route="ordinary",
        life_safety=False,
    )


def _outcome(alert: Alert, *, transition: str = "firing", people: tuple[str, ...]) -> Outcome:
    out = Outcome()
    out.touch(alert)
    out.dispatches.append(Dispatch("firing", transition, (alert.record(),), people, urgent=False))
    return out


async def test_a_delivery_key_is_queued_once_and_only_new_recipients_make_new_jobs(
    tmp_path: Path,
) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    try:
        alert = _alert()
        jobs = await store.commit(_outcome(alert, people=("wang",)), ["sms", "robot"], T0)
        assert [(j.channel, j.recipients) for j in jobs] == [
            ("sms", ("wang",)),
            ("robot", ("wang",)),
        ]
        again = await store.commit(_outcome(alert, people=("wang", "li")), ["sms", "robot"], T0)
        assert [(j.channel, j.recipients) for j in again] == [("sms", ("li",)), ("robot", ("li",))]
        step = await store.commit(
            _outcome(alert, transition="step:1", people=("wang",)), ["sms"], T0
        )
        assert len(step) == 1  # another transition is another key
    finally:
        store.close()


async def test_unsent_deliveries_survive_a_restart_and_sent_ones_do_not_come_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "alerts.sqlite3"
    store = AlertStore(path)
    jobs = await store.commit(_outcome(_alert(), people=("wang",)), ["sms", "robot"], T0)
    sms = next(j for j in jobs if j.channel == "sms")
    await store.mark(sms, status="sent", error=None, next_try_ms=0, now_ms=T0 + 10)
    store.close()

    reopened = AlertStore(path)
    try:
        unsent = reopened.unsent_sync()
        assert [(j.channel, j.recipients, j.transition) for j in unsent] == [
            ("robot", ("wang",), "firing")
        ]
        alerts, _, _ = reopened.load_state_sync()
        assert [a.id for a in alerts] == ["a1"]
    finally:
        reopened.close()


class _Refusing:
    name = "sms"

    def __init__(self) -> None:
        self.tries = 0

    async def send(self, notification: Notification) -> None:
        del notification
        self.tries += 1
        raise NotifyError("gateway answered 503")

    async def aclose(self) -> None:
        return None


async def test_a_failing_channel_is_retried_then_marked_failed_and_visible(
    tmp_path: Path, registry: Registry
) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    channel = _Refusing()
    settings = AlertingSettings.model_validate(
        {"group_wait": 0, "retry_delays": ["10ms"], "give_up_after": "60ms"}
    )
    manager = AlertManager(
        store=store,
        registry=registry,
        notifiers=[channel],
        clock_ms=lambda: time.time_ns() // 1_000_000,
        settings=settings,
    )
    runner = asyncio.create_task(manager.run())
    try:
        outcome = _outcome(_alert(), people=("wang-fang",))
        manager._inbox.put_nowait((lambda _now: outcome, None))
        await manager.wait_idle()
    finally:
        runner.cancel()
        await manager.aclose()
    found = await store.alert("a1")
    store.close()
    assert found is not None
    _, deliveries = found
    assert [(d.channel, d.status, d.last_error) for d in deliveries] == [
        ("sms", "failed", "gateway answered 503")
    ]
    assert manager.counters["notifications_failed"] == 1
    assert channel.tries >= 3  # retried until it was given up
    assert deliveries[0].attempts == channel.tries


async def test_a_gateway_that_stays_offline_raises_gateway_offline_after_the_grace_time(
    tmp_path: Path, registry: Registry
) -> None:
    clock = [T0]
    store = AlertStore(tmp_path / "alerts.sqlite3")
    manager = AlertManager(store=store, registry=registry, notifiers=[], clock_ms=lambda: clock[0])
    gateway = next(iter(registry.gateways))
    runner = asyncio.create_task(manager.run())
    try:
        manager.gateway_presence(gateway, online=False, ts_ms=T0)
        await manager.wait_idle()
        [alert] = manager.book.active.values()
        assert (alert.rule_id, alert.status.value) == ("gateway-offline", "pending")
        assert alert.due_ms == T0 + 120_000  # the default grace time
        assert alert.labels["gateway"] == gateway
        # Back before the grace time: nothing fired, nothing open.
        manager.gateway_presence(gateway, online=True, ts_ms=T0 + 30_000)
        await manager.wait_idle()
        assert manager.book.active == {}
        assert manager.counters["fired"] == 0
    finally:
        runner.cancel()
        await manager.aclose()
        store.close()
