"""The hub's alert manager: the lifecycle book, its store, and delivery to the channels.

One task (``run``) owns the :class:`~hub.lifecycle.AlertBook`: it applies the rules engine's
transitions in order, lets time pass for escalation steps, and commits every change together
with the deliveries it causes before anything is sent.  Each delivery then runs as a task of
its own, retried with back-off until it succeeds or is given up and marked failed; its state
is on disk, so a restart resumes what was unsent and never repeats what was sent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping

from hub.alert_store import NOBODY, AlertStore, Job
from hub.errors import ConfigError, HubError
from hub.lifecycle import (
    Alert,
    AlertBook,
    LifecycleError,
    Outcome,
    RegistryDirectory,
    Silence,
    SystemTransition,
    TransitionLike,
    alert_id,
)
from hub.notifiers import Contact, Notification, Notifier, NotifyError
from hub.registry import Registry
from hub.routing import AlertingSettings
from hub.store import AlertRecord

logger = logging.getLogger(__name__)

__all__ = ["AlertManager", "LifecycleError", "alert_id"]

GATEWAY_OFFLINE_RULE = "gateway-offline"
_MAX_BURST = 100  # dispatches per commit, so one flood does not hold back the next alarm

_Item = tuple[Callable[[int], Outcome], "asyncio.Future[None] | None"]
_Answer = tuple["asyncio.Future[None]", LifecycleError | None]


def directory_for(registry: Registry) -> RegistryDirectory:
    """Grid workers and escalation tiers as the site file names them."""
    site = registry.site
    return RegistryDirectory({g.id: g.worker for g in site.grids}, site.escalation)


def _note(transition: str) -> str:
    what, _, n = transition.partition(":")
    if what == "step":
        return f"not acknowledged: escalated to step {int(n) + 1}"
    if what == "repeat":
        return f"still not acknowledged: reminder {n}"
    if what == "retrigger":
        return "acknowledged but not resolved in time: firing again"
    if what == "flapping":
        return "firing and resolving again and again: notifications paused until it settles"
    if what == "flapping-end":
        return "no longer flapping"
    return ""


class AlertManager:
    """Keeps alert state and fans notifications out to the channels."""

    def __init__(
        self,
        *,
        store: AlertStore,
        registry: Registry,
        notifiers: Iterable[Notifier],
        clock_ms: Callable[[], int],
        settings: AlertingSettings | None = None,
        rule_kinds: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings or AlertingSettings()
        self.store = store
        self._registry = registry
        directory = directory_for(registry)
        unknown = self.settings.unknown_tiers(directory.tier_names())
        known = ", ".join(sorted(directory.tier_names())) or "none"
        if unknown and "routes" in self.settings.model_fields_set:
            # Routes written for this site must name its tiers: a typo would notify nobody.
            raise ConfigError(
                "alerting",
                "routes",
                f"tiers {', '.join(unknown)} are not in the site file's escalation map "
                f"(it has: {known})",
            )
        if unknown:
            logger.warning(
                "the default escalation routes name tiers this site does not define (%s; it has "
                "%s): their steps notify nobody and are skipped",
                ", ".join(unknown),
                known,
            )
        self.counters: collections.Counter[str] = collections.Counter()
        self.book = AlertBook(self.settings, directory, rule_kinds=rule_kinds)
        self.book.counters = self.counters
        self.book.load(*store.load_state_sync())
        self._notifiers = {n.name: n for n in notifiers}
        self._clock_ms = clock_ms
        # Inputs in order: a function of the time, and for operators a future to answer.
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._resume = store.unsent_sync()
        self.history: collections.deque[AlertRecord] = collections.deque(maxlen=200)

    # -- inputs -------------------------------------------------------------------------------

    def submit(self, transitions: Iterable[TransitionLike]) -> None:
        """Queue transitions from the rules engine (called on the ingest path; never blocks)."""
        for transition in transitions:
            self._inbox.put_nowait((self._transition_op(transition), None))

    def use_registry(self, registry: Registry) -> None:
        """Take a reloaded registry: grid workers and tiers as the site file now says."""
        self._registry = registry
        self.book.directory = directory_for(registry)

    def _transition_op(self, transition: TransitionLike) -> Callable[[int], Outcome]:
        return lambda now: self.book.on_transition(transition, now)

    def gateway_presence(self, gateway: str, *, online: bool, ts_ms: int) -> None:
        """A gateway went offline (raise after the grace time) or came back (resolve)."""
        info = self._registry.site.gateways
        name = next((g.name for g in info if g.id == gateway and g.name), gateway)
        labels = {
            "site": self._registry.site_id,
            "gateway": gateway,
            "place": name,
            "device_kind": "gateway",
        }
        transition = SystemTransition(
            rule_id=GATEWAY_OFFLINE_RULE,
            device=f"gateway:{gateway}",
            state="resolved" if online else "pending",
            ts_ms=ts_ms,
            since_ms=ts_ms,
            severity="major",
            issue_class="ordinary",
            summary="Gateway offline",
            message=(
                f"Gateway {name} ({gateway}) is offline: the devices behind it are not reporting. "
                "Check its power and network."
            ),
            labels=labels,
            fire_at_ms=None if online else ts_ms + self.settings.gateway_offline_for,
        )
        self.submit([transition])

    # -- operator actions (the HTTP API and the CLI) ----------------------------------------

    async def acknowledge(self, alert_ref: str, by: str, comment: str = "") -> Alert:
        """Acknowledge; escalation stops until the acknowledgement times out."""
        return await self._operate(
            lambda now: self.book.acknowledge(alert_ref, by, now, comment), alert_ref
        )

    async def resolve(self, alert_ref: str, by: str, comment: str = "") -> Alert:
        """Resolve by hand; everyone notified hears of it."""
        found = self.book.find(alert_ref)
        await self._run_op(lambda now: self.book.resolve(found.id, by, now, comment))
        return found

    async def assign(self, alert_ref: str, person: str, by: str) -> Alert:
        """Name who deals with it."""
        return await self._operate(
            lambda now: self.book.assign(alert_ref, person, by, now), alert_ref
        )

    async def comment(self, alert_ref: str, by: str, text: str) -> Alert:
        """Add a comment."""
        return await self._operate(
            lambda now: self.book.comment(alert_ref, by, text, now), alert_ref
        )

    async def silence(
        self,
        *,
        by: str,
        comment: str = "",
        match: Mapping[str, Iterable[str]] | None = None,
        alert_ref: str | None = None,
        ends_ms: int | None = None,
    ) -> Silence:
        """Silence one alert (until an end or its resolve) or alerts by labels until an end."""
        created: list[Silence] = []

        def _op(now: int) -> Outcome:
            silence, outcome = self.book.add_silence(
                by=by,
                now_ms=now,
                comment=comment,
                match=match,
                alert_ref=alert_ref,
                ends_ms=ends_ms,
            )
            created.append(silence)
            return outcome

        await self._run_op(_op)
        return created[0]

    async def expire_silence(self, silence_id: str) -> None:
        """End a silence now."""
        await self._run_op(lambda now: self.book.expire_silence(silence_id, now))

    async def _operate(self, op: Callable[[int], Outcome], alert_ref: str) -> Alert:
        found = self.book.find(alert_ref)
        await self._run_op(op)
        return found

    async def _run_op(self, op: Callable[[int], Outcome]) -> None:
        # In the manager's own order, after what the rules engine already submitted; the
        # operator's answer waits until the change is on disk.
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait((op, done))
        await done

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Apply transitions and operator actions in order, let time pass, deliver."""
        for job in self._resume:
            self._start(job)
        self._resume = []
        while True:
            due = self.book.next_due_ms()
            wait_s = None if due is None else max(0.0, (due - self._clock_ms()) / 1000)
            # Held alerts are rechecked each second (a silence by schedule, an inhibition).
            if self.book.has_held():
                wait_s = 1.0 if wait_s is None else min(wait_s, 1.0)
            item: _Item | None = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    item = await self._inbox.get()
            now = self._clock_ms()
            outcome, answers, taken = self._take_burst(item, now)
            try:
                await self._commit(outcome, now)
            except HubError as exc:
                logger.exception("alert state could not be saved; it is applied in memory")
                answers = [(a, e or LifecycleError(str(exc))) for a, e in answers]
            finally:
                for answer, error in answers:
                    if answer.done():
                        continue
                    if error is None:
                        answer.set_result(None)
                    else:
                        answer.set_exception(error)
                for _ in range(taken):
                    self._inbox.task_done()

    def _take_burst(self, item: _Item | None, now: int) -> tuple[Outcome, list[_Answer], int]:
        # The first input and whatever else is queued go in one commit: a transaction per
        # burst, not per transition.
        outcome = Outcome()
        answers: list[_Answer] = []
        taken = 0
        while True:
            if item is None:
                outcome.merge(self.book.tick(now))
            else:
                taken += 1
                op, answer = item
                try:
                    outcome.merge(op(now))
                except LifecycleError as exc:
                    if answer is None:
                        logger.warning("transition not applied: %s", exc)
                    else:
                        answers.append((answer, exc))
                else:
                    if answer is not None:
                        answers.append((answer, None))
            if self._inbox.empty() or len(outcome.dispatches) >= _MAX_BURST:
                return outcome, answers, taken
            item = self._inbox.get_nowait()

    async def _commit(self, outcome: Outcome, now: int) -> None:
        if not (outcome.alerts or outcome.silences or outcome.flaps or outcome.dispatches):
            return
        for dispatch in outcome.dispatches:
            if dispatch.kind in {"firing", "resolved"}:
                self.history.extend(dispatch.alerts)
        jobs = await self.store.commit(outcome, list(self._notifiers), now)
        for job in jobs:
            self._start(job)

    def _start(self, job: Job) -> None:
        task = asyncio.create_task(
            self._deliver(job), name=f"notify[{job.channel}:{job.alerts[0].id}:{job.transition}]"
        )
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    def _labels(self, people: Iterable[str]) -> tuple[str, ...]:
        out = []
        for person_id in people:
            person = self._registry.people.get(person_id)
            if person is not None:
                out.append(f"{person.name} ({person.role.value})")
            elif person_id != NOBODY:
                out.append(person_id)
        return tuple(out)

    def _contacts(self, people: Iterable[str]) -> tuple[Contact, ...]:
        found = []
        for person_id in people:
            person = self._registry.people.get(person_id)
            if person is not None:
                found.append(Contact(person.name, phone=person.phone, email=person.email))
        return tuple(found)

    async def _deliver(self, job: Job) -> None:
        notifier = self._notifiers.get(job.channel)
        if notifier is None:
            await self.store.mark(
                job,
                status="failed",
                error="channel no longer configured",
                next_try_ms=0,
                now_ms=self._clock_ms(),
            )
            return
        notification = Notification(
            alert=job.alerts[0],
            transition=job.kind,
            recipients=self._labels(job.recipients),
            note=_note(job.transition),
            others=job.alerts[1:],
            key=f"{job.alerts[0].id}:{job.transition}:{job.channel}",
            contacts=self._contacts(job.recipients),
        )
        delays = self.settings.retry_delays
        attempts = job.attempts
        delay_s = max(0.0, (job.next_try_ms - self._clock_ms()) / 1000)
        while True:
            if delay_s:
                await asyncio.sleep(delay_s)
            attempts += 1
            try:
                await notifier.send(notification)
            except NotifyError as exc:
                self.counters["delivery_errors"] += 1
                now = self._clock_ms()
                if now - job.created_ms >= self.settings.give_up_after:
                    logger.error(  # noqa: TRY400 - an expected failure; its traceback is noise
                        "delivery via %s given up after %d attempts: %s", job.channel, attempts, exc
                    )
                    self.counters["notifications_failed"] += 1
                    await self.store.mark(
                        job, status="failed", error=str(exc), next_try_ms=0, now_ms=now
                    )
                    return
                delay_ms = delays[min(attempts - 1, len(delays) - 1)]
                logger.warning(
                    "delivery via %s failed (attempt %d, next in %.0f s): %s",
                    job.channel,
                    attempts,
                    delay_ms / 1000,
                    exc,
                )
                await self.store.mark(
                    job, status="retrying", error=str(exc), next_try_ms=now + delay_ms, now_ms=now
                )
                delay_s = delay_ms / 1000
                continue
            self.counters["notifications_sent"] += 1
            await self.store.mark(
                job, status="sent", error=None, next_try_ms=0, now_ms=self._clock_ms()
            )
            return

    async def wait_idle(self) -> None:
        """Wait until every submitted input is applied and every due delivery done (tests)."""
        await self._inbox.join()
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)
            await self._inbox.join()

    def now_ms(self) -> int:
        """The manager's clock."""
        return self._clock_ms()

    # -- views --------------------------------------------------------------------------------

    def recipients(self, alert: Alert | AlertRecord) -> tuple[str, ...]:
        """Who was told of the alert (or would be first, if nobody was yet), as labels."""
        found = self.book.by_id.get(alert.id)
        if isinstance(alert, Alert):
            found = alert
        if found is None:
            return ()
        return self._labels(found.notified or self.book.recipients_of(found))

    async def aclose(self) -> None:
        """Stop deliveries (their state is on disk) and close every channel."""
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*list(self._deliveries), return_exceptions=True)
        for notifier in self._notifiers.values():
            await notifier.aclose()
