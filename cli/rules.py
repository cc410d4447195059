"""`anju rules`: check rule files, and try them on a recording before they go live.

``anju rules validate [PATHS...]`` loads rule files as the hub does and lists the rules, or names
the file, line, rule and field of the first problem.  With ``--site`` it also warns about rules
whose scope matches no device of the site: such a rule never fires, and it is almost always a
typo in a device kind, building or grid.

``anju rules test --replay FILE`` feeds a recording of readings and events (JSON lines) to the
rules engine on virtual time and prints every transition.  :func:`load_records` and
:func:`replay_records` are the reusable parts.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import difflib
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from hub.config import HubConfig
    from hub.lifecycle import AlertBook
    from hub.registry import Registry
    from rules import Engine, RuleError, RuleSet, Scope, Subject, Transition
    from rules.models import AnyRule

rules_app = typer.Typer(
    help="Check rule files and try them on a recording of readings and events.",
    no_args_is_help=True,
)

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

DEFAULT_HUB_CONFIG = Path("config/hub.yaml")
DEFAULT_RULES_DIR = Path("config/rules")
DEFAULT_SITE = Path("config/site.yaml")

# The value names of wire's readings (rules.models.METRIC_PATTERN), without importing rules.
_VALUE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_RECORD_FIELDS = frozenset({"ts", "device", "values", "event", "data"})
# Scope list -> the registry label it is matched against (device ids for `devices`).
_SCOPE_LABELS = {
    "sites": "site",
    "grids": "grid",
    "buildings": "building",
    "device_kinds": "device_kind",
    "devices": "device",
}
_STATE_STYLE = {
    "firing": "bold red",
    "resolved": "green",
    "pending": "yellow",
    "cancelled": "dim",
}


def _fail(message: str, *hints: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {escape(message)}")
    for hint in hints:
        err_console.print(f"  [yellow]→[/yellow] {escape(hint)}")
    return typer.Exit(code)


# -- where the rules and the site are -----------------------------------------------------------


def _hub_config(config: Path | None) -> HubConfig | None:
    """The hub config given, else ``config/hub.yaml`` if there is one here, else None."""
    from hub import HubError, load_hub_config  # noqa: PLC0415 - keep `anju --help` fast

    path = config if config is not None else DEFAULT_HUB_CONFIG
    if config is None and not path.is_file():
        return None
    try:
        return load_hub_config(path)
    except HubError as exc:
        raise _fail(
            str(exc), "fix the hub config, or name rule files and the site directly"
        ) from None


def _expand(paths: Iterable[Path]) -> list[Path]:
    """Rule files named directly, or every ``*.yaml`` of a named directory (as the hub reads)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.yaml"))
            if not found:
                raise _fail(f"{path}: no *.yaml rule files in this directory")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise _fail(f"{path}: no such file or directory")
    return files


def _rule_files(paths: Sequence[Path] | None, hub_config: HubConfig | None) -> list[Path]:
    if paths:
        return _expand(paths)
    if hub_config is not None:
        return hub_config.rule_files()
    if DEFAULT_RULES_DIR.is_dir():
        return _expand([DEFAULT_RULES_DIR])
    raise _fail(
        "no rule files given, and no config/hub.yaml or config/rules/ here",
        "name rule files or directories, e.g. anju rules validate config/rules",
        code=2,
    )


def _site_file(site: Path | None, hub_config: HubConfig | None) -> Path | None:
    if site is not None:
        return site
    if hub_config is not None:
        return hub_config.site_file
    return DEFAULT_SITE if DEFAULT_SITE.is_file() else None


def _registry(site: Path) -> Registry:
    from hub import HubError  # noqa: PLC0415
    from hub.registry import Registry, load_site  # noqa: PLC0415

    try:
        return Registry(load_site(site))
    except HubError as exc:
        raise _fail(str(exc), "fix the site file; anju hub run would refuse it too") from None


def _load(files: Sequence[Path], *, as_json: bool = False) -> RuleSet:
    from rules import RuleError, load_rules  # noqa: PLC0415

    try:
        return load_rules(files)
    except RuleError as exc:
        if as_json:
            located = {
                "file": exc.file,
                "line": exc.line,
                "rule": exc.rule,
                "field": exc.field,
                "reason": exc.reason,
                "hint": _hint(exc),
            }
            console.out(orjson.dumps({"error": located}).decode(), highlight=False)
        raise _fail(str(exc), _hint(exc)) from None


