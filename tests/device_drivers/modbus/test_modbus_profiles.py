"""Register maps as data: decoding, read planning, built-in profiles, config validation."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from pydantic import ValidationError
from pymodbus.framer.rtu import FramerRTU

from device_drivers import DriverConfigError, parse_driver_config
from device_drivers import registry as driver_registry
from device_drivers.modbus import (
    PROFILES,
    Encoding,
    FunctionCode,
    ModbusConfig,
    ReadBlock,
    ValueSpec,
    decode_block,
    decode_words,
    plan_reads,
)

IR = FunctionCode.READ_INPUT_REGISTERS
HR = FunctionCode.READ_HOLDING_REGISTERS
DI = FunctionCode.READ_DISCRETE_INPUTS


@pytest.mark.parametrize(
    ("encoding", "words", "order", "expected"),
    [
        (Encoding.INT16, [0xFF33], "big", -205),  # -20.5 °C x0.1 (reference §3.4)
        (Encoding.INT16, [0xFF83], "big", -125),
        (Encoding.INT16, [0x0131], "big", 305),
        (Encoding.UINT16, [0xFF83], "big", 65411),
        (Encoding.SIGN10000, [10_125], "big", -125),  # KinCony offset sign
        (Encoding.SIGN10000, [9_999], "big", 9999),
        (Encoding.UINT32, [0x0001, 0x0002], "big", 65538),
        (Encoding.UINT32, [0x0002, 0x0001], "little", 65538),
        (Encoding.INT32, [0xFFFE, 0x7960], "big", -100_000),
        (Encoding.INT32, [0x7960, 0xFFFE], "little", -100_000),
        (Encoding.FLOAT32, [0x41BC, 0x0000], "big", 23.5),
        (Encoding.FLOAT32, [0x0000, 0x41BC], "little", 23.5),
        (Encoding.BIT, [1], "big", 1),
        (Encoding.BIT, [0], "big", 0),
    ],
)
def test_decode_words(encoding, words, order, expected):
    assert decode_words(encoding, words, order) == expected


def test_decode_words_rejects_wrong_widths_out_of_range_words_and_nan():
    with pytest.raises(ValueError, match="takes 2"):
        decode_words(Encoding.INT32, [1])
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        decode_words(Encoding.UINT16, [70_000])
    nan = struct.unpack(">HH", struct.pack(">f", math.nan))
    with pytest.raises(ValueError, match="not a finite"):
        decode_words(Encoding.FLOAT32, list(nan))


def test_the_reference_frames_decode_to_the_reference_values():
    # §3.4: RX 01 04 04 01 31 02 22 2A CE -> 30.5 °C, 54.6 %RH (pymodbus capture).
    frame = bytes.fromhex("010404013102222ACE")
    assert FramerRTU.check_CRC(frame[:-2], int.from_bytes(frame[-2:], "big"))
    words = list(struct.unpack(">HH", frame[3:7]))
    (block,) = plan_reads(PROFILES["xy_md02"].values)
    assert decode_block(block, words) == {"temperature": 30.5, "humidity": 54.6}
    # Huawei FC03 example: 01 03 04 00 F6 01 1F 5A 59 -> 24.6 °C, 28.7 %RH.
    huawei = list(
        struct.unpack(">HH", bytes.fromhex("010304 00F6 011F 5A59".replace(" ", ""))[3:7])
    )
    specs = (
        ValueSpec("temperature", HR, 2, Encoding.INT16, scale=0.1),
        ValueSpec("humidity", HR, 3, scale=0.1),
    )
    (block,) = plan_reads(specs)
    assert (block.address, block.count) == (2, 2)
    assert decode_block(block, huawei) == {"temperature": 24.6, "humidity": 28.7}


def test_plan_reads_merges_adjacent_values_only():
    specs = [
        ValueSpec("b", IR, 2),
        ValueSpec("a", IR, 0, Encoding.FLOAT32),
        ValueSpec("far", IR, 10),
        ValueSpec("held", HR, 3),
        ValueSpec("leak", DI, 0, Encoding.BIT),
        ValueSpec("smoke", DI, 1, Encoding.BIT),
    ]
    blocks = plan_reads(specs)
    assert [(int(b.function), b.address, b.count) for b in blocks] == [
        (2, 0, 2),
        (3, 3, 1),
        (4, 0, 3),  # float32 at 0-1 and b at 2 share a request
        (4, 10, 1),  # never read across the gap 3..9
    ]
    assert [s.name for s in blocks[2].values] == ["a", "b"]


def test_plan_reads_splits_at_the_protocol_limit_and_rejects_overlaps():
    many = [ValueSpec(f"v{i}", HR, i) for i in range(130)]
    blocks = plan_reads(many)
    assert [(b.address, b.count) for b in blocks] == [(0, 125), (125, 5)]
    with pytest.raises(ValueError, match="overlaps"):
        plan_reads([ValueSpec("a", HR, 0, Encoding.INT32), ValueSpec("b", HR, 1)])


def test_decode_block_refuses_a_short_answer():
    block = ReadBlock(IR, 1, 2, PROFILES["xy_md02"].values)
    with pytest.raises(ValueError, match="short answer: 1 of 2"):
        decode_block(block, [0x0131])


def test_value_specs_check_their_own_consistency():
    with pytest.raises(ValueError, match="reads bits"):
        ValueSpec("x", DI, 0, Encoding.INT16)
    with pytest.raises(ValueError, match="reads registers"):
        ValueSpec("x", IR, 0, Encoding.BIT)
    with pytest.raises(ValueError, match="invert"):
        ValueSpec("x", IR, 0, invert=True)
    with pytest.raises(ValueError, match="non-zero"):
        ValueSpec("x", IR, 0, scale=0)
    assert ValueSpec("x", DI, 0, Encoding.BIT, invert=True).decode([0]) == 1.0


def test_builtin_profiles_follow_the_reference_maps():
    def layout(name: str) -> list[tuple[object, ...]]:
        return [
            (s.name, int(s.function), s.address, str(s.encoding), s.scale, s.event, s.invert)
            for s in PROFILES[name].values
        ]

    assert layout("xy_md02") == [
        ("temperature", 4, 1, "int16", 0.1, None, False),
        ("humidity", 4, 2, "uint16", 0.1, None, False),
    ]
    assert layout("xy_md02_fine")[0][4] == 0.01
    assert layout("sht30_rh_first") == [
        ("humidity", 3, 0, "uint16", 0.1, None, False),
        ("temperature", 3, 1, "int16", 0.1, None, False),
    ]
    assert [v[0] for v in layout("sht30_t_first")] == ["temperature", "humidity"]
    assert layout("kincony_sht30")[0][3] == "sign10000"
    assert layout("di_leak_smoke") == [
        ("water_leak", 2, 0, "bit", 1.0, "alarm.water_leak", False),
        ("smoke", 2, 1, "bit", 1.0, "alarm.smoke", False),
    ]
    assert all(v[6] for v in layout("di_leak_smoke_failsafe"))
    for profile in PROFILES.values():
        assert len(plan_reads(profile.values)) == 1  # each profile is one request per poll


def _config(**device: object) -> dict[str, Any]:
    return {
        "type": "modbus_rtu",
        "id": "bus-1",
        "port": "/dev/ttyUSB0",
        "devices": [{"id": "d-1", "unit": 1, **device}],
    }


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ({}, "either profile or registers"),
        (
            {"profile": "xy_md02", "registers": [{"name": "t", "function": 4, "address": 0}]},
            "either profile or registers",
        ),
        ({"profile": "xy-md99"}, "unknown profile 'xy-md99'; built-in profiles: di_leak_smoke"),
        ({"profile": "xy_md02", "unit": 0}, "greater than or equal to 1"),
        ({"profile": "xy_md02", "unit": 248}, "less than or equal to 247"),
        (
            {"profile": "xy_md02", "overrides": {"pressure": {"scale": 2}}},
            "overrides name unknown value(s) pressure; known: temperature, humidity",
        ),
        ({"profile": "xy_md02", "overrides": {"temperature": {}}}, "give scale, offset or both"),
        (
            {"registers": [{"name": "t", "function": 2, "address": 0, "encoding": "int16"}]},
            "function 2 reads bits, not int16",
        ),
        (
            {"registers": [{"name": "t", "function": 4, "address": 0, "event": "door.forced"}]},
            "cannot come from a register",
        ),
        (
            {"registers": [{"name": "Temp", "function": 4, "address": 0}]},
            "should match pattern",
        ),
        (
            {
                "registers": [
                    {"name": "t", "function": 4, "address": 0},
                    {"name": "t", "function": 4, "address": 1},
                ]
            },
            "value name(s) t appear more than once",
        ),
        (
            {
                "registers": [
                    {"name": "a", "function": 3, "address": 0, "encoding": "float32"},
                    {"name": "b", "function": 3, "address": 1},
                ]
            },
            "b overlaps a",
        ),
    ],
)
def test_device_config_errors_say_what_is_wrong(device, message):
    with pytest.raises(ValidationError) as info:
        ModbusConfig.model_validate(_config(**device))
    assert message in str(info.value)


def test_bus_config_rejects_shared_units_and_duplicate_ids():
    raw = _config(profile="xy_md02")
    raw["devices"].append({"id": "d-2", "unit": 1, "profile": "xy_md02"})
    with pytest.raises(ValidationError, match="share unit 1"):
        ModbusConfig.model_validate(raw)
    raw["devices"][1] = {"id": "d-1", "unit": 2, "profile": "xy_md02"}
    with pytest.raises(ValidationError, match="appears more than once"):
        ModbusConfig.model_validate(raw)
    with pytest.raises(ValidationError, match="extra"):
        ModbusConfig.model_validate({**_config(profile="xy_md02"), "baud": 9600})


def test_defaults_and_line_settings():
    config = ModbusConfig.model_validate(_config(profile="xy_md02"))
    assert config.line.label == "9600 8N1"
    assert (config.timeout_s, config.retries, config.failures_to_fault) == (0.5, 1, 3)
    device = config.devices[0]
    assert device.debounce_polls == 2
    assert device.value_specs() == PROFILES["xy_md02"].values
    raw = _config(profile="xy_md02", overrides={"temperature": {"offset": -0.5}})
    specs = ModbusConfig.model_validate({**raw, "parity": "E"}).devices[0].value_specs()
    assert (specs[0].scale, specs[0].offset) == (0.1, -0.5)
    assert ModbusConfig.model_validate({**raw, "parity": "E"}).line.label == "9600 8E1"


def test_the_registry_parses_it_with_a_dotted_field_in_errors(monkeypatch):
    monkeypatch.setitem(
        driver_registry.BUILTIN_DRIVERS, "modbus_rtu", "device_drivers.modbus:ModbusRtuDriver"
    )
    config = parse_driver_config(_config(profile="xy_md02"))
    assert isinstance(config, ModbusConfig)
    with pytest.raises(DriverConfigError) as info:
        parse_driver_config(_config(profile="xy_md02", unit=300))
    assert info.value.field == "devices.0.unit"
