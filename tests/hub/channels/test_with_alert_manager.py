"""A channel plugged into the AlertManager: a refused first try is retried, then recorded sent."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from pydantic import SecretStr

from hub import AlertManager, AlertStore
from hub.channels import WeComRobotNotifier, WeComRobotSettings


@dataclasses.dataclass(frozen=True)
class Change:
    rule_id: str
    device: str
    state: str
    ts_ms: int
    since_ms: int
    severity: str = "critical"
    issue_class: str = "hard"
    summary: str = "Smoke detected"
    message: str = "Smoke at Building 3, floor 2, unit 201"
    labels: dict[str, str] = dataclasses.field(
        default_factory=lambda: {
            "grid": "north",
            "grid_name": "North grid",
            "place": "Building 3, floor 2, unit 201",
        }
    )
    value: float | None = None


async def test_alert_manager_retries_a_robot_error_then_sends_the_resolve(
    tmp_path, registry, webhook_receiver
):
    webhook_receiver.response_body = b'{"errcode": 0, "errmsg": "ok"}'
    webhook_receiver.set_responses([500])
    store = AlertStore(tmp_path / "alerts.sqlite3")
    notifier = WeComRobotNotifier(
        WeComRobotSettings(name="duty", url=SecretStr(webhook_receiver.url + "/send?key=k"))
    )
    manager = AlertManager(
        store=store,
        registry=registry,
        notifiers=[notifier],
        clock_ms=lambda: time.time_ns() // 1_000_000,
    )
    runner = asyncio.create_task(manager.run())
    try:
        now = time.time_ns() // 1_000_000
        manager.submit([Change("smoke", "smoke1", "firing", now, now)])
        await manager.wait_idle()
        manager.submit([Change("smoke", "smoke1", "resolved", now + 5000, now)])
        await manager.wait_idle()
    finally:
        runner.cancel()
        await manager.aclose()
        store.close()
    contents = [r.json["markdown"]["content"] for r in webhook_receiver.requests]
    assert len(contents) == 3  # the refused try, its retry, the resolve
    assert contents[0] == contents[1]
    assert "Wang Fang (grid_worker)" in contents[1]
    assert "【已恢复·紧急】Building 3, floor 2, unit 201" in contents[2]
    assert manager.counters["delivery_errors"] == 1
    assert manager.counters["notifications_sent"] == 2
