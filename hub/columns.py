"""Readings as columns on the hub: device slots, accepted batches, latest values, line protocol.

A device gets a *slot* (a small integer) the first time the hub's registry lists it, and keeps it
for the life of the process, through reloads: per-device state anywhere on the hot path (latest
values, the rules' arrays, series keys) is an array indexed by slot.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence

import numpy as np
import orjson
from numpy.typing import NDArray

from hub.registry import DeviceInfo, Registry, line_protocol_tags
from wire import Measurement

_GROW = 1024


class DeviceTable:
    """Stable slots of the registry's devices, and per-slot lookups as arrays."""

    def __init__(self, registry: Registry) -> None:
        self.slot_of: dict[str, int] = {}
        self.ids: list[str] = []  # the device id of each slot, kept after a removal
        self.devices: list[DeviceInfo | None] = []
        self.gateway_of_slot: NDArray[np.int32] = np.zeros(0, dtype=np.int32)
        self.gateway_index: dict[str, int] = {}
        self.gateway_tags: dict[str, str] = {}  # line-protocol tags of each gateway's health
        self.heads: list[bytes] = []  # b"reading,<tags> " per slot
        self.use(registry)

    def use(self, registry: Registry) -> None:
        """Take a (re)loaded registry: new devices get new slots, moved ones new tags."""
        for gateway in registry.gateways:
            self.gateway_index.setdefault(gateway, len(self.gateway_index))
            self.gateway_tags[gateway] = line_protocol_tags(
                {"site": registry.site_id, "gateway": gateway}, ("site", "gateway")
            )
        listed = set(registry.devices)
        for slot, device in enumerate(self.devices):
            if device is not None and device.id not in listed:
                self.devices[slot] = None  # removed: its slot stays reserved
        for device in registry.devices.values():
            if device.id not in self.slot_of:
                self.slot_of[device.id] = len(self.devices)
                self.ids.append(device.id)
                self.devices.append(device)
                self.heads.append(b"")
            slot = self.slot_of[device.id]
            self.devices[slot] = device
            self.heads[slot] = f"{Measurement.READING.value},{device.tags} ".encode()
        gateways = np.full(len(self.devices), -1, dtype=np.int32)
        for slot, device in enumerate(self.devices):
            if device is not None:
                gateways[slot] = self.gateway_index[device.gateway]
        self.gateway_of_slot = gateways

    def __len__(self) -> int:
        return len(self.devices)

    def slots(self, devs: Sequence[str]) -> NDArray[np.int32]:
        """The slot of each device id; -1 for ids the registry does not list."""
        get = self.slot_of.get
        return np.fromiter((get(d, -1) for d in devs), dtype=np.int32, count=len(devs))

    def device(self, slot: int) -> DeviceInfo | None:
        """The device in ``slot`` (None once it was removed)."""
        return self.devices[slot]


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Readings:
    """Accepted readings of one message, as columns (NaN where a reading lacks a value)."""

    slots: NDArray[np.int32]
    ts: NDArray[np.int64]
    fields: dict[str, NDArray[np.float64]]

    def __len__(self) -> int:
        return len(self.slots)

    def window(self, start: int, stop: int) -> Readings:
        """Readings ``start`` to ``stop`` (views, no copies)."""
        return Readings(
            self.slots[start:stop],
            self.ts[start:stop],
            {k: v[start:stop] for k, v in self.fields.items()},
        )

    def take(self, keep: NDArray[np.bool_]) -> Readings:
        """Only the readings where ``keep`` is true."""
        return Readings(
            self.slots[keep], self.ts[keep], {k: v[keep] for k, v in self.fields.items()}
        )

    @staticmethod
    def one(slot: int, ts_ms: int, values: dict[str, float]) -> Readings:
        """A single reading as columns (for tests and tools)."""
        return Readings(
            np.array([slot], dtype=np.int32),
            np.array([ts_ms], dtype=np.int64),
            {name: np.array([value], dtype=np.float64) for name, value in values.items()},
        )

    def rows(self) -> Iterator[tuple[int, int, dict[str, float]]]:
        """``(slot, ts, values)`` per reading: for tests and tools, never the hot path."""
        names = list(self.fields)
        columns = [self.fields[name].tolist() for name in names]
        for row, (slot, ts) in enumerate(zip(self.slots.tolist(), self.ts.tolist(), strict=True)):
            values = {n: c[row] for n, c in zip(names, columns, strict=True) if c[row] == c[row]}
            yield slot, ts, values

    @staticmethod
    def concat(parts: Sequence[Readings]) -> Readings:
        """Several messages' readings as one (fields a message lacks are NaN)."""
        if len(parts) == 1:
            return parts[0]
        names = list(dict.fromkeys(name for part in parts for name in part.fields))
        fields = {
            name: np.concatenate(
                [p.fields.get(name, np.full(len(p), np.nan)) for p in parts],
            )
            for name in names
        }
        return Readings(
            np.concatenate([p.slots for p in parts]),
            np.concatenate([p.ts for p in parts]),
            fields,
        )