def _hint(exc: RuleError) -> str:
    """What to do about a rule that does not load, in one line."""
    if "duplicate rule id" in exc.reason:
        return "rule ids must be unique across every rule file: rename one of them"
    if exc.rule is None:
        return "a rule file is YAML of the form 'rules: [ ... ]'; see config/rules/*.yaml"
    rule = f"rules[{exc.rule}]" if isinstance(exc.rule, int) else f"rule {exc.rule!r}"
    where = f" ({exc.file}, line {exc.line})" if exc.file and exc.line else ""
    what = f"field {exc.field!r} of {rule}" if exc.field else rule
    return f"fix {what}{where}, then run anju rules validate again"


# -- anju rules validate ------------------------------------------------------------------------


def scope_summary(scope: Scope) -> str:
    """A scope in a few words: ``kinds smoke, gas; buildings 3`` or ``all``."""
    parts = [
        f"{name.removeprefix('device_')} {', '.join(values)}"
        for name, values in (
            ("sites", scope.sites),
            ("grids", scope.grids),
            ("buildings", scope.buildings),
            ("device_kinds", scope.device_kinds),
            ("devices", scope.devices),
        )
        if values
    ]
    return "; ".join(parts) or "all"


def _schedule(rule: AnyRule) -> bool:
    return getattr(rule, "schedule", None) is not None


def devices_in_scope(rule: AnyRule, registry: Registry) -> int:
    """How many devices of the site the rule's scope matches, as the engine matches them."""
    matches = rule.scope.matches
    return sum(1 for d in registry.devices.values() if matches(d.id, d.labels))


def scope_problems(rule: AnyRule, registry: Registry) -> list[str]:
    """Why a scope matches no device: the values the site does not have, with a likely fix."""
    problems: list[str] = []
    for field, label in _SCOPE_LABELS.items():
        known = {d.labels.get(label, "") for d in registry.devices.values()} - {""}
        for value in getattr(rule.scope, field):
            if value in known:
                continue
            close = difflib.get_close_matches(value, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"scope.{field}: no device of the site has {label} {value!r}{hint}")
    if not problems:
        problems.append("every value exists in the site, but no device has all of them at once")
    return problems


@rules_app.command("validate")
def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="rule files or directories; default: the rules of config/hub.yaml, "
            "else config/rules/"
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="hub config whose rules to check"),
    ] = None,
    site: Annotated[
        Path | None,
        typer.Option("--site", help="site file: warn about rules whose scope matches no device"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list, not a table")] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="exit with 1 on warnings too (for CI)")
    ] = False,
) -> None:
    """Load rule files as the hub does; list the rules or name the first problem.

    Exits with 1 when a rule does not load (or, with --strict, on a warning).
    """
    files = _rule_files(paths, _hub_config(config) if not paths else None)
    ruleset = _load(files, as_json=as_json)
    registry = _registry(site) if site is not None else None
    rows: list[dict[str, Any]] = []
    warnings: list[tuple[str, list[str]]] = []
    for rule in ruleset:
        row: dict[str, Any] = {
            "id": rule.id,
            "kind": rule.kind,
            "severity": rule.severity.value,
            "issue_class": rule.issue_class.value,
            "scope": {k: list(v) for k, v in rule.scope.model_dump().items() if v},
            "schedule": _schedule(rule),
            "source": ruleset.source_of(rule.id),
        }
        if registry is not None:
            row["devices_in_scope"] = matched = devices_in_scope(rule, registry)
            if matched == 0:
                warnings.append((rule.id, scope_problems(rule, registry)))
        rows.append(row)
    if as_json:
        console.out(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode(), highlight=False)
    else:
        _print_rules(rows, ruleset, with_devices=registry is not None)
        console.print(f"{_count(len(rows), 'rule')} in {_count(len(files), 'file')} load.")
    for rule_id, problems in warnings:
        err_console.print(
            f"[yellow]warning:[/yellow] rule {escape(repr(rule_id))} "
            f"({escape(ruleset.source_of(rule_id) or '?')}) matches no device of the site, "
            "so it can never fire"
        )
        for problem in problems:
            err_console.print(f"  [yellow]→[/yellow] {escape(problem)}")
    if warnings and strict:
        raise typer.Exit(1)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _print_rules(
    rows: Sequence[Mapping[str, Any]], ruleset: RuleSet, *, with_devices: bool
) -> None:
    table = Table()
    for column in ("rule", "kind", "severity", "issue class", "scope", "schedule"):
        table.add_column(column)
    if with_devices:
        table.add_column("devices", justify="right")
    for row in rows:
        rule = ruleset.get(row["id"])
        cells = [
            escape(row["id"]),
            row["kind"],
            row["severity"],
            row["issue_class"],
            escape(scope_summary(rule.scope)) if rule is not None else "",
            "yes" if row["schedule"] else "no",
        ]
        if with_devices:
            count = row["devices_in_scope"]
            cells.append(str(count) if count else "[yellow]0[/yellow]")
        table.add_row(*cells)
    console.print(table)


