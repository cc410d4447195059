"""The gateway's readings without a model each: the same checks and the same bytes as v1's models."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from wire import (
    MAX_TS_MS,
    MIN_TS_MS,
    DataBatch,
    DecodeError,
    Reading,
    ReadingChecker,
    decode_as,
    encode,
    encode_data_batch,
)

TS = MIN_TS_MS + 1_000


def test_encoded_batch_is_byte_for_byte_the_models_encoding_and_decodes_strictly() -> None:
    checker = ReadingChecker()
    raw = [
        ("b3-2-201-th", TS, {"temperature": 21.5, "humidity": 40}),
        ("b3.gate_1", TS + 7, {"co2": 612.0}),
    ]
    readings = [checker.check(dev, ts, values) for dev, ts, values in raw]
    models = [Reading(dev=dev, ts=ts, values=values) for dev, ts, values in raw]

    fast = encode_data_batch("s1", 42, readings)

    assert fast == encode(DataBatch(session="s1", seq=42, readings=models))
    assert decode_as(DataBatch, fast).readings == models
    assert readings[0][2] == {"temperature": 21.5, "humidity": 40.0}
    assert type(readings[0][2]["humidity"]) is float


@pytest.mark.parametrize(
    ("dev", "ts", "values"),
    [
        ("bad id!", TS, {"t": 1.0}),
        ("", TS, {"t": 1.0}),
        ("dev\n", TS, {"t": 1.0}),
        ("d", MIN_TS_MS - 1, {"t": 1.0}),
        ("d", MAX_TS_MS + 1, {"t": 1.0}),
        ("d", True, {"t": 1.0}),
        ("d", float(TS), {"t": 1.0}),
        ("d", TS, {}),
        ("d", TS, {f"v{i}": 1.0 for i in range(65)}),
        ("d", TS, {"Temperature": 1.0}),
        ("d", TS, {"t\n": 1.0}),
        ("d", TS, {"t": True}),
        ("d", TS, {"t": "1"}),
        ("d", TS, {"t": float("nan")}),
        ("d", TS, {"t": float("inf")}),
    ],
)
def test_checker_refuses_what_the_reading_model_refuses(dev: Any, ts: Any, values: Any) -> None:
    with pytest.raises(ValidationError):
        Reading(dev=dev, ts=ts, values=values)
    checker = ReadingChecker()
    with pytest.raises(DecodeError):
        checker.check(dev, ts, values)


def test_checker_remembers_valid_ids_and_names_but_still_checks_every_value() -> None:
    checker = ReadingChecker(cache_size=1)
    checker.check("d1", TS, {"t": 1.0})
    with pytest.raises(DecodeError, match=r"values\.t"):
        checker.check("d1", TS, {"t": float("nan")})
    with pytest.raises(DecodeError, match="ts"):
        checker.check("d1", 0, {"t": 1.0})
    with pytest.raises(DecodeError, match="dev"):  # beyond the cache: checked every time
        checker.check("bad id", TS, {"t": 1.0})
    assert checker.check("d2", TS, {"t": 2})[2] == {"t": 2.0}
