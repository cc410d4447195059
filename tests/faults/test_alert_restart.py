"""``kill -9`` of the hub while an escalation is pending: after a restart the next step is sent
on time, and nothing already sent is sent again."""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import (
    ANJU,
    Daemon,
    Tap,
    agent_env,
    gateway_document,
    site_document,
    wait_until,
    write_yaml,
)
from tests.servers import Mosquitto, RecordedRequest, WebhookReceiver

pytestmark = [pytest.mark.integration, pytest.mark.scenario]

STEP_WAIT_S = 8

RULES = """
rules:
  - id: door-forced
    kind: event
    severity: major
    issue_class: composite
    summary: Door forced
    message: "Door forced open at {place}."
    match: {kind: door.forced}
"""


def _hub_document(
    site_file: Path, rules: Path, data_dir: Path, broker: Mosquitto, hook: str
) -> dict[str, Any]:
    return {
        "site_file": str(site_file),
        "rules": [str(rules)],
        "data_dir": str(data_dir),
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "anju-hub-restart"},
        "notifiers": {"log": False, "webhooks": [{"name": "duty", "url": hook}]},
        "alerting": {
            "group_wait": 0,
            "routes": [
                {
                    "name": "composite",
                    "steps": [
                        {"notify": "grid_worker", "wait": f"{STEP_WAIT_S}s"},
                        {"notify": "street_block", "wait": "1h"},
                    ],
                }
            ],
        },
    }


def _door_notices(receiver: WebhookReceiver) -> list[tuple[float, RecordedRequest]]:
    return [
        (r.received_at, r)
        for r in receiver.requests
        if r.json and r.json["alerts"][0]["labels"]["alertname"] == "door-forced"
    ]


@pytest.mark.timeout(90)
def test_kill_9_with_an_escalation_pending_sends_the_next_step_on_time_and_nothing_twice(
    tmp_path: Path, mosquitto: Mosquitto, webhook_receiver: WebhookReceiver
) -> None:
    devices = [{"id": "door-1", "kind": "door_reader"}]
    site = site_document(devices)
    site["people"].append({"id": "zhou", "name": "Zhou Ming", "role": "street_block_lead"})
    site["escalation"] = {"street_block": ["zhou"]}
    site_file = write_yaml(tmp_path / "site.yaml", site)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    hub_config = write_yaml(
        tmp_path / "hub.yaml",
        _hub_document(site_file, rules, tmp_path / "hub", mosquitto, webhook_receiver.url),
    )
    edge_config = write_yaml(
        tmp_path / "edge.yaml",
        gateway_document(
            tmp_path / "edge",
            mosquitto,
            devices,
            scenario=[{"do": "door_forced", "device": "door-1", "open_s": "1s", "at": "2s"}],
        ),
    )
    hub = Daemon(
        "hub", [str(ANJU), "hub", "run", "--config", str(hub_config)], tmp_path / "hub.log"
    )
    agent = Daemon(
        "edge",
        [str(ANJU), "edge", "run", "--config", str(edge_config)],
        tmp_path / "edge.log",
        env=agent_env(),
    )
    with Tap(mosquitto) as tap:
        try:
            hub.start()
            wait_until(lambda: tap.hub_online_count() > 0, 20, "the hub", watch=[hub])
            agent.start()
            wait_until(
                lambda: bool(_door_notices(webhook_receiver)),
                30,
                "the first notice",
                watch=[hub, agent],
            )
            first_at = _door_notices(webhook_receiver)[0][0]
            # Let the delivery be recorded as sent, then crash the hub mid-escalation.
            time.sleep(1.0)
            hub.kill()
            time.sleep(1.0)
            online = tap.hub_online_count()
            hub.start()
            wait_until(lambda: tap.hub_online_count() > online, 20, "the hub again", watch=[hub])
            wait_until(
                lambda: len(_door_notices(webhook_receiver)) >= 2,
                STEP_WAIT_S + 15,
                "the second step",
                watch=[hub, agent],
            )
            # Anything sent twice would show up within a few more seconds.
            time.sleep(3.0)
        finally:
            agent.terminate()
            if hub.running:
                hub.terminate()

    notices = _door_notices(webhook_receiver)
    keys = collections.Counter(r.headers.get("idempotency-key", "") for _, r in notices)
    assert all(n == 1 for n in keys.values()), keys
    assert len(notices) == 2, [r.headers.get("idempotency-key") for _, r in notices]
    (t0, first), (t1, second) = notices
    assert first.json is not None
    assert second.json is not None
    assert "Li Wei" in first.json["commonAnnotations"]["recipients"]
    assert "Zhou Ming" in second.json["commonAnnotations"]["recipients"]
    assert ":step:1:" in second.headers["idempotency-key"]
    # On time: the step's wait counts from the first notice, across the crash.
    assert STEP_WAIT_S - 0.5 <= t1 - first_at <= STEP_WAIT_S + 2.5, t1 - first_at
    assert t0 == first_at
