"""PIN entry and door.access events with the optional local decision."""

from __future__ import annotations

import pytest

from device_drivers.doors import (
    KeypadBuffer,
    access_event,
    decide,
    pin_credential,
    pseudonym_allow_list,
)
from edge_agent.pseudonym import Pseudonymiser
from wire import validate_event_data

T0 = 1_772_409_600_000


def test_hash_submits_the_digits_typed_so_far():
    pad = KeypadBuffer()
    assert pad.keys(T0, "12") == []
    in_progress = pad.pending
    assert pad.keys(T0 + 500, "34#") == ["1234"]
    assert (in_progress, pad.pending) == (True, False)
    assert pad.keys(T0 + 600, "#") == []  # nothing typed: nothing submitted


def test_several_pins_in_one_burst_and_star_clears():
    pad = KeypadBuffer()
    assert pad.keys(T0, "11#9*22#") == ["11", "22"]
    assert pad.counters["cleared"] == 1


def test_an_unfinished_entry_times_out_and_is_never_reported():
    pad = KeypadBuffer(timeout_s=5)
    pad.keys(T0, "12")
    assert pad.deadline_ms() == T0 + 5000
    assert not pad.expire(T0 + 4999)
    assert pad.expire(T0 + 5000)
    assert not pad.pending
    assert pad.deadline_ms() is None
    assert pad.keys(T0 + 6000, "3#") == ["3"]  # the old digits are gone
    # A late key also expires what was typed before it.
    pad.keys(T0 + 7000, "45")
    assert pad.keys(T0 + 20_000, "6#") == ["6"]
    assert pad.counters["timeout"] == 2


def test_an_overlong_entry_is_dropped_whole():
    pad = KeypadBuffer(max_digits=4)
    assert pad.keys(T0, "123456#") == []
    assert pad.counters["overflow"] == 1
    assert pad.keys(T0, "1234#") == ["1234"]


def test_function_keys_and_unknown_keys_are_ignored():
    pad = KeypadBuffer()
    assert pad.keys(T0, "1A2?3#") == ["123"]
    assert pad.counters["ignored"] == 2


def test_pin_credentials_are_prefixed_and_digits_only():
    assert pin_credential("0042") == "pin:0042"
    for bad in ["", "12a", "١٢"]:
        with pytest.raises(ValueError, match="digits"):
            pin_credential(bad)


def test_keypad_settings_are_checked():
    with pytest.raises(ValueError, match="positive"):
        KeypadBuffer(timeout_s=0)
    with pytest.raises(ValueError, match="positive"):
        KeypadBuffer(max_digits=0)


def test_access_event_keeps_the_raw_credential_out_of_the_data():
    event = access_event(
        "gate-reader",
        T0,
        credential="26:02f623ae",
        fmt="wiegand26",
        bits=26,
        door="gate",
        granted=None,
    )
    assert event.kind == "door.access"
    assert event.credential == "26:02f623ae"
    assert dict(event.data) == {"format": "wiegand26", "bits": 26, "door": "gate"}
    assert "02f623ae" not in repr(event)
    denied = access_event(
        "gate-reader", T0, credential="pin:1", fmt="keypad", bits=None, door=None, granted=False
    )
    assert dict(denied.data) == {"format": "keypad", "granted": False, "reason": "not_allowed"}
    for item in (event, denied):
        validate_event_data("door.access", {**item.data, "credential": "h1:" + "a" * 32})


def test_decide_without_an_authoriser_or_with_a_broken_one_makes_no_decision():
    assert decide(None, "r", "26:00") is None
    assert decide(lambda _d, raw: raw == "26:00", "r", "26:00") is True
    assert decide(lambda _d, _raw: False, "r", "26:00") is False

    def broken(_device: str, _raw: str) -> bool:
        raise RuntimeError("allow-list unavailable")

    assert decide(broken, "r", "26:00") is None
    assert decide(lambda _d, _raw: "yes", "r", "26:00") is None  # type: ignore[arg-type,return-value]


def test_an_allow_list_of_pseudonyms_decides_with_the_agents_pseudonymiser():
    site = Pseudonymiser(b"a site secret of 32 bytes, really")
    allowed = [site.pseudonym("26:02f623ae"), site.pseudonym("pin:2468")]
    authorise = pseudonym_allow_list(site.pseudonym, allowed)
    assert decide(authorise, "gate-reader", "26:02f623ae") is True
    assert decide(authorise, "gate-reader", "pin:2468") is True
    assert decide(authorise, "gate-reader", "26:00b40288") is False
    # Another site's secret gives other pseudonyms: nothing is let in.
    other = Pseudonymiser(b"another site's secret, 32 bytes!")
    assert decide(pseudonym_allow_list(other.pseudonym, allowed), "r", "26:02f623ae") is False
