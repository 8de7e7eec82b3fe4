"""Business calendars: working time between two instants, and N working minutes later.

A calendar is a time zone, weekly working hours (several ranges a day), public
holidays from the `holidays` package (country and subdivision, e.g. DE-BY) and
extra closed days.  Working intervals are made per local day and turned into UTC
instants through zoneinfo, so a day with a DST change is as long as it really is.
They are indexed once per calendar and the years asked about, with the working time
before each interval, so `add` and `working_time` are a bisect and a subtraction
(issue 31: walking day by day cost a quarter of a mail's CPU with an SLA).  All
arithmetic is in whole microseconds on aware UTC datetimes.
"""

from __future__ import annotations

import bisect
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

    # -- the index: working time as a running sum over the intervals -------------------

    def _build(self, first: int, last: int) -> None:
        """Index the local years first..last: each working interval's start and end in
        microseconds since the epoch, and the working time before it (merged where
        intervals touch or overlap, so nothing counts twice)."""
        starts: list[int] = []
        ends: list[int] = []
        day, stop = dt.date(first, 1, 1) - dt.timedelta(days=1), dt.date(last, 12, 31)
        while day <= stop:
            for a, b in self._intervals(day):
                lo, hi = _micros(a), _micros(b)
                if ends and lo <= ends[-1]:
                    ends[-1] = max(ends[-1], hi)
                else:
                    starts.append(lo)
                    ends.append(hi)
            day += dt.timedelta(days=1)
        before = [0] * len(starts)
        for i in range(1, len(starts)):
            before[i] = before[i - 1] + ends[i - 1] - starts[i - 1]
        self._years = (first, last)
        # instants whose local year has a year indexed on either side: _cover holds
        self._safe = (
            _micros(dt.datetime(first + 1, 1, 1, tzinfo=self.zone)),
            _micros(dt.datetime(last, 1, 1, tzinfo=self.zone)),
        )
        self._starts, self._ends, self._before = starts, ends, before
        self._upto = [b + e - s for s, e, b in zip(starts, ends, before, strict=True)]

    def _cover(self, instant: dt.datetime, until: int | None = None) -> None:
        """Make sure the index reaches from a year before the instant to a year after it
        (or to the local year `until`)."""
        year = instant.astimezone(self.zone).year
        first, last = getattr(self, "_years", (year, year - 1))
        want_first, want_last = year - 1, max(year + 1, until or 0)
        if first <= want_first and want_last <= last:
            return
        self._build(min(first, want_first), max(last, want_last))

    def _worked(self, at: int) -> int:
        """Working microseconds from the index's start to `at`."""
        i = bisect.bisect_right(self._starts, at) - 1
        if i < 0:
            return 0
        return self._before[i] + min(at, self._ends[i]) - self._starts[i]

    def working_time(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Working time in [start, end); zero when end is not after start."""
        if end <= start:
            return dt.timedelta(0)
        self._cover(start)
        self._cover(end)
        worked = self._worked(_micros(end)) - self._worked(_micros(start))
        return dt.timedelta(microseconds=worked)

    def add(self, start: dt.datetime, minutes: float) -> dt.datetime:
        """The instant at which `minutes` of working time after start have passed: a
        bisect in the index (built once per calendar and years it covers).  Looks at
        most MAX_DAYS local days ahead, from the day before the start's."""
        left = dt.timedelta(minutes=minutes)
        if left <= dt.timedelta(0):
            return start
        at = _micros(start)
        lo, hi = getattr(self, "_safe", (0, 0))
        if lo <= at < hi:  # the common case: no time zone arithmetic at all
            target = self._worked(at) + left // dt.timedelta(microseconds=1)
            j = bisect.bisect_left(self._upto, target)
            if j < len(self._upto):
                found = self._starts[j] + target - self._before[j]
                if found - at <= _SURELY_WITHIN:
                    return _instant(found)
        last_day = self._local_day(start) + dt.timedelta(days=MAX_DAYS - 1)
        limit = _micros(dt.datetime.combine(last_day, dt.time(), self.zone)) + DAY_MICROS
        self._cover(start)
        target = self._worked(_micros(start)) + left // dt.timedelta(microseconds=1)
        while True:
            j = bisect.bisect_left(self._upto, target)
            if j < len(self._upto):
                found = self._starts[j] + target - self._before[j]
                if found <= limit:
                    return _instant(found)
                break
            if self._years[1] > last_day.year:
                break
            self._cover(start, until=min(self._years[1] + 2, last_day.year + 1))  # rare
        raise ValueError(f"calendar {self.name!r} has no working time in ten years")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DAY_MICROS = 86_400_000_000
# Well inside the MAX_DAYS local days add() looks at, whatever the zone's offset
_SURELY_WITHIN = (MAX_DAYS - 2) * DAY_MICROS


def _micros(instant: dt.datetime) -> int:
    return (instant - _EPOCH) // dt.timedelta(microseconds=1)


def _instant(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=micros)
