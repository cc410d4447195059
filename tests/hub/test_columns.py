"""Device slots, latest values and line protocol built from columns."""

from __future__ import annotations

import copy

import numpy as np

from hub import Point, Registry, parse_site
from hub.columns import DeviceTable, LatestValues, Readings, reading_lines
from hub.sinks import SinkBatch, line_bodies
from tests.hub.conftest import SITE
from wire import Measurement

TS = 1_767_636_000_000


def readings(slots: list[int], ts: list[int], **fields: list[float]) -> Readings:
    return Readings(
        np.array(slots, dtype=np.int32),
        np.array(ts, dtype=np.int64),
        {k: np.array(v, dtype=np.float64) for k, v in fields.items()},
    )


def test_slots_stay_put_across_reloads() -> None:
    table = DeviceTable(Registry(parse_site(SITE)))
    before = dict(table.slot_of)
    site = copy.deepcopy(SITE)
    site["devices"] = [d for d in site["devices"] if d["id"] != "smoke1"]
    site["devices"].append({"id": "new1", "gateway": "gw2", "kind": "co2", "building": "3"})
    site["devices"][0]["floor"] = 5  # th1 moved
    table.use(Registry(parse_site(site)))
    assert {k: table.slot_of[k] for k in before} == before
    assert table.slot_of["new1"] == len(before)
    assert table.device(before["smoke1"]) is None
    moved = table.device(before["th1"])
    assert moved is not None
    assert b"floor=5" in table.heads[before["th1"]]
    assert table.gateway_of_slot[before["smoke1"]] == -1


def test_latest_values_keep_the_newest_arrival_per_field() -> None:
    latest = LatestValues()
    latest.update(
        readings([0, 1, 0], [TS, TS, TS + 1], t=[1.0, 2.0, 3.0], h=[10.0, np.nan, np.nan])
    )
    latest.update(readings([1], [TS + 5], h=[7.0]))
    assert latest.get(0) == (TS + 1, {"t": 3.0, "h": 10.0})
    assert latest.get(1) == (TS + 5, {"t": 2.0, "h": 7.0})
    assert latest.get(2) is None
    assert latest.newest(5) == [1, 0]


def test_lines_from_columns_are_the_points_lines() -> None:
    heads = [b"reading,device=a,site=s ", b"reading,device=b\\ c,site=s "]
    batch = readings(
        [0, 1, 0, 1],
        [TS, TS + 1, TS + 2, TS + 3],
        temperature=[21.0, 22.5, np.nan, 0.1],
        humidity=[40.0, np.nan, 41.25, 3.0],
    )
    expected = [
        Point(
            Measurement.READING.value, head.decode().split(",", 1)[1].strip(), values, ts, "x"
        ).line()
        for head, values, ts in [
            (heads[0], {"temperature": 21.0, "humidity": 40.0}, TS),
            (heads[1], {"temperature": 22.5}, TS + 1),
            (heads[0], {"humidity": 41.25}, TS + 2),
            (heads[1], {"temperature": 0.1, "humidity": 3.0}, TS + 3),
        ]
    ]
    assert [line.decode() for line in reading_lines(batch, heads)] == expected


def test_numbers_in_lines_read_back_as_the_same_floats() -> None:
    values = [1e-7, 1e16, -0.0, 123456789.123, 5e-324, 1.7976931348623157e308, 2.0]
    batch = readings([0] * len(values), list(range(TS, TS + len(values))), v=values)
    lines = reading_lines(batch, [b"m "])
    assert [float(line.split(b"=")[1].split(b" ")[0]) for line in lines] == values
    assert all(b"." in line.split(b" ")[1] or b"e" in line.split(b" ")[1] for line in lines)


def test_a_large_write_is_split_into_bounded_bodies() -> None:
    lines = [f"m,d={i} v={i}.0 {TS + i}".encode() for i in range(1000)]
    bodies = line_bodies(lines, max_bytes=4096)
    assert len(bodies) > 1
    assert all(len(b) <= 4096 for b in bodies)
    assert b"\n".join(bodies).split(b"\n") == lines
    assert line_bodies(lines[:3], max_bytes=4096) == [b"\n".join(lines[:3])]


def test_a_sink_batch_puts_events_after_readings() -> None:
    table = DeviceTable(Registry(parse_site(SITE)))
    slot = table.slot_of["th1"]
    event = Point(Measurement.EVENT.value, "device=smoke1", {"count": 1.0}, TS, "smoke1")
    lines = SinkBatch(readings([slot], [TS], temperature=[20.0]), [event], table).lines()
    assert lines[0].startswith(b"reading,")
    assert b"temperature=20.0" in lines[0]
    assert lines[1] == event.line().encode()
