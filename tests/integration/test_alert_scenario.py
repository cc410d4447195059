"""The night at Sunrise Garden, with escalation: a fire reaches every tier at once with its exact
place; a door forced at night goes to the grid's worker, escalates when nobody acknowledges,
and stops escalating once acknowledged (through ``anju alerts ack`` against the hub's API)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.alerts import alerts_app
from cli.demo import Demo
from hub import AlertingSettings
from tests.servers import RecordedRequest, WebhookReceiver, free_port

pytestmark = [pytest.mark.integration, pytest.mark.scenario]

STEP_WAIT_S = 4
ALERTING = AlertingSettings.model_validate(
    {
        "group_wait": "1s",
        "routes": [
            {
                "name": "life-safety",
                "severities": ["critical"],
                "steps": [{"notify": ["grid_worker", "*"], "wait": "10m"}],
            },
            {
                "name": "composite",
                "issue_classes": ["composite"],
                "steps": [
                    {"notify": "grid_worker", "wait": f"{STEP_WAIT_S}s"},
                    {"notify": "street_block", "wait": f"{STEP_WAIT_S}s"},
                    {"notify": "community_office", "wait": "1h"},
                ],
            },
            {"name": "other", "steps": [{"notify": "grid_worker", "wait": "1h"}]},
        ],
    }
)


def _notices(receiver: WebhookReceiver, rule: str) -> list[RecordedRequest]:
    return [
        r
        for r in receiver.requests
        if r.json and r.json["alerts"][0]["labels"]["alertname"] == rule
    ]


def _transition(request: RecordedRequest) -> str:
    # alert:transition:channel
    return request.headers["idempotency-key"].split(":")[1]


class Operator(threading.Thread):
    """The grid worker on the phone: acknowledges the forced door once it has escalated."""

    def __init__(self, receiver: WebhookReceiver, api_url: str) -> None:
        super().__init__(name="operator", daemon=True)
        self.receiver = receiver
        self.api_url = api_url
        self.acked_at: float | None = None
        self.output = ""
        self.exit_code: int | None = None
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.1):
            escalated = [
                r for r in _notices(self.receiver, "door-forced-night") if _transition(r) == "step"
            ]
            if escalated:
                alert_id = escalated[0].json["alerts"][0]["fingerprint"]
                result = CliRunner().invoke(
                    alerts_app,
                    ["ack", alert_id[:8], "--hub", self.api_url, "--by", "zhao-lei", "-m", "on it"],
                )
                self.exit_code, self.output = result.exit_code, result.output
                self.acked_at = time.time()
                return

    def stop(self) -> None:
        self._done.set()


async def test_fire_reaches_every_tier_and_a_forced_door_escalates_until_acknowledged(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    port = free_port()
    operator = Operator(webhook_receiver, f"http://127.0.0.1:{port}")
    operator.start()
    demo = Demo(
        duration_s=24,
        speed=4,
        webhook_url=webhook_receiver.url,
        run_dir=tmp_path,
        alerting=ALERTING,
        api_port=port,
    )
    try:
        summary = await demo.run()
    finally:
        operator.stop()
        operator.join(5)

    # The fire: every tier at once, with the exact place.
    fire = [
        r
        for r in webhook_receiver.requests
        if r.json and r.json["alerts"][0]["labels"]["severity"] == "critical"
    ]
    assert fire, summary
    first = fire[0].json
    recipients = first["commonAnnotations"]["recipients"]
    for person in ("Wang Fang", "Li Qiang", "Chen Min", "Security room"):
        assert person in recipients
    assert first["alerts"][0]["annotations"]["place"] == "Building 3, floor 2, unit 201"
    assert first["alerts"][0]["labels"]["grid"] == "north"

    # The forced door: the grid's worker, then the street-block lead after the wait, then the
    # acknowledgement stops it before the community office is told.
    door = _notices(webhook_receiver, "door-forced-night")
    steps = [(_transition(r), r.json["commonAnnotations"]["recipients"]) for r in door]
    assert steps[0] == ("firing", "Zhao Lei (grid_worker)"), steps
    assert steps[1] == ("step", "Li Qiang (street_block_lead)"), steps
    assert len(steps) == 2, steps  # nothing after the acknowledgement
    waited = door[1].received_at - door[0].received_at
    assert STEP_WAIT_S - 0.5 <= waited <= STEP_WAIT_S + 1.5, waited
    assert operator.exit_code == 0, operator.output
    assert "acknowledged" in operator.output
    assert operator.acked_at is not None
    # The run went on well past the next step's due time, so its absence means something.
    assert door[1].received_at + STEP_WAIT_S + 2 < time.time()
    stored = await_alert(tmp_path, "door-forced-night")
    assert stored["status"] == "acknowledged"
    assert stored["acked_by"] == "zhao-lei"
    comments = stored["comments"]
    assert isinstance(comments, list)
    assert comments[0]["text"] == "on it"


def await_alert(run_dir: Path, rule: str) -> dict[str, object]:
    """The alert as the hub stored it (the demo's hub has stopped)."""
    import sqlite3  # noqa: PLC0415

    import orjson  # noqa: PLC0415

    with sqlite3.connect(run_dir / "hub" / "alerts.sqlite3") as conn:
        (body,) = conn.execute("SELECT body FROM alert WHERE rule_id = ?", (rule,)).fetchone()
    data: dict[str, object] = orjson.loads(body)
    return data