class LatestValues:
    """The newest value of every device's every field, in arrays indexed by slot."""

    def __init__(self) -> None:
        self._size = 0
        self.ts = np.zeros(0, dtype=np.int64)
        self.fields: dict[str, NDArray[np.float64]] = {}

    def _grow(self, size: int) -> None:
        if size <= self._size:
            return
        size = max(size, self._size + _GROW)
        ts = np.zeros(size, dtype=np.int64)
        ts[: self._size] = self.ts
        self.ts = ts
        for name, old in self.fields.items():
            grown = np.full(size, np.nan)
            grown[: self._size] = old
            self.fields[name] = grown
        self._size = size

    def update(self, readings: Readings) -> None:
        """Take a batch in arrival order (a later reading of a slot wins)."""
        if not len(readings):
            return
        self._grow(int(readings.slots.max()) + 1)
        # Fancy assignment with repeated indices keeps the last one, which is arrival order.
        self.ts[readings.slots] = readings.ts
        for name, values in readings.fields.items():
            column = self.fields.get(name)
            if column is None:
                column = self.fields[name] = np.full(self._size, np.nan)
            present = ~np.isnan(values)
            column[readings.slots[present]] = values[present]

    def get(self, slot: int) -> tuple[int, dict[str, float]] | None:
        """``(ts, values)`` of the device in ``slot``, or None before its first reading."""
        if slot >= self._size or self.ts[slot] == 0:
            return None
        values = {
            name: float(column[slot])
            for name, column in self.fields.items()
            if not math.isnan(column[slot])
        }
        return int(self.ts[slot]), values

    def newest(self, count: int) -> list[int]:
        """The slots of the ``count`` devices read most recently, newest first."""
        order = np.argsort(-self.ts[: self._size], kind="stable")[:count]
        return [int(s) for s in order if self.ts[s]]


def reading_lines(readings: Readings, heads: Sequence[bytes]) -> list[bytes]:
    """One line of InfluxDB line protocol (ms precision) per reading, in batch order.

    The series head (measurement and tags, with its trailing space) is cached per slot. Numbers
    are formatted a column at a time by orjson (the shortest repr that reads back the same
    float; integral values stay floats, ``21.0``), and the lines of readings that carry the
    same fields come from one format.
    """
    n = len(readings)
    if not n:
        return []
    names = list(readings.fields)
    present = np.stack([~np.isnan(readings.fields[name]) for name in names])
    # A bit per field: readings with the same pattern share one format.
    weights = (1 << np.arange(len(names), dtype=np.int64))[:, None]
    patterns = (present * weights).sum(axis=0)
    unique = np.unique(patterns).tolist()
    row_heads = [heads[slot] for slot in readings.slots.tolist()]
    stamps = _numbers(readings.ts)
    if len(unique) == 1:
        return _format_group(unique[0], names, readings.fields, row_heads, stamps)
    lines: list[bytes] = [b""] * n
    for pattern in unique:
        rows = np.flatnonzero(patterns == pattern)
        row_list = rows.tolist()
        group = _format_group(
            pattern,
            names,
            {name: column[rows] for name, column in readings.fields.items()},
            [row_heads[row] for row in row_list],
            [stamps[row] for row in row_list],
        )
        for row, line in zip(row_list, group, strict=True):
            lines[row] = line
    return [line for line in lines if line]


def _numbers(values: NDArray[np.float64] | NDArray[np.int64]) -> list[bytes]:
    # orjson formats a whole list in C, far faster than repr() one number at a time.
    return orjson.dumps(values.tolist())[1:-1].split(b",")


def _format_group(
    pattern: int,
    names: Sequence[str],
    fields: dict[str, NDArray[np.float64]],
    row_heads: list[bytes],
    stamps: list[bytes],
) -> list[bytes]:
    used = [name for j, name in enumerate(names) if pattern >> j & 1]
    if not used:
        return [b""] * len(stamps)
    template = b"%s" + b",".join(f"{name}=%s".encode() for name in used) + b" %s"
    columns = [_numbers(fields[name]) for name in used]
    return [template % row for row in zip(row_heads, *columns, stamps, strict=True)]
