"""Alert lifecycle, first cut: pending → firing → resolved, persisted, and sent to notifiers.

One active alert per (rule, subject); a new id per firing period.  Recipients come from the
grid: the grid's worker always, and for critical alerts every escalation tier at once.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from hub.errors import HubError
from hub.notifiers import Notification, Notifier, NotifyError
from hub.registry import Registry
from hub.store import AlertRecord, HubStore

logger = logging.getLogger(__name__)

_RETRY_DELAYS_S = (1.0, 5.0, 30.0)


class TransitionLike(Protocol):
    """What the rules engine reports (see :class:`rules.Transition`)."""

    @property
    def rule_id(self) -> str: ...  # noqa: D102
    @property
    def device(self) -> str: ...  # noqa: D102
    @property
    def state(self) -> str: ...  # noqa: D102
    @property
    def ts_ms(self) -> int: ...  # noqa: D102
    @property
    def since_ms(self) -> int: ...  # noqa: D102
    @property
    def severity(self) -> str: ...  # noqa: D102
    @property
    def issue_class(self) -> str: ...  # noqa: D102
    @property
    def summary(self) -> str: ...  # noqa: D102
    @property
    def message(self) -> str: ...  # noqa: D102
    @property
    def labels(self) -> Mapping[str, str]: ...  # noqa: D102
    @property
    def value(self) -> float | None: ...  # noqa: D102


def alert_id(rule_id: str, device: str, since_ms: int) -> str:
    """A stable id for one firing period, so a replay or restart names it the same."""
    return hashlib.sha256(f"{rule_id}|{device}|{since_ms}".encode()).hexdigest()[:16]


class AlertManager:
    """Keeps alert state and fans notifications out to the channels."""

    def __init__(
        self,
        *,
        store: HubStore,
        registry: Registry,
        notifiers: Iterable[Notifier],
        clock_ms: Callable[[], int],
    ) -> None:
        self._store = store
        self._registry = registry
        self._notifiers = list(notifiers)
        self._clock_ms = clock_ms
        self._inbox: asyncio.Queue[TransitionLike] = asyncio.Queue()
        self._deliveries: set[asyncio.Task[None]] = set()
        self.active: dict[tuple[str, str], AlertRecord] = {}
        self.history: collections.deque[AlertRecord] = collections.deque(maxlen=200)
        self.counters: collections.Counter[str] = collections.Counter()

    def submit(self, transitions: Iterable[TransitionLike]) -> None:
        """Queue transitions from the rules engine (called on the ingest path; never blocks)."""
        for transition in transitions:
            self._inbox.put_nowait(transition)

    async def run(self) -> None:
        """Apply transitions in order, persist them, and start deliveries."""
        while True:
            transition = await self._inbox.get()
            try:
                await self._apply(transition)
            except HubError:
                logger.exception("could not apply %s", transition)
            finally:
                self._inbox.task_done()

    async def wait_idle(self) -> None:
        """Wait until every submitted transition is applied and delivered (tests, shutdown)."""
        await self._inbox.join()
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    async def _apply(self, t: TransitionLike) -> None:
        key = (t.rule_id, t.device)
        now = self._clock_ms()
        current = self.active.get(key)
        if t.state in {"pending", "firing"}:
            if current is None:
                current = AlertRecord(
                    id=alert_id(t.rule_id, t.device, t.since_ms),
                    rule_id=t.rule_id,
                    device=t.device,
                    state=t.state,
                    severity=str(t.severity),
                    issue_class=str(t.issue_class),
                    summary=t.summary,
                    message=t.message,
                    labels=dict(t.labels),
                    value=t.value,
                    started_ms=t.since_ms,
                    firing_ms=t.ts_ms if t.state == "firing" else None,
                    resolved_ms=None,
                    updated_ms=now,
                )
            elif t.state == "firing" and current.state == "pending":
                current = dataclasses.replace(
                    current,
                    state="firing",
                    firing_ms=t.ts_ms,
                    value=t.value,
                    message=t.message,
                    updated_ms=now,
                )
            else:
                return  # already in that state: one active alert per (rule, subject)
            self.active[key] = current
            # Delivery starts before the record is written: the hub's database may be busy
            # with a large ingest flush, and an alarm must not wait for it.
            if current.state == "firing":
                self.counters["fired"] += 1
                self.history.append(current)
                self._notify(current, "firing")
            await self._store.save_alert(current)
            return
        # resolved (or a pending condition that went away before firing)
        if current is None:
            return
        del self.active[key]
        was_firing = current.state == "firing"
        resolved = dataclasses.replace(
            current, state="resolved", resolved_ms=t.ts_ms, updated_ms=now
        )
        if was_firing:
            self.counters["resolved"] += 1
            self.history.append(resolved)
            self._notify(resolved, "resolved")
        await self._store.save_alert(resolved)

    def recipients(self, alert: AlertRecord) -> tuple[str, ...]:
        """Who should act: the grid's worker; for critical alerts every tier at once."""
        names: list[str] = []
        worker = self._registry.grid_worker(alert.labels.get("grid", ""))
        if worker is not None:
            names.append(f"{worker.name} ({worker.role.value})")
        if alert.severity == "critical":
            for members in self._registry.site.escalation.values():
                for person_id in members:
                    person = self._registry.people[person_id]
                    label = f"{person.name} ({person.role.value})"
                    if label not in names:
                        names.append(label)
        return tuple(names)

    def _notify(self, alert: AlertRecord, transition: str) -> None:
        notification = Notification(alert, transition, self.recipients(alert))
        for notifier in self._notifiers:
            task = asyncio.create_task(
                self._deliver(notifier, notification), name=f"notify[{notifier.name}:{alert.id}]"
            )
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, notifier: Notifier, notification: Notification) -> None:
        error: str | None = None
        attempts = 0
        for delay in (0.0, *_RETRY_DELAYS_S):
            await asyncio.sleep(delay)
            attempts += 1
            try:
                await notifier.send(notification)
            except NotifyError as exc:
                error = str(exc)
                self.counters["delivery_errors"] += 1
                logger.warning(
                    "delivery via %s failed (attempt %d): %s", notifier.name, attempts, exc
                )
                continue
            error = None
            break
        status = "sent" if error is None else "failed"
        self.counters[f"notifications_{status}"] += 1
        await self._store.record_notification(
            alert_id=notification.alert.id,
            transition=notification.transition,
            channel=notifier.name,
            recipient=", ".join(notification.recipients),
            status=status,
            attempts=attempts,
            last_error=error,
            now_ms=self._clock_ms(),
        )

    async def aclose(self) -> None:
        """Close every channel."""
        for notifier in self._notifiers:
            await notifier.aclose()
