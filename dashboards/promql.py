"""PromQL over the series the hub writes, with names derived from :mod:`wire.measurements`.

VictoriaMetrics turns an InfluxDB point ``reading,<tags> temperature=21.5`` into the series
``reading_temperature{<tags>}``: ``{measurement}_{field}``.  Every series name and label name a
panel uses comes from here, and each helper refuses a name or label the hub does not write, so a
renamed measurement or tag breaks the build instead of leaving a silently empty panel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from wire.events import EVENT_SPECS
from wire.measurements import EVENT_TAGS, VALUE_UNITS, Measurement
from wire.payloads import Health

# The single field of an event point (the hub writes ``event,<tags>,kind=<kind> count=1``).
EVENT_COUNT_FIELD = "count"
# Health counters of dropped messages are written as fields ``dropped_<priority>``.
DROPPED_FIELD_PREFIX = "dropped_"
# Tags of gateway points.
GATEWAY_TAGS = ("site", "gateway")

EVENT_COUNT = f"{Measurement.EVENT}_{EVENT_COUNT_FIELD}"
READING_NAME_REGEX = f"{Measurement.READING}_.+"
GATEWAY_DROPPED_REGEX = f"{Measurement.GATEWAY}_{DROPPED_FIELD_PREFIX}.+"

# Template variables every board defines, and the labels they filter.
SITE_VAR = "site"
GRID_VAR = "grid"
BUILDING_VAR = "building"
PLACE_LABELS = ("grid", "building", "floor", "unit")
DEVICE_LABELS = (*PLACE_LABELS, "device", "device_kind")

_ALL_LABELS = frozenset(EVENT_TAGS)
_GATEWAY_FIELDS = frozenset(name for name in Health.model_fields if name != "dropped")


def reading(name: str) -> str:
    """The series name of the reading value ``name``, e.g. ``reading_temperature``.

    Raises:
        ValueError: ``name`` is not a well-known value name (``wire.VALUE_UNITS``).
    """
    if name not in VALUE_UNITS:
        raise ValueError(f"unknown value name {name!r}; known: {sorted(VALUE_UNITS)}")
    return f"{Measurement.READING}_{name}"


def gateway(field: str) -> str:
    """The series name of a gateway health field, e.g. ``gateway_queue_depth``.

    Raises:
        ValueError: ``field`` is not a field of the ``Health`` payload.
    """
    if field not in _GATEWAY_FIELDS:
        raise ValueError(f"unknown gateway health field {field!r}")
    return f"{Measurement.GATEWAY}_{field}"


def kinds(prefix: str) -> tuple[str, ...]:
    """The catalogued event kinds starting with ``prefix`` (``"door."``), sorted.

    Raises:
        ValueError: no kind starts with ``prefix``.
    """
    found = tuple(sorted(k for k in EVENT_SPECS if k.startswith(prefix)))
    if not found:
        raise ValueError(f"no event kind starts with {prefix!r}")
    return found


def quote(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def any_of(values: Iterable[str]) -> str:
    """A regular expression matching exactly one of ``values``."""
    return "|".join(re.escape(v) for v in sorted(set(values)))


def _label(label: str, allowed: Iterable[str]) -> str:
    if label not in allowed:
        raise ValueError(f"label {label!r} is not written on these series")
    return label


def eq(label: str, value: str) -> str:
    """The matcher ``label="value"`` (``label`` must be a tag the hub writes)."""
    return f"{_label(label, _ALL_LABELS)}={quote(value)}"


def match(label: str, regex: str) -> str:
    """The matcher ``label=~"regex"`` (``label`` must be a tag the hub writes)."""
    return f"{_label(label, _ALL_LABELS)}=~{quote(regex)}"


def var(name: str) -> str:
    """A reference to the template variable ``name`` inside a regex matcher."""
    return f"${name}"


def site_filter() -> tuple[str, ...]:
    """Matchers for the site template variable (gateway series carry only ``site``)."""
    return (match("site", var(SITE_VAR)),)


def place_filter() -> tuple[str, ...]:
    """Matchers for the site, grid and building template variables.

    The variables' "All" value is ``.*``, which also matches series without the label (devices
    placed by grid only, such as a gate reader), so nothing is hidden until a value is chosen.
    """
    return (
        *site_filter(),
        match("grid", var(GRID_VAR)),
        match("building", var(BUILDING_VAR)),
    )


def select(metric: str, *matchers: str) -> str:
    """A series selector: ``metric{m1,m2}``."""
    return f"{metric}{{{','.join(matchers)}}}"


def select_by_name(name_regex: str, *matchers: str) -> str:
    """A selector over several series names: ``{__name__=~"regex",m1,...}``."""
    return "{" + ",".join((f"__name__=~{quote(name_regex)}", *matchers)) + "}"


def by(labels: Iterable[str]) -> str:
    """A grouping clause ``by (a, b)`` over labels the hub writes."""
    return "by (" + ", ".join(_label(lb, _ALL_LABELS) for lb in labels) + ")"


def events(*matchers: str) -> str:
    """The selector of event points (``event_count``) with the place filter and ``matchers``."""
    return select(EVENT_COUNT, *place_filter(), *matchers)


def kind_is(kind: str) -> str:
    """The matcher for one catalogued event kind.

    Raises:
        ValueError: ``kind`` is not in ``wire.EVENT_SPECS``.
    """
    if kind not in EVENT_SPECS:
        raise ValueError(f"unknown event kind {kind!r}")
    return eq("kind", kind)


def kind_in(kind_names: Iterable[str]) -> str:
    """The matcher for several catalogued event kinds.

    Raises:
        ValueError: one of the kinds is not in ``wire.EVENT_SPECS``.
    """
    names = tuple(kind_names)
    unknown = sorted(set(names) - set(EVENT_SPECS))
    if unknown:
        raise ValueError(f"unknown event kinds {unknown}")
    return match("kind", any_of(names))


def count_over(selector: str, window: str) -> str:
    """``count_over_time(selector[window])``: events in each window (every event is one sample)."""
    return f"count_over_time({selector}[{window}])"


def or_zero(expr: str) -> str:
    """``expr or vector(0)``, so that a stat shows 0 instead of "No data"."""
    return f"{expr} or vector(0)"


def seconds_since_last(selector: str, labels: Iterable[str], lookback: str, step: str) -> str:
    """Seconds since the newest sample of ``selector`` per ``labels``, over ``lookback``.

    ``timestamp()`` of the instant vector is exact but forgets a series once it is stale (about
    five minutes), which is exactly when it matters; the subquery over ``lookback`` keeps a
    silent series listed, to within one ``step``.  The exact value wins when there is one.
    """
    grouping = by(labels)
    fresh = f"max {grouping} (timestamp({selector}))"
    known = f"max {grouping} (max_over_time(timestamp({selector})[{lookback}:{step}]))"
    return f"time() - ({fresh} or {known})"
