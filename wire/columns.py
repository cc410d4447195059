"""A v1 data batch decoded straight into columns, for the hub's hot path.

:func:`decode_data_columns` gives what :class:`wire.DataBatch` validates, without a Python
object per reading: the device ids as a list, the timestamps as one ``int64`` array and one
``float64`` array per value name (NaN where a reading has no such value). Each check runs over
whole lists in C (``map``, ``set``, numpy); the first payload that fails any of them is decoded
again by the pydantic model, so the error names the field and the reason exactly as
:func:`wire.decode_as` does. A payload the fast checks refuse but the model accepts (none is
known) is still decoded, from the model.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from wire.codec import MAX_PAYLOAD_BYTES, decode_as
from wire.errors import DecodeError
from wire.payloads import (
    MAX_READINGS_PER_BATCH,
    MAX_TS_MS,
    MAX_VALUES_PER_READING,
    MIN_TS_MS,
    SCHEMA_VERSION,
    DataBatch,
)
from wire.topics import ID_PATTERN

_ENVELOPE_KEYS = frozenset({"v", "session", "seq", "replay", "readings"})
_REQUIRED_KEYS = frozenset({"v", "session", "seq", "readings"})
_READING_KEYS = 3  # dev, ts, values: with all three found, a length of 3 means no others
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_NUMBER_TYPES = frozenset({int, float})
_SEQ_LIMIT = 2**63
_MAX_SESSION = 64


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class DataColumns:
    """One data batch as columns; reading ``i`` is ``devs[i]``, ``ts[i]``, ``fields[*][i]``."""

    session: str
    seq: int
    replay: bool
    devs: list[str]
    ts: NDArray[np.int64]
    fields: dict[str, NDArray[np.float64]]

    def __len__(self) -> int:
        return len(self.devs)


class _Slow(Exception):  # noqa: N818 - control flow: let the model say what is wrong
    pass


# Value names and device ids seen valid so far: the regular expressions run once per name, not
# per value. Bounded, so that a stream of made-up ids cannot grow them without end.
_valid_names: set[str] = set()
_valid_devs: set[str] = set()
_MAX_REMEMBERED = 100_000
_DEV = re.compile(ID_PATTERN)


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class DataLists:
    """A data batch checked in full, its readings still as lists.

    What the hub gathers from many small messages before making columns of them all at once
    (:func:`columns_of`): numpy's cost per call is paid per group, not per message.
    """

    session: str
    seq: int
    replay: bool
    devs: list[str]
    stamps: list[int]
    values: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.devs)


def parse_data(raw: bytes) -> DataLists:
    """Decode and check a data batch as :class:`wire.DataBatch` would, keeping lists.

    Raises:
        DecodeError: naming the field and the reason, as :func:`wire.decode_as` would.
    """
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise DecodeError("$", f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("$", f"not valid JSON: {exc}") from None
    try:
        return _lists(obj)
    except (_Slow, KeyError, TypeError, ValueError, OverflowError):
        return _from_model(decode_as(DataBatch, raw))


def decode_data_columns(raw: bytes) -> DataColumns:
    """Decode a data batch into columns.

    Raises:
        DecodeError: naming the field and the reason, as :func:`wire.decode_as` would.
    """
    lists = parse_data(raw)
    ts, fields = columns_of([lists])
    return DataColumns(lists.session, lists.seq, lists.replay, lists.devs, ts, fields)


def _lists(obj: Any) -> DataLists:
    if type(obj) is not dict or not _REQUIRED_KEYS <= obj.keys() <= _ENVELOPE_KEYS:
        raise _Slow
    version, session, seq = obj["v"], obj["session"], obj["seq"]
    replay = obj.get("replay", False)
    readings = obj["readings"]
    if (
        type(version) is not int
        or version != SCHEMA_VERSION
        or type(session) is not str
        or not 0 < len(session) <= _MAX_SESSION
        or type(seq) is not int
        or not 0 <= seq < _SEQ_LIMIT
        or type(replay) is not bool
        or type(readings) is not list
        or not 0 < len(readings) <= MAX_READINGS_PER_BATCH
    ):
        raise _Slow
    # Each line below is one pass in C over the readings; a KeyError or TypeError means a
    # reading is not the mapping it should be, and the model explains which.
    devs = [r["dev"] for r in readings]
    stamps = [r["ts"] for r in readings]
    values = [r["values"] for r in readings]
    if (
        set(map(len, readings)) != {_READING_KEYS}
        or set(map(type, stamps)) != {int}
        or set(map(type, values)) != {dict}
        or min(stamps) < MIN_TS_MS
        or max(stamps) > MAX_TS_MS
    ):
        raise _Slow
    _check_ids(devs)  # also refuses ids that are not strings
    counts = list(map(len, values))
    if min(counts) < 1 or max(counts) > MAX_VALUES_PER_READING:
        raise _Slow
    # orjson refuses NaN, infinities and integers past 64 bits: numbers here are finite.
    if not set(map(type, chain.from_iterable(map(dict.values, values)))) <= _NUMBER_TYPES:
        raise _Slow  # a string, a boolean, null: the model names it
    _check_names(set(chain.from_iterable(set(map(tuple, values)))))
    return DataLists(session, seq, replay, devs, stamps, values)


def columns_of(
    batches: Sequence[DataLists],
) -> tuple[NDArray[np.int64], dict[str, NDArray[np.float64]]]:
    """The timestamps and one array per value name of checked batches, joined in order.

    NaN where a reading has no such value.
    """
    if len(batches) == 1:
        stamps, values = batches[0].stamps, batches[0].values
    else:
        stamps = list(chain.from_iterable(b.stamps for b in batches))
        values = list(chain.from_iterable(b.values for b in batches))
    ts = np.array(stamps, dtype=np.int64)
    counts = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    flat = np.fromiter(
        chain.from_iterable(map(dict.values, values)), dtype=np.float64, count=int(counts.sum())
    )
    return ts, _spread(values, counts, flat)


def _spread(
    values: list[dict[str, Any]], counts: NDArray[np.int64], flat: NDArray[np.float64]
) -> dict[str, NDArray[np.float64]]:
    """One array per value name from the readings' values, NaN where a reading has none."""
    n = len(values)
    signatures = list(map(tuple, values))
    distinct = set(signatures)
    if len(distinct) == 1:
        # Every reading has the same names in the same order (one device kind): a reshape.
        (names,) = distinct
        matrix = flat.reshape(n, len(names))
        return {name: np.ascontiguousarray(matrix[:, j]) for j, name in enumerate(names)}
    # Readings grouped by their names; each group is a reshape of its slice of the values.
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rows_of: dict[tuple[str, ...], list[int]] = {}
    for row, signature in enumerate(signatures):
        rows_of.setdefault(signature, []).append(row)
    fields: dict[str, NDArray[np.float64]] = {}
    for names, row_list in rows_of.items():
        rows = np.array(row_list, dtype=np.int64)
        at = starts[rows][:, None] + np.arange(len(names))
        block = flat[at]
        for j, name in enumerate(names):
            column = fields.get(name)
            if column is None:
                column = fields[name] = np.full(n, np.nan)
            column[rows] = block[:, j]
    return fields


def _check_names(names: Any) -> None:
    for name in names:
        if name not in _valid_names:
            if not _NAME.match(name):
                raise _Slow
            if len(_valid_names) < _MAX_REMEMBERED:
                _valid_names.add(name)


def _check_ids(devs: list[str]) -> None:
    for dev in set(devs).difference(_valid_devs):
        if type(dev) is not str or not _DEV.match(dev):
            raise _Slow
        if len(_valid_devs) < _MAX_REMEMBERED:
            _valid_devs.add(dev)


def _from_model(batch: DataBatch) -> DataLists:
    readings = batch.readings
    return DataLists(
        batch.session,
        batch.seq,
        batch.replay,
        [r.dev for r in readings],
        [r.ts for r in readings],
        [dict(r.values) for r in readings],
    )