# -- recordings ---------------------------------------------------------------------------------


class InvalidValueError(ValueError):
    """A value in a recording, or of an option, that is not what it should be."""


class RecordingError(ValueError):
    """A recording that cannot be replayed, with the file and line of the problem."""

    def __init__(self, reason: str, *, file: str, line: int | None = None) -> None:
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One line of a recording: a reading (``values``) or an event (``event`` and ``data``).

    Attributes:
        line: the line number in the recording, for messages.
        ts_ms: when, epoch milliseconds.
        device: the device id, as in the site file.
        values: a reading's values by name, or None for an event.
        event: an event's kind (``door.forced``), or None for a reading.
        data: an event's data, normalised as the hub normalises it (defaults filled in).
    """

    line: int
    ts_ms: int
    device: str
    values: Mapping[str, float] | None = None
    event: str | None = None
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def parse_time(value: object) -> int:
    """Epoch milliseconds from an integer, or from RFC 3339 text with an offset.

    Raises:
        InvalidValueError: saying what is wrong with ``value``.
    """
    from wire.payloads import MAX_TS_MS, MIN_TS_MS  # noqa: PLC0415

    if isinstance(value, bool):
        raise InvalidValueError(f"expected epoch milliseconds or RFC 3339 text, got {value!r}")
    if isinstance(value, str) and value.isdigit():
        value = int(value)  # from the command line
    if isinstance(value, int):
        ts_ms = value
    elif isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidValueError(f"not an RFC 3339 time: {value!r}") from None
        if when.tzinfo is None:
            raise InvalidValueError(f"{value!r} has no UTC offset; add Z or one like +08:00")
        ts_ms = round(when.timestamp() * 1000)
    else:
        raise InvalidValueError(f"expected epoch milliseconds or RFC 3339 text, got {value!r}")
    if not MIN_TS_MS <= ts_ms <= MAX_TS_MS:
        raise InvalidValueError(
            f"{value!r} is not between 2020 and 2100 (milliseconds since 1970?)"
        )
    return ts_ms


def _values(raw: object) -> dict[str, float]:
    if not isinstance(raw, dict) or not raw:
        raise InvalidValueError('"values" must be a non-empty mapping of value name to number')
    values: dict[str, float] = {}
    for name, value in raw.items():
        if not _VALUE_NAME.match(name):
            raise InvalidValueError(f'"values": {name!r} is not a value name (e.g. temperature)')
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidValueError(f'"values.{name}" must be a finite number, got {value!r}')
        values[name] = float(value)
    return values


def _record(item: object, line: int) -> Record:
    """One parsed line as a record; InvalidValueError says what is wrong."""
    if not isinstance(item, dict):
        raise InvalidValueError(
            'expected an object: {"ts": ..., "device": ..., "values"|"event": ...}'
        )
    unknown = sorted(set(item) - _RECORD_FIELDS)
    if unknown:
        fields = ", ".join(sorted(_RECORD_FIELDS))
        raise InvalidValueError(f"unknown field {unknown[0]!r}; a line has {fields}")
    if "ts" not in item:
        raise InvalidValueError('missing "ts"')
    try:
        ts_ms = parse_time(item["ts"])
    except InvalidValueError as exc:
        raise InvalidValueError(f'"ts": {exc}') from None
    device = item.get("device")
    if not isinstance(device, str) or not device:
        raise InvalidValueError('"device" must be a device id of the site')
    if ("values" in item) == ("event" in item):
        raise InvalidValueError('give either "values" (a reading) or "event" (an event)')
    if "values" in item:
        if "data" in item:
            raise InvalidValueError('"data" goes with "event", not with "values"')
        return Record(line, ts_ms, device, values=_values(item["values"]))
    kind, data = _event(item["event"], item.get("data", {}))
    return Record(line, ts_ms, device, event=kind, data=data)


def _event(kind: object, data: object) -> tuple[str, dict[str, Any]]:
    """An event's kind and its data, validated and normalised as the hub does."""
    from wire import DecodeError, validate_event_data  # noqa: PLC0415

    if not isinstance(kind, str):
        raise InvalidValueError('"event" must be an event kind such as door.forced')
    try:
        return kind, validate_event_data(kind, data)
    except DecodeError as exc:
        field = "event" if exc.field == "kind" else exc.field
        raise InvalidValueError(f'"{field}": {exc.reason}') from None


