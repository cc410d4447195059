"""When an event rule applies: a daily time window in a time zone, on some days of the week."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, model_validator

from rules.errors import FieldError

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIME_OF_DAY_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
TimeOfDay = Annotated[str, StringConstraints(pattern=TIME_OF_DAY_PATTERN)]


def _minutes(time_of_day: str) -> int:
    hours, minutes = time_of_day.split(":")
    return int(hours) * 60 + int(minutes)


class Schedule(BaseModel):
    """A recurring window; an event outside it does not match the rule.

    ``between`` is start-inclusive and end-exclusive local time, like Alertmanager's time
    intervals.  A window whose end is not after its start wraps midnight: ``["22:00", "06:00"]``
    is a night.  ``days`` name the day a window *starts* on, so with ``days: [fri]`` the night
    window covers Friday 22:00 to Saturday 06:00: a guard thinks of that as Friday night.
    ``except_dates`` is a holiday calendar read the same way: no window starts on those dates.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = Field(
        default="UTC",
        description="IANA time zone the window is read in, e.g. Asia/Shanghai",
    )
    between: tuple[TimeOfDay, TimeOfDay] | None = Field(
        default=None,
        description='local start and end "HH:MM"; wraps midnight when end <= start; none = all day',
    )
    days: tuple[Weekday, ...] = Field(
        default=(),
        description="days (mon..sun) on which the window starts; empty = every day",
    )
    except_dates: tuple[dt.date, ...] = Field(
        default=(),
        max_length=1000,
        description="local dates (YYYY-MM-DD, e.g. public holidays) on which no window starts",
    )

    _zone: zoneinfo.ZoneInfo = PrivateAttr()
    _window: tuple[int, int] | None = PrivateAttr(default=None)
    _days: frozenset[int] = PrivateAttr(default=frozenset())
    _except: frozenset[dt.date] = PrivateAttr(default=frozenset())

    @model_validator(mode="after")
    def _compile(self) -> Self:
        # Resolve the zone here, at load, so that evaluating an event never touches tzdata files.
        try:
            self._zone = zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise FieldError("timezone", f"unknown IANA time zone {self.timezone!r}") from None
        if self.between is not None:
            start, end = (_minutes(t) for t in self.between)
            if start == end:
                reason = "start and end are equal; leave 'between' out for the whole day"
                raise FieldError("between", reason)
            self._window = (start, end)
        self._days = frozenset(WEEKDAYS.index(day) for day in self.days)
        self._except = frozenset(self.except_dates)
        return self

    def contains(self, ts_ms: int) -> bool:
        """Whether the instant ``ts_ms`` (epoch milliseconds) falls inside the schedule."""
        local = dt.datetime.fromtimestamp(ts_ms // 1000, tz=self._zone)
        started = local.date()  # the local date the window started on
        if self._window is not None:
            minute = local.hour * 60 + local.minute
            start, end = self._window
            if start < end:
                if not start <= minute < end:
                    return False
            elif minute < end:
                # Early-morning part of a window that started the previous evening.
                started -= dt.timedelta(days=1)
            elif minute < start:
                return False
        if self._except and started in self._except:
            return False
        return not self._days or started.weekday() in self._days
