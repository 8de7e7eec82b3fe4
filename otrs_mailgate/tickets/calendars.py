"""Business calendars: working time between two instants, and N working minutes later.

A calendar is a time zone, weekly working hours (several ranges a day), public
holidays from the `holidays` package (country and subdivision, e.g. DE-BY) and
extra closed days.  Working intervals are made per local day and turned into UTC
instants through zoneinfo, so a day with a DST change is as long as it really is.
All arithmetic is in whole seconds on aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from otrs_mailgate.config.schema import CalendarConfig, parse_range

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 3660  # look no further than ten years for working time


class Calendar:
    def __init__(self, config: CalendarConfig) -> None:
        self.name = config.name
        self.zone = ZoneInfo(config.timezone)
        self.hours: dict[int, list[tuple[dt.time, dt.time | None]]] = {}
        for index, day in enumerate(DAYS):
            self.hours[index] = [parse_range(r) for r in getattr(config.hours, day)]
        self.closed = {dt.date.fromisoformat(d) for d in config.closed}
        self.holidays: holidays_lib.HolidayBase | None = None
        if config.holidays:
            country, _, subdiv = config.holidays.partition("-")
            self.holidays = holidays_lib.country_holidays(country, subdiv=subdiv or None)

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.closed or (self.holidays is not None and day in self.holidays):
            return False
        return bool(self.hours[day.weekday()])

    def _intervals(self, day: dt.date) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """The working intervals of one local day, as UTC instants, in order."""
        if not self.is_working_day(day):
            return
        for start, end in self.hours[day.weekday()]:
            a = dt.datetime.combine(day, start, self.zone).astimezone(dt.UTC)
            if end is None:  # 24:00: midnight of the next day
                b_local = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self.zone)
            else:
                b_local = dt.datetime.combine(day, end, self.zone)
            b = b_local.astimezone(dt.UTC)
            if b > a:
                yield a, b

    def _local_day(self, instant: dt.datetime) -> dt.date:
        return instant.astimezone(self.zone).date()

    def working_time(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Working time in [start, end); zero when end is not after start."""
        if end <= start:
            return dt.timedelta(0)
        total = dt.timedelta(0)
        day = self._local_day(start) - dt.timedelta(days=1)
        last = self._local_day(end) + dt.timedelta(days=1)
        while day <= last:
            for a, b in self._intervals(day):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += hi - lo
            day += dt.timedelta(days=1)
        return total

    def add(self, start: dt.datetime, minutes: float) -> dt.datetime:
        """The instant at which `minutes` of working time after start have passed."""
        left = dt.timedelta(minutes=minutes)
        if left <= dt.timedelta(0):
            return start
        day = self._local_day(start) - dt.timedelta(days=1)
        for _ in range(MAX_DAYS):
            for a, b in self._intervals(day):
                lo = max(a, start)
                if b <= lo:
                    continue
                if b - lo >= left:
                    return lo + left
                left -= b - lo
            day += dt.timedelta(days=1)
        raise ValueError(f"calendar {self.name!r} has no working time in ten years")