def parse_records(text: str, source: str = "<recording>") -> list[Record]:
    """The records of a recording's text, in file order.

    Blank lines and lines starting with ``#`` are skipped.

    Raises:
        RecordingError: for the first malformed line, naming it.
    """
    records: list[Record] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise RecordingError(f"not JSON: {exc}", file=source, line=number) from None
        try:
            records.append(_record(item, number))
        except InvalidValueError as exc:
            raise RecordingError(str(exc), file=source, line=number) from None
    return records


def load_records(path: Path) -> list[Record]:
    """The records of a recording file (JSON lines), in file order.

    Each line is a reading ``{"ts": ..., "device": "id", "values": {"temperature": 21.5}}`` or an
    event ``{"ts": ..., "device": "id", "event": "door.forced", "data": {...}}``; ``ts`` is epoch
    milliseconds or RFC 3339 text with an offset.

    Raises:
        RecordingError: for an unreadable file or the first malformed line, naming it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecordingError("not UTF-8 text", file=str(path)) from None
    except OSError as exc:
        raise RecordingError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    return parse_records(text, str(path))


# -- replay -------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class ReplayStats:
    """What a replay went through, filled in as it runs.

    Attributes:
        readings: readings fed to the engine.
        events: events fed to the engine.
        ticks: calls of ``Engine.tick``.
        unknown: device id -> records skipped because the site has no such device.
        after_end: records later than the end of the replay, not fed.
        first_ms: the first record's time (None before any).
        end_ms: where virtual time stopped (None before the end).
    """

    readings: int = 0
    events: int = 0
    ticks: int = 0
    unknown: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    after_end: int = 0
    first_ms: int | None = None
    end_ms: int | None = None


def replay_records(
    records: Iterable[Record],
    engine: Engine,
    registry: Registry,
    *,
    tick_ms: int = 1000,
    tail_ms: int = 0,
    until_ms: int | None = None,
    stats: ReplayStats | None = None,
) -> Iterator[tuple[int, list[Transition]]]:
    """Feed ``records`` to ``engine`` in time order on virtual time, as the hub would live.

    Between records the virtual clock ticks the engine (``Engine.tick``) whenever it has
    advanced by at least ``tick_ms`` since the last tick, on a grid of ``tick_ms`` steps from
    the first record, so that time-based transitions (absence, auto-resolve, windows closing)
    happen while data still flows.  At the end time runs on to ``until_ms``, or to the last
    record plus ``tail_ms``; records after ``until_ms`` are not fed.  Records of the same time
    keep their order in the file.  Subjects get their labels from ``registry``, as the hub
    builds them; a record of a device the site does not have is skipped and counted in
    ``stats.unknown``.

    Yields:
        ``(virtual time, transitions)`` after every record fed and every tick, also when there
        are no transitions, so that a consumer can follow the clock.
    """
    stats = stats if stats is not None else ReplayStats()
    ordered = sorted(records, key=lambda record: record.ts_ms)
    end_ms = until_ms
    if end_ms is None:
        end_ms = (ordered[-1].ts_ms if ordered else 0) + tail_ms
    subjects: dict[str, Subject] = {}  # one per device, as the hub builds them
    clock: int | None = None  # the last tick, on the grid
    for record in ordered:
        if record.ts_ms > end_ms:
            stats.after_end += 1
            continue
        if clock is None:
            clock = record.ts_ms
            stats.first_ms = record.ts_ms
        elif record.ts_ms - clock >= tick_ms:
            clock += (record.ts_ms - clock) // tick_ms * tick_ms
            stats.ticks += 1
            yield clock, engine.tick(clock)
        subject = subjects.get(record.device) or _subject(record.device, registry, subjects)
        if subject is None:
            stats.unknown[record.device] += 1
        elif record.values is not None:
            stats.readings += 1
            yield record.ts_ms, engine.on_reading(subject, record.ts_ms, record.values)
        elif record.event is not None:
            stats.events += 1
            yield record.ts_ms, engine.on_event(subject, record.ts_ms, record.event, record.data)
    if clock is not None:
        stats.ticks += 1
        stats.end_ms = max(end_ms, clock)
        yield stats.end_ms, engine.tick(stats.end_ms)


def _subject(device_id: str, registry: Registry, subjects: dict[str, Subject]) -> Subject | None:
    from rules import Subject  # noqa: PLC0415

    device = registry.devices.get(device_id)
    if device is None:
        return None
    subject = subjects[device_id] = Subject(device.id, device.labels)
    return subject


# -- anju rules test ----------------------------------------------------------------------------


def _local(ts_ms: int, zone: dt.tzinfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ms / 1000, zone)


def _stamp(ts_ms: int, zone: dt.tzinfo) -> str:
    text = _local(ts_ms, zone).strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{ts_ms % 1000:03d}" if ts_ms % 1000 else text


def transition_row(transition: Transition, zone: dt.tzinfo) -> dict[str, Any]:
    """A transition as one JSON-able mapping, its time in ``zone`` too."""
    return {
        "ts": transition.ts_ms,
        "time": _local(transition.ts_ms, zone).isoformat(timespec="milliseconds"),
        "rule": transition.rule_id,
        "subject": transition.device,
        "place": transition.labels.get("place", ""),
        "state": transition.state.value,
        "severity": transition.severity.value,
        "since": transition.since_ms,
        "summary": transition.summary,
        "message": transition.message,
    }


def _duration(text: str, option: str) -> int:
    from rules import parse_duration_ms  # noqa: PLC0415

    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise _fail(f"{option} {text!r}: {exc}", "a duration such as 1s, 30s, 15m or 2h") from None


@rules_app.command("test")
def replay_command(
    replay: Annotated[
        Path,
        typer.Option("--replay", help="recording: JSON lines of readings and events"),
    ],
    site: Annotated[
        Path | None,
        typer.Option("--site", help="site file (device labels); default: the hub config's"),
    ] = None,
    rule_paths: Annotated[
        list[Path] | None,
        typer.Option(
            "--rules", help="rule file or directory (repeatable); default: the hub config's"
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="hub config for the defaults (config/hub.yaml)"),
    ] = None,
    tick: Annotated[str, typer.Option("--tick", help="virtual clock step between ticks")] = "1s",
    tail: Annotated[
        str, typer.Option("--tail", help="let time run on this long after the last record")
    ] = "0s",
    until: Annotated[
        str | None,
        typer.Option("--until", help="run to this time (RFC 3339 or epoch ms) instead"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object per transition, not a table")
    ] = False,
    notifications: Annotated[
        bool,
        typer.Option(
            "--notifications/--no-notifications",
            help="also run the alert lifecycle: who would be told, escalations, resolves",
        ),
    ] = True,
) -> None:
    """Replay a recording through the rules on virtual time; print every transition.

    With notifications (the default) the transitions also go through the hub's alert
    lifecycle with the hub config's routes, on the same virtual clock, so the output says who
    would be notified, when it would escalate, and who would hear of the resolve.

    Exits with 1 when the recording, the rules or the site do not load.
    """
    from rules import Engine  # noqa: PLC0415

    tick_ms = _duration(tick, "--tick")
    if tick_ms <= 0:
        raise _fail("--tick must be longer than 0")
    tail_ms = _duration(tail, "--tail")
    until_ms: int | None = None
    if until is not None:
        try:
            until_ms = parse_time(until)
        except InvalidValueError as exc:
            raise _fail(f"--until: {exc}") from None
    hub_config = _hub_config(config)
    site_file = _site_file(site, hub_config)
    if site_file is None:
        raise _fail("no site file: the replay needs the devices' places", "pass --site FILE")
    registry = _registry(site_file)
    ruleset = _load(_rule_files(rule_paths, hub_config))
    try:
        records = load_records(replay)
    except RecordingError as exc:
        raise _fail(
            str(exc),
            'each line: {"ts": ..., "device": "id", "values": {...}} or '
            '{"ts": ..., "device": "id", "event": "kind", "data": {...}}',
        ) from None

    from zoneinfo import ZoneInfo  # noqa: PLC0415

    zone = ZoneInfo(registry.site.site.timezone)
    stats = ReplayStats()
    book = _alert_book(registry, ruleset, hub_config) if notifications else None
    rows: list[dict[str, Any]] = []
    notices: list[dict[str, Any]] = []
    for now_ms, transitions in replay_records(
        records,
        Engine(ruleset),
        registry,
        tick_ms=tick_ms,
        tail_ms=tail_ms,
        until_ms=until_ms,
        stats=stats,
    ):
        rows += [transition_row(transition, zone) for transition in transitions]
        if book is not None:
            notices += _lifecycle(book, transitions, now_ms, registry)
    _print_replay(rows, notices, zone, as_json=as_json)
    _summary(stats, len(rows), zone, to_stderr=as_json)


def _print_replay(
    rows: list[dict[str, Any]], notices: list[dict[str, Any]], zone: dt.tzinfo, *, as_json: bool
) -> None:
    if as_json:
        for row in sorted([*rows, *notices], key=lambda r: r["ts"]):
            console.out(orjson.dumps(row).decode(), highlight=False)
        return
    _print_transitions(rows, zone)
    if notices:
        _print_notices(notices, zone)


def _alert_book(registry: Registry, ruleset: RuleSet, hub_config: HubConfig | None) -> AlertBook:
    from hub.alerts import directory_for  # noqa: PLC0415
    from hub.lifecycle import AlertBook  # noqa: PLC0415
    from hub.routing import AlertingSettings  # noqa: PLC0415

    settings = hub_config.alerting if hub_config is not None else AlertingSettings()
    return AlertBook(
        settings, directory_for(registry), rule_kinds={rule.id: rule.kind for rule in ruleset}
    )


def _lifecycle(
    book: AlertBook, transitions: Sequence[Transition], now_ms: int, registry: Registry
) -> list[dict[str, Any]]:
    """Feed one step of virtual time to the alert lifecycle; the notifications it sends."""
    dispatches = []
    for transition in transitions:
        dispatches += book.on_transition(transition, now_ms).dispatches
    dispatches += book.tick(now_ms).dispatches
    rows: list[dict[str, Any]] = []
    for dispatch in dispatches:
        names = [
            registry.people[p].name if p in registry.people else p for p in dispatch.recipients
        ]
        rows.extend(
            {
                "ts": now_ms,
                "rule": alert.rule_id,
                "subject": alert.device,
                "place": alert.labels.get("place", ""),
                "notification": dispatch.transition,
                "recipients": names,
                "held": list(dispatch.suppressed),
            }
            for alert in dispatch.alerts
        )
    return rows


def _print_notices(rows: Sequence[Mapping[str, Any]], zone: dt.tzinfo) -> None:
    table = Table(title="notifications")
    for column in ("time", "rule", "place", "notification", "to"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            _stamp(row["ts"], zone),
            escape(row["rule"]),
            escape(row["place"] or row["subject"]),
            row["notification"],
            escape(", ".join(row["recipients"]) or "-"),
        )
    console.print(table)


def _print_transitions(rows: Sequence[Mapping[str, Any]], zone: dt.tzinfo) -> None:
    table = Table()
    for column in ("time", "rule", "subject", "place", "state", "severity"):
        table.add_column(column)
    for row in rows:
        style = _STATE_STYLE.get(row["state"], "")
        table.add_row(
            _stamp(row["ts"], zone),
            escape(row["rule"]),
            escape(row["subject"]),
            escape(row["place"]),
            f"[{style}]{row['state']}[/{style}]" if style else row["state"],
            row["severity"],
        )
    console.print(table)


def _summary(stats: ReplayStats, transitions: int, zone: dt.tzinfo, *, to_stderr: bool) -> None:
    out = err_console if to_stderr else console
    span = ""
    if stats.first_ms is not None and stats.end_ms is not None:
        span = f" from {_stamp(stats.first_ms, zone)} to {_stamp(stats.end_ms, zone)} ({zone})"
    out.print(
        f"{stats.readings} readings and {stats.events} events replayed{span}: "
        f"{transitions} transitions"
    )
    if stats.unknown:
        skipped = sum(stats.unknown.values())
        devices = ", ".join(f"{d} ({n})" for d, n in sorted(stats.unknown.items()))
        err_console.print(
            f"[yellow]warning:[/yellow] skipped {_count(skipped, 'record')} of devices not in "
            f"the site: {escape(devices)}"
        )
    if stats.after_end:
        err_console.print(
            f"[yellow]warning:[/yellow] {_count(stats.after_end, 'record')} after --until "
            "not replayed"
        )
