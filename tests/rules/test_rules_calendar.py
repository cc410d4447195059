"""Holiday calendars on schedules: ``except_dates`` close the window on those local dates."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from rules import RuleError, Schedule, parse_rules

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local_ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp() * 1000)


@pytest.mark.parametrize(
    ("local", "inside"),
    [
        ("2026-01-01 23:00", True),
        ("2026-01-02 02:00", True),  # still the night that started on the 1st
        ("2026-01-02 23:00", False),  # the holiday's own night
        ("2026-01-03 02:00", False),  # ... which runs into the next morning
        ("2026-01-03 23:00", True),
    ],
)
def test_except_dates_close_the_window_that_starts_on_them(local: str, inside: bool) -> None:
    schedule = Schedule.model_validate(
        {
            "timezone": "Asia/Shanghai",
            "between": ("22:00", "06:00"),
            "except_dates": ("2026-01-02",),
        }
    )
    assert schedule.contains(local_ms(local)) is inside


def test_except_dates_load_from_yaml_dates_and_apply_to_new_kinds() -> None:
    text = """\
rules:
  - id: cards-denied
    kind: count
    severity: major
    message: "Denied cards at {place}"
    match: {kind: door.access, data: {granted: false}}
    count: 3
    window: 1m
    schedule:
      timezone: Asia/Shanghai
      except_dates: [2026-10-01, 2026-10-02]
"""
    ruleset = parse_rules(text, "c.yaml")
    rule = ruleset.get("cards-denied")
    assert rule is not None
    schedule = getattr(rule, "schedule", None)
    assert isinstance(schedule, Schedule)
    assert schedule.except_dates == (dt.date(2026, 10, 1), dt.date(2026, 10, 2))
    assert not schedule.contains(local_ms("2026-10-01 12:00"))
    assert schedule.contains(local_ms("2026-10-03 12:00"))

    with pytest.raises(RuleError) as caught:
        parse_rules(text.replace("2026-10-02", "2026-13-02"), "c.yaml")
    assert caught.value.line == 11
    assert "invalid date '2026-13-02'" in caught.value.reason
    with pytest.raises(RuleError) as caught:
        parse_rules(text.replace("2026-10-02", "tomorrow"), "c.yaml")
    assert (caught.value.line, caught.value.field) == (11, "schedule.except_dates[1]")
