"""Evaluate rules against readings in batches of columns, and against events one at a time.

:class:`Engine` evaluates readings as the hub holds them, as columns: device slots, timestamps
and one float array per value name (:meth:`Engine.on_batch`).  Reading rules are compiled per
metric and kind (:mod:`rules.kinds`): parameters and per-(rule, device) state are arrays, a
scope is the set of device slots a rule applies to, and a batch is evaluated with numpy; only
the few readings whose alert changes leave numpy.  Events, ticks, counts, silences and
correlations are the sequential engine's (:mod:`rules._reference`), which is also the reference
the batch engine is tested against: the transitions are the same, in the same order, as calling
:meth:`SequentialEngine.on_reading <rules._reference.SequentialEngine.on_reading>` reading by
reading.

Nothing here does I/O or reads a clock: time is the timestamp of the data, or the ``now_ms``
given to :meth:`Engine.tick`, so a replay drives the engine exactly as live data does.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import heapq
import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rules._reference import (
    PLACE_KEY_PREFIX,
    ActiveAlert,
    AlertState,
    EngineState,
    EngineStatistics,
    SequentialEngine,
    Subject,
    Transition,
)
from rules._snapshot import (
    ARRAYS_MAGIC,
    SNAPSHOT_VERSION,
    RestoreReport,
    SnapshotError,
    decode_arrays,
    decode_document,
    encode_arrays,
    encode_document,
    kept_rules,
    rule_fingerprint,
)
from rules.kinds import KINDS, Batch, LastSeen, ReadingGroup, View, scope_masks
from rules.kinds.absence import check_silences, dump_silences, load_silences
from rules.models import AbsenceRule, InactivityRule, RuleBase, ThresholdRule
from rules.ruleset import RuleSet

__all__ = [
    "PLACE_KEY_PREFIX",
    "ActiveAlert",
    "AlertState",
    "Engine",
    "EngineState",
    "EngineStatistics",
    "SequentialEngine",
    "Subject",
    "Transition",
]

# The EngineState tables whose states live in arrays while a rule's scope holds the device.
_ARRAY_TABLES = ("thresholds", "rates", "flats", "anomalies")
# Where the absence step of a reading goes in the output: after every value of the reading.
_WATCH_POSITION = 1 << 30


class Engine(SequentialEngine):
    """Evaluates a :class:`RuleSet`: readings in batches (:meth:`on_batch`), events one by one.

    Devices are numbered: :meth:`set_subjects` gives slot ``i`` to ``subjects[i]``.  Readings
    name their device by slot.  :meth:`on_reading` takes a subject instead and gives a device it
    has not seen the next free slot.

    Within a batch the transitions come out exactly in the order of the sequential engine fed
    the same readings one by one: by reading, then by value name in the order of ``fields``,
    then by rule in the order written, and each reading's absence transitions after those of
    its values.
    """

    def __init__(self, rules: RuleSet) -> None:
        super().__init__(rules)
        self._subjects: list[Subject] = []
        self._slot_of: dict[str, int] = {}
        self._groups: list[ReadingGroup] = []
        self._seen = LastSeen()
        self._fingerprints: dict[str, str] = {}
        self._marks = np.zeros(0, dtype=np.int64)
        # Slot -> the watchers (absence, inactivity) in scope; matched as arrays with the rest.
        self._watching: list[list[int]] = []
        self._build()

    # -- subjects ---------------------------------------------------------------------------

    @property
    def subjects(self) -> Sequence[Subject]:
        """Slot -> subject."""
        return tuple(self._subjects)

    def slot(self, device: str) -> int | None:
        """The slot of ``device``, or None if it has none."""
        return self._slot_of.get(device)

    def set_subjects(self, subjects: Sequence[Subject]) -> None:
        """Number the devices: slot ``i`` is ``subjects[i]``; scopes are matched anew.

        Called at start and after a registry reload (devices moved or added).  States follow
        their (rule, device): a device that left a rule's scope keeps its state aside, as the
        sequential engine does, and takes it up again if it comes back.

        Raises:
            ValueError: if a device appears twice.
        """
        slot_of: dict[str, int] = {}
        for index, subject in enumerate(subjects):
            if slot_of.setdefault(subject.device, index) != index:
                raise ValueError(f"device {subject.device!r} is in subjects twice")
        state = self._state()
        self._subjects = list(subjects)
        self._slot_of = slot_of
        self._rebuild(state)

    def forget_scopes(self) -> None:
        """Match scopes anew: subjects' labels changed (a device moved to another place)."""
        self.set_subjects(self._subjects)

    def _slot(self, subject: Subject) -> int:
        """The slot of ``subject``'s device, given one if it has none, re-scoped if moved."""
        slot = self._slot_of.get(subject.device)
        if slot is not None:
            known = self._subjects[slot]
            if known is subject:
                return slot
            if known.labels == subject.labels:
                # The same labels in a new object: keep its identity from now on.
                self._subjects[slot] = subject
                self._seen.mark(slot)
                return slot
            self._rescope(slot, subject)
            return slot
        self._add_slots([subject])
        return len(self._subjects) - 1

    def _rescope(self, slot: int, subject: Subject) -> None:
        """Give ``slot`` a subject with other labels: its scopes are matched again."""
        for group in self._groups:
            if group.table is None:
                continue
            pairs = group.slot_pairs(slot)
            detached: dict[Any, Any] = getattr(self, "_" + group.table)
            detached.update(group.export(self._subjects, pairs))
            group.clear(pairs)  # the pairs are left behind; their states go with the device
        self._subjects[slot] = subject
        self._scope(np.array([slot], dtype=np.int64), [subject])
        for table in _ARRAY_TABLES:
            for group in self._tables(table):
                group.load(getattr(self, "_" + table), self._slot_of, (subject.device,))
        self._seen.mark(slot)

    def _add_slots(self, subjects: Sequence[Subject]) -> None:
        """Give each of ``subjects`` (devices without a slot) the next free slot."""
        if not subjects:
            return
        first = len(self._subjects)
        self._subjects.extend(subjects)
        for slot, subject in enumerate(subjects, start=first):
            self._slot_of[subject.device] = slot
        self._scope(np.arange(first, len(self._subjects), dtype=np.int64), subjects)
        devices = [subject.device for subject in subjects]
        for table in _ARRAY_TABLES:
            detached: dict[Any, Any] = getattr(self, "_" + table)
            if detached:
                for group in self._tables(table):
                    group.load(detached, self._slot_of, devices)
        self._seen.resize(len(self._subjects))

    def _build(self) -> None:
        members: dict[type[Any], list[tuple[str, int, Any]]] = {}
        for metric in sorted(self._rules.metrics):
            for position, rule in enumerate(self._rules.rules_for_metric(metric)):
                members.setdefault(type(rule), []).append((metric, position, rule))
        self._groups = [KINDS[kind](entries) for kind, entries in members.items()]

    def _scope(self, slots: NDArray[np.int64], subjects: Sequence[Subject]) -> None:
        rules = {rule.id: rule for group in self._groups for rule in group.rules}
        watchers = self._rules.watchers
        masks = scope_masks([*rules.values(), *watchers], subjects)
        if watchers:
            size = int(slots.max(initial=-1)) + 1
            self._watching.extend([] for _ in range(size - len(self._watching)))
            which, watcher = np.nonzero(np.array([masks[rule.id] for rule in watchers]).T)
            ends = np.cumsum(np.bincount(which, minlength=slots.size)).tolist()
            order = watcher.tolist()
            start = 0
            for slot, end in zip(slots.tolist(), ends, strict=True):
                self._watching[slot] = order[start:end]
                start = end
        for group in self._groups:
            group.scope_slots(slots, np.array([masks[rule.id] for rule in group.rules]))

    def _rebuild(self, state: EngineState) -> None:
        """Fresh arrays for the current subjects, filled from ``state``."""
        self._build()
        self._scope(np.arange(len(self._subjects), dtype=np.int64), self._subjects)
        for table in _ARRAY_TABLES:
            states = dict(getattr(state, table))
            for group in self._tables(table):
                group.load(states, self._slot_of)
            setattr(self, "_" + table, states)  # what is left: devices out of scope
        self._seen = LastSeen(len(self._subjects))

    def _all_groups(self) -> list[ReadingGroup]:
        return self._groups

    def _tables(self, table: str) -> list[ReadingGroup]:
        return [group for group in self._groups if group.table == table]

    # -- readings ---------------------------------------------------------------------------

    def on_reading(
        self, subject: Subject, ts_ms: int, values: Mapping[str, float]
    ) -> list[Transition]:
        """Evaluate one reading: a batch of one (see :meth:`on_batch`).

        Args:
            subject: the device and its labels; a device not seen before gets a slot.
            ts_ms: the reading's timestamp, epoch milliseconds.
            values: value name -> number.

        Returns:
            The transitions it causes, in rule order.
        """
        slot = self._slot(subject)
        fields = {name: np.array([value], dtype=np.float64) for name, value in values.items()}
        return self.on_batch(
            np.array([slot], dtype=np.int32), np.array([ts_ms], dtype=np.int64), fields
        )

    def on_batch(
        self,
        slots: NDArray[np.int32],
        ts_ms: NDArray[np.int64],
        fields: Mapping[str, NDArray[np.float64]],
    ) -> list[Transition]:
        """Evaluate readings given as columns, in arrival order.

        Args:
            slots: the device slot of each reading (see :meth:`set_subjects`).
            ts_ms: each reading's timestamp, epoch milliseconds.
            fields: value name -> each reading's value; NaN (any non-finite value) where a
                reading has none.

        Returns:
            Exactly what :meth:`SequentialEngine.on_reading` would return for the readings
            one after another, concatenated.

        Raises:
            ValueError: if the columns differ in length or a slot has no subject.
        """
        n = int(slots.size)
        if ts_ms.size != n or any(column.size != n for column in fields.values()):
            raise ValueError("slots, ts_ms and every field must have one entry per reading")
        self._readings += n
        out: list[Transition] = []
        if not n:
            return out
        slots64 = slots.astype(np.int64, copy=False)
        if int(slots64.min()) < 0 or int(slots64.max()) >= len(self._subjects):
            raise ValueError("a reading names a slot with no subject (see set_subjects)")
        ts64 = ts_ms.astype(np.int64, copy=False)
        metrics = self._rules.metrics
        columns = [
            (position, name, np.asarray(column, dtype=np.float64))
            for position, (name, column) in enumerate(fields.items())
            if name in metrics
        ]
        for start, stop in self._segments(slots64):
            self._segment(slots64[start:stop], ts64[start:stop], columns, start, stop, out)
        return out

    def _segments(self, slots: NDArray[np.int64]) -> list[tuple[int, int]]:
        """Runs of readings in which no slot repeats (usually the whole batch)."""
        n = int(slots.size)
        if n > 1:
            # Each slot's mark ends as the row that wrote it last: a repeat leaves a row unmarked.
            if self._marks.size < len(self._subjects):
                self._marks = np.zeros(len(self._subjects), dtype=np.int64)
            rows = np.arange(n)
            self._marks[slots] = rows
            if (self._marks[slots] != rows).any():
                return _cut(slots)
        return [(0, n)]

    def _segment(
        self,
        slots: NDArray[np.int64],
        ts: NDArray[np.int64],
        columns: list[tuple[int, str, NDArray[np.float64]]],
        start: int,
        stop: int,
        out: list[Transition],
    ) -> None:
        """Evaluate readings of distinct slots: each (rule, device) state is met at most once."""
        batch = Batch(self._subjects, self._correlate)
        if columns:
            values = np.column_stack([column[start:stop] for _, _, column in columns])
            view = View(
                slots,
                ts,
                values,
                {name: j for j, (_, name, _) in enumerate(columns)},
                np.array([position for position, _, _ in columns], dtype=np.int64),
            )
            for group in self._groups:
                group.evaluate(batch, view)
        if self._rules.watchers:
            slow, evaluations = self._seen.touch(slots, ts)
            batch.evaluations += evaluations
            for i in np.flatnonzero(slow).tolist():
                step = functools.partial(self._touch_slot, int(slots[i]), int(ts[i]))
                batch.actions.append(((i, _WATCH_POSITION, 0), step))
        self._evaluations += batch.evaluations
        self._late += batch.late
        if batch.actions:
            batch.actions.sort(key=operator.itemgetter(0))
            for _, action in batch.actions:
                action(out)

    def _touch_slot(self, slot: int, ts_ms: int, out: list[Transition]) -> None:
        """The sequential engine's absence step for a reading that is not steady."""
        subject = self._subjects[slot]
        self._seen.sync(slot)
        self._touch(subject, ts_ms, None, None, out)
        cached = self._watches.get(subject.device)
        watches = () if cached is None else cached[1]
        self._seen.summarise(
            slot, [state for rule, state in watches if isinstance(rule, AbsenceRule)]
        )

    # -- what reads silences ----------------------------------------------------------------

    def _watchers_of(self, subject: Subject) -> list[AbsenceRule | InactivityRule]:
        slot = self._slot_of.get(subject.device)
        if slot is None or self._subjects[slot].labels is not subject.labels:
            return super()._watchers_of(subject)  # labels the slot's scopes were not matched on
        watchers = self._rules.watchers
        return [watchers[i] for i in self._watching[slot]]

    def on_event(
        self, subject: Subject, ts_ms: int, kind: str, data: Mapping[str, Any]
    ) -> list[Transition]:
        """Evaluate one event (see :meth:`SequentialEngine.on_event`)."""
        slot = self._slot_of.get(subject.device)
        if slot is not None:
            self._seen.mark(slot)
        return super().on_event(subject, ts_ms, kind, data)

    def _silence_timer(
        self,
        rule: AbsenceRule | InactivityRule,
        key: tuple[str, str],
        due: int,
        out: list[Transition],
    ) -> None:
        if isinstance(rule, AbsenceRule):
            slot = self._slot_of.get(key[1])
            if slot is not None:
                self._seen.mark(slot)
        super()._silence_timer(rule, key, due, out)

    # -- state ------------------------------------------------------------------------------

    def adopt(
        self,
        rule_id: str,
        subject: Subject,
        *,
        firing: bool,
        since_ms: int,
        last_ts_ms: int,
        value: float | None = None,
        event_kind: str = "",
    ) -> bool:
        """Take back an alert the hub holds open (see :meth:`SequentialEngine.adopt`)."""
        rule = self._rules.get(rule_id)
        if isinstance(rule, ThresholdRule):
            slot = self._slot(subject)
            for group in self._tables("thresholds"):
                r = group.index.get(rule_id)
                pair = None if r is None else group.find(r, slot)
                if pair is not None:
                    if group.col["state"][pair]:
                        return False
                    super().adopt(
                        rule_id,
                        subject,
                        firing=firing,
                        since_ms=since_ms,
                        last_ts_ms=last_ts_ms,
                        value=value,
                        event_kind=event_kind,
                    )
                    group.load(self._thresholds, self._slot_of, (subject.device,))
                    return True
        return super().adopt(
            rule_id,
            subject,
            firing=firing,
            since_ms=since_ms,
            last_ts_ms=last_ts_ms,
            value=value,
            event_kind=event_kind,
        )

    def statistics(self) -> EngineStatistics:
        """A snapshot of the engine's counters."""
        active = len(self._events) + len(self._thresholds)
        for group in self._all_groups():
            if group.table == "thresholds":
                active += int(np.count_nonzero(group.col["state"][: group.size]))
            elif group.table is not None:
                active += int(np.count_nonzero(group.col["firing"][: group.size]))
        detached: tuple[Mapping[Any, Any], ...] = (self._rates, self._flats, self._anomalies)
        others = (self._counts, self._silences, self._correlations)
        active += sum(1 for table in detached + others for s in table.values() if s.firing)
        return EngineStatistics(
            readings=self._readings,
            events=self._event_count,
            evaluations=self._evaluations,
            late=self._late,
            active=active,
        )

    def snapshot(self) -> bytes:
        """The evaluation state as bytes (format version 2), for :meth:`restore`.

        What it holds is what the sequential engine's snapshot holds (see
        :meth:`SequentialEngine.snapshot <rules._reference.SequentialEngine.snapshot>`); the
        states that live in arrays are written as arrays, so that saving the state of a large
        community takes milliseconds (see :mod:`rules._snapshot`).
        """
        with _gc_paused():
            return self._snapshot()

    def _snapshot(self) -> bytes:
        self._seen.sync_all()
        watchers = {
            r.id: i for i, r in enumerate(self._rules.watchers) if isinstance(r, AbsenceRule)
        }
        silences, silence_columns = dump_silences(
            self._silences, watchers, self._slot_of, self._subjects
        )
        aside = EngineState(
            thresholds=self._thresholds,
            events=self._events,
            rates=self._rates,
            flats=self._flats,
            anomalies=self._anomalies,
            counts=self._counts,
            silences=silences,
            correlations=self._correlations,
        )
        document = encode_document(self._rules, aside, self._fingerprint, SNAPSHOT_VERSION)
        buffers: list[NDArray[Any]] = []
        groups: list[dict[str, Any]] = []
        for group in self._all_groups():
            if group.table is None:
                continue
            pairs, columns = group.dump()
            if not pairs.size:
                continue
            spec: dict[str, Any] = {
                "table": group.table,
                "rules": [rule.id for rule in group.rules],
                "rule": len(buffers),
                "device": len(buffers) + 1,
                "columns": {},
            }
            buffers += [group.pair_rule[pairs], group.pair_slot[pairs]]
            for name, column in columns.items():
                spec["columns"][name] = len(buffers)
                buffers.append(column)
            for rule in group.rules:
                document["rules"].setdefault(rule.id, self._fingerprint(rule))
            groups.append(spec)
        document["devices"] = [[s.device, s.labels] for s in self._subjects]
        document["groups"] = groups
        # Absence states of devices with a slot, as columns: most of a large community's state.
        spec = {"rules": list(watchers), "columns": {}}
        for name, column in silence_columns.items():
            spec["columns"][name] = len(buffers)
            buffers.append(column)
        for rule in self._rules.watchers:
            if rule.id in watchers:
                document["rules"].setdefault(rule.id, self._fingerprint(rule))
        document["silences"] = spec
        return encode_arrays(document, buffers)

    def restore(self, blob: bytes) -> RestoreReport:
        """Replace the evaluation state with the one in ``blob`` (format version 1 or 2).

        See :meth:`SequentialEngine.restore <rules._reference.SequentialEngine.restore>`.
        A device of the snapshot without a slot here gets the next free one, with the labels
        it had then (a later :meth:`set_subjects` numbers the devices anew).

        Raises:
            SnapshotError: ``blob`` is not a snapshot, is corrupt or has another format version;
                the engine is left as it was.
        """
        with _gc_paused():
            if not blob.startswith(ARRAYS_MAGIC):
                return super().restore(blob)
            return self._restore(blob)

    def _restore(self, blob: bytes) -> RestoreReport:
        document, buffers = decode_arrays(blob)
        state, report = decode_document(self._rules, document, self._fingerprint)
        kept = kept_rules(self._rules, document.get("rules"), self._fingerprint)
        devices, stored = self._read_groups(document, buffers, kept)
        silence_rules, silence_columns = self._read_silences(document, buffers, len(devices))
        self._adopt(state)
        # A device the engine has no slot for gets one, with the labels it had.
        self._add_slots(
            [Subject(d, labels) for d, labels in devices.items() if d not in self._slot_of]
        )
        devices_list = list(devices)
        silences, dropped_silences = load_silences(
            silence_columns,
            silence_rules,
            {r.id for r in self._rules.watchers if r.id in kept},
            [self._subjects[self._slot_of[device]] for device in devices_list],
        )
        self._silences.update(silences)
        self._timers.extend(
            (s.timer_ms, *key) for key, s in silences.items() if s.timer_ms is not None
        )
        heapq.heapify(self._timers)
        restored, dropped_states = len(silences), len(dropped_silences)
        dropped: list[str] = list(dropped_silences)
        at = np.array([self._slot_of[device] for device in devices_list], dtype=np.int64)
        for checked, local, rule, device, columns, rule_ids in stored:
            # The groups were built anew: the same rules, metric and kind, empty.
            group = None if checked is None else self._group(checked.table)
            mine = local[rule] if group is not None else np.full(rule.size, -1)
            keep = mine >= 0
            dropped += [rule_ids[r] for r in np.unique(rule[~keep]).tolist()]
            dropped_states += int((~keep).sum())
            if group is None or not keep.any():
                continue
            restored += int(keep.sum())
            kept_columns = {name: column[keep] for name, column in columns.items()}
            pairs = group.locate(mine[keep], at[device[keep]])
            found = pairs >= 0
            group.put(pairs[found], {n: c[found] for n, c in kept_columns.items()})
            if not found.all():
                aside_devices = device[keep][~found].tolist()
                subjects = [self._subject_of(devices_list[d]) for d in aside_devices]
                detached = group.detach(
                    mine[keep][~found], subjects, {n: c[~found] for n, c in kept_columns.items()}
                )
                getattr(self, "_" + str(group.table)).update(detached)
        return RestoreReport(
            states=report.states + restored,
            dropped=report.dropped + dropped_states,
            dropped_rules=tuple(sorted(set(report.dropped_rules) | set(dropped))),
        )

    def _read_silences(
        self, document: Mapping[str, Any], buffers: Sequence[NDArray[Any]], devices: int
    ) -> tuple[list[str], dict[str, NDArray[Any]]]:
        """The absence states of a version 2 snapshot, checked before anything is changed."""
        spec: Any = document.get("silences")
        try:
            rules = spec["rules"]
            columns = {str(n): buffers[i] for n, i in dict(spec["columns"]).items()}
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise SnapshotError(f"snapshot 'silences' is damaged ({exc!r})") from None
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise SnapshotError("snapshot silences 'rules' is not a list of rule ids")
        problem = check_silences(columns, len(rules), devices)
        if problem is not None:
            raise SnapshotError(f"snapshot silences: {problem}")
        return rules, columns

    def _group(self, table: object) -> ReadingGroup | None:
        return next((group for group in self._groups if group.table == table), None)

    def _subject_of(self, device: str) -> Subject:
        slot = self._slot_of.get(device)
        return self._subjects[slot] if slot is not None else Subject(device, {})

    def _fingerprint(self, rule: RuleBase) -> str:
        found = self._fingerprints.get(rule.id)
        if found is None:
            found = self._fingerprints[rule.id] = rule_fingerprint(rule)
        return found

    def _read_groups(
        self,
        document: Mapping[str, Any],
        buffers: Sequence[NDArray[Any]],
        kept: Mapping[str, Any],
    ) -> tuple[dict[str, dict[str, str]], list[_Stored]]:
        """The array states of a version 2 snapshot, checked before anything is changed."""
        raw = document.get("devices")
        devices: dict[str, dict[str, str]] = {}
        items: list[Any] = raw if isinstance(raw, list) else [None]
        for item in items:
            ok = isinstance(item, list) and len(item) == 2  # noqa: PLR2004 - [device, labels]
            device, labels = (item[0], item[1]) if ok else (None, None)
            if (
                not isinstance(device, str)
                or not isinstance(labels, dict)
                or not all(isinstance(v, str) for v in labels.values())
                or device in devices
            ):
                raise SnapshotError("snapshot 'devices' is not a list of [device, {label: text}]")
            devices[device] = labels
        specs = document.get("groups")
        if not isinstance(specs, list):
            raise SnapshotError("snapshot 'groups' is not a list")
        stored: list[_Stored] = []
        for index, spec in enumerate(specs):
            where = f"snapshot groups[{index}]"
            try:
                stored.append(self._read_group(spec, buffers, kept, len(devices)))
            except (KeyError, TypeError, IndexError, ValueError) as exc:
                raise SnapshotError(f"{where}: damaged ({exc!r})") from None
            except _GroupError as exc:
                raise SnapshotError(f"{where}: {exc}") from None
        return devices, stored

    def _read_group(
        self,
        spec: Mapping[str, Any],
        buffers: Sequence[NDArray[Any]],
        kept: Mapping[str, Any],
        devices: int,
    ) -> _Stored:
        table, rule_ids = spec["table"], spec["rules"]
        if not isinstance(rule_ids, list) or not all(isinstance(r, str) for r in rule_ids):
            raise _GroupError("'rules' is not a list of rule ids")
        rule, device = buffers[spec["rule"]], buffers[spec["device"]]
        n = rule.size
        for name, array in (("rule", rule), ("device", device)):
            if array.dtype != np.int64 or array.shape != (n,):
                raise _GroupError(f"{name!r} is not {n} integers")
        if n and (rule.min() < 0 or rule.max() >= len(rule_ids)):
            raise _GroupError("a state names a rule the group does not list")
        if n and (device.min() < 0 or device.max() >= devices):
            raise _GroupError("a state names a device the snapshot does not list")
        columns = {str(name): buffers[i] for name, i in dict(spec["columns"]).items()}
        group = self._group(table)
        local = np.full(len(rule_ids), -1, dtype=np.int64)
        if group is not None:
            problem = group.check(columns, n)
            if problem is not None:
                raise _GroupError(problem)
            for r, rule_id in enumerate(rule_ids):
                if rule_id in kept and rule_id in group.index:
                    local[r] = group.index[rule_id]
        return group, local, rule, device, columns, rule_ids

    def _state(self) -> EngineState:
        self._seen.sync_all()
        tables: dict[str, dict[Any, Any]] = {
            table: dict(getattr(self, "_" + table)) for table in _ARRAY_TABLES
        }
        for group in self._all_groups():
            if group.table is not None:
                tables[group.table].update(group.export(self._subjects))
        return EngineState(
            thresholds=tables["thresholds"],
            events=self._events,
            rates=tables["rates"],
            flats=tables["flats"],
            anomalies=tables["anomalies"],
            counts=self._counts,
            silences=self._silences,
            correlations=self._correlations,
        )

    def _adopt(self, state: EngineState) -> None:
        super()._adopt(state)
        self._rebuild(state)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile.

    A snapshot allocates tens of thousands of short lists and no cycles; with a large heap,
    collections set off by them cost more than the snapshot itself.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _GroupError(Exception):
    """A group of a snapshot that cannot be read; the caller says which."""


# (group here, stored rule -> its index here or -1, rule per state, device per state, columns,
# the stored rule ids)
_Stored = tuple[
    ReadingGroup | None,
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.int64],
    dict[str, NDArray[Any]],
    list[str],
]


def _cut(slots: NDArray[np.int64]) -> list[tuple[int, int]]:
    """Cut readings into runs in which no slot repeats, in order: (start, stop) of each."""
    n = int(slots.size)
    cuts: list[tuple[int, int]] = []
    seen: set[int] = set()
    start = 0
    for i, slot in enumerate(slots.tolist()):
        if slot in seen:
            cuts.append((start, i))
            start, seen = i, set()
        seen.add(slot)
    cuts.append((start, n))
    return cuts
