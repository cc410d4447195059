"""The columnar decoder of data batches agrees with the pydantic model, error for error."""

from __future__ import annotations

import math
import random

import numpy as np
import orjson
import pytest

from wire import MAX_READINGS_PER_BATCH, DataBatch, DecodeError, decode_as
from wire.columns import DataColumns, decode_data_columns

TS = 1_767_636_000_000


def as_rows(columns: DataColumns) -> list[tuple[str, int, dict[str, float]]]:
    out = []
    for i, dev in enumerate(columns.devs):
        values = {k: float(v[i]) for k, v in columns.fields.items() if not math.isnan(v[i])}
        out.append((dev, int(columns.ts[i]), values))
    return out


def model_rows(batch: DataBatch) -> list[tuple[str, int, dict[str, float]]]:
    return [(r.dev, r.ts, {k: float(v) for k, v in r.values.items()}) for r in batch.readings]


def random_batch(rng: random.Random, n: int) -> dict[str, object]:
    kinds = [
        ("temperature", "humidity", "battery"),
        ("co2",),
        ("pm1", "pm25", "pm10"),
        ("battery", "temperature"),  # same names, another order
    ]
    readings = []
    for i in range(n):
        names = rng.choice(kinds) if rng.random() < 0.5 else kinds[0]
        values: dict[str, float | int] = {
            name: rng.choice([rng.randint(-5, 500), round(rng.uniform(-40, 2000), 2)])
            for name in names
        }
        readings.append({"dev": f"d-{rng.randint(0, 50)}", "ts": TS + i, "values": values})
    return {"v": 1, "session": "s", "seq": rng.randint(0, 2**40), "readings": readings}


@pytest.mark.parametrize("seed", range(20))
def test_columns_hold_exactly_what_the_model_validates(seed: int) -> None:
    rng = random.Random(seed)
    body = random_batch(rng, rng.choice([1, 2, 7, 100, 1000]))
    if seed % 3 == 0:
        body["replay"] = True
    raw = orjson.dumps(body)
    columns = decode_data_columns(raw)
    model = decode_as(DataBatch, raw)
    assert (columns.session, columns.seq, columns.replay) == (
        model.session,
        model.seq,
        model.replay,
    )
    assert as_rows(columns) == model_rows(model)
    assert columns.ts.dtype == np.int64
    assert all(v.dtype == np.float64 and len(v) == len(columns) for v in columns.fields.values())


def test_a_homogeneous_batch_is_one_array_per_name() -> None:
    raw = orjson.dumps(
        {
            "v": 1,
            "session": "s",
            "seq": 1,
            "readings": [
                {"dev": "a", "ts": TS, "values": {"temperature": 21.5, "humidity": 40}},
                {"dev": "b", "ts": TS + 1, "values": {"temperature": 22.0, "humidity": 41.5}},
            ],
        }
    )
    columns = decode_data_columns(raw)
    assert list(columns.fields) == ["temperature", "humidity"]
    assert columns.fields["temperature"].tolist() == [21.5, 22.0]
    assert columns.fields["humidity"].tolist() == [40.0, 41.5]


def reading(**overrides: object) -> dict[str, object]:
    return {"dev": "a", "ts": TS, "values": {"temperature": 1.0}, **overrides}


def envelope(readings: list[object], **overrides: object) -> bytes:
    return orjson.dumps({"v": 1, "session": "s", "seq": 3, "readings": readings, **overrides})


HOSTILE = [
    envelope([reading()], v=2),
    envelope([reading()], v=True),
    envelope([reading()], seq=-1),
    envelope([reading()], seq=True),
    envelope([reading()], seq=2**63),
    envelope([reading()], session=""),
    envelope([reading()], session="x" * 65),
    envelope([reading()], replay="yes"),
    envelope([reading()], extra=1),
    envelope([]),
    envelope([reading()] * (MAX_READINGS_PER_BATCH + 1)),
    envelope([reading(), "not a reading"]),
    envelope([reading(), reading(extra=1)]),
    envelope([reading(), {"dev": "a", "ts": TS}]),
    envelope([reading(dev="bad id!")]),
    envelope([reading(dev=5)]),
    envelope([reading(ts=TS + 0.5)]),
    envelope([reading(ts="1767636000000")]),
    envelope([reading(ts=True)]),
    envelope([reading(ts=86_400_000)]),
    envelope([reading(ts=5_000_000_000_000)]),
    envelope([reading(values={})]),
    envelope([reading(values=[1.0])]),
    envelope([reading(values={f"v{i}": 1.0 for i in range(65)})]),
    envelope([reading(values={"Temp!": 1.0})]),
    envelope([reading(), reading(values={"ok": 1.0, "Bad": 2.0})]),
    envelope([reading(values={"temperature": "21.5"})]),
    envelope([reading(values={"temperature": True})]),
    envelope([reading(values={"temperature": None})]),
    envelope([reading(), reading(values={"temperature": {"x": 1}})]),
    b'{"v":1,"session":"s","seq":5,"readings":[{"dev":"a","ts":1767636000000,"values":{"t":1e999}}]}',
    b"[1, 2]",
    b"",
    b'{"v": 1, "session": "s',
]


@pytest.mark.parametrize("raw", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_batch_fails_with_the_models_field_and_reason(raw: bytes) -> None:
    with pytest.raises(DecodeError) as expected:
        decode_as(DataBatch, raw)
    with pytest.raises(DecodeError) as got:
        decode_data_columns(raw)
    assert (got.value.field, got.value.reason) == (expected.value.field, expected.value.reason)
