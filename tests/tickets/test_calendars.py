"""Business calendars: hand-computed answers, and properties that must hold everywhere."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otrs_mailgate.config.schema import CalendarConfig, ConfigError, load
from otrs_mailgate.tickets.calendars import Calendar

BERLIN = ZoneInfo("Europe/Berlin")
SPLIT = ["08:00-12:00", "13:00-17:00"]
OFFICE = CalendarConfig(
    name="office",
    timezone="Europe/Berlin",
    hours={d: SPLIT for d in ("mon", "tue", "wed", "thu", "fri")},
    holidays="DE-BY",
    closed=["2026-12-24", "2026-12-31"],
)
ALWAYS = CalendarConfig(
    name="24x7",
    timezone="Europe/Berlin",
    hours={d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
)


def at(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=BERLIN)


def hours(td: dt.timedelta) -> float:
    return td.total_seconds() / 3600


def test_over_a_weekend() -> None:
    cal = Calendar(OFFICE)
    assert hours(cal.working_time(at(2026, 11, 20, 16), at(2026, 11, 23, 10))) == 3  # Fri 1 + Mon 2
    assert cal.add(at(2026, 11, 20, 16, 30), 60) == at(2026, 11, 23, 8, 30)
    assert cal.add(at(2026, 11, 23, 11, 30), 60) == at(2026, 11, 23, 13, 30)  # over lunch


def test_over_a_public_holiday() -> None:
    cal = Calendar(OFFICE)  # 2026-01-06, Epiphany, is a holiday in Bavaria
    assert hours(cal.working_time(at(2026, 1, 5, 16), at(2026, 1, 7, 9))) == 2
    elsewhere = Calendar(OFFICE.model_copy(update={"holidays": "DE-BE"}))  # not in Berlin
    assert hours(elsewhere.working_time(at(2026, 1, 5, 16), at(2026, 1, 7, 9))) == 10


def test_dst_both_ways() -> None:
    cal = Calendar(ALWAYS)
    # 29 March 2026: 02:00 becomes 03:00, the day has 23 hours
    assert hours(cal.working_time(at(2026, 3, 28, 12), at(2026, 3, 29, 12))) == 23
    # 25 October 2026: 03:00 becomes 02:00 again, the day has 25 hours
    assert hours(cal.working_time(at(2026, 10, 24, 12), at(2026, 10, 25, 12))) == 25
    assert cal.add(at(2026, 3, 28, 12), 23 * 60) == at(2026, 3, 29, 12)
    office = Calendar(OFFICE)  # office hours are local: 8 hours on either side of a change
    assert hours(office.working_time(at(2026, 3, 27, 0), at(2026, 3, 31, 0))) == 16


def test_over_the_year_end() -> None:
    cal = Calendar(OFFICE)
    # Wed 23 Dec 16:00 .. Mon 4 Jan 10:00: 1 h, then the 28th-30th (24 h), then 2 h; the
    # 24th and 31st are closed, the 25th, 26th and 1st are holidays, the rest weekend
    assert hours(cal.working_time(at(2026, 12, 23, 16), at(2027, 1, 4, 10))) == 27
    assert cal.add(at(2026, 12, 23, 16), 27 * 60) == at(2027, 1, 4, 10)


def test_a_calendar_without_working_time() -> None:
    never = Calendar(CalendarConfig(hours={d: [] for d in ("mon", "tue", "wed", "thu", "fri")}))
    with pytest.raises(ValueError, match="no working time in ten years"):
        never.add(at(2026, 1, 1), 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('timezone = "Mars/Olympus"', "unknown time zone 'Mars/Olympus'"),
        ('holidays = "XX"', "'XX': "),
        ('closed = ["24.12.2026"]', "'24.12.2026' is not a date"),
        ('hours = { mon = ["12:00-08:00"] }', "the range ends before it starts"),
        ('hours = { mon = ["08:00-12:00", "11:00-13:00"] }', "ranges overlap"),
        ('hours = { mon = ["8 to 5"] }', "write a range as HH:MM-HH:MM"),
    ],
)
def test_bad_calendars_are_config_errors(tmp_path, text: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[[calendar]]\nname = "x"\n{text}\n')
    with pytest.raises(ConfigError, match="calendar") as err:
        load(cfg)
    assert message in str(err.value)


instants = st.datetimes(
    min_value=dt.datetime(2025, 1, 1),
    max_value=dt.datetime(2028, 12, 31),
    timezones=st.just(BERLIN),
)


@settings(max_examples=200, deadline=None)
@given(instants, st.integers(min_value=0, max_value=60 * 24 * 30))
def test_adding_then_measuring_gives_the_same(start: dt.datetime, minutes: int) -> None:
    cal = Calendar(OFFICE)
    end = cal.add(start, minutes)
    assert cal.working_time(start, end) == dt.timedelta(minutes=minutes)


@settings(max_examples=200, deadline=None)
@given(
    instants, st.integers(min_value=0, max_value=20000), st.integers(min_value=0, max_value=20000)
)
def test_monotonic(start: dt.datetime, a: int, b: int) -> None:
    cal = Calendar(OFFICE)
    lo, hi = sorted((a, b))
    assert cal.add(start, lo) <= cal.add(start, hi)
    assert cal.working_time(start, cal.add(start, lo)) <= cal.working_time(
        start, cal.add(start, hi)
    )


# -- issue 31: the index gives what walking day by day gave ------------------------------


def walk_working_time(cal: Calendar, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
    """The walk the index replaced (issue 31), kept as the reference."""
    if end <= start:
        return dt.timedelta(0)
    total = dt.timedelta(0)
    day = cal._local_day(start) - dt.timedelta(days=1)
    while day <= cal._local_day(end) + dt.timedelta(days=1):
        for a, b in cal._intervals(day):
            lo, hi = max(a, start), min(b, end)
            if hi > lo:
                total += hi - lo
        day += dt.timedelta(days=1)
    return total


def walk_add(cal: Calendar, start: dt.datetime, minutes: float) -> dt.datetime:
    left = dt.timedelta(minutes=minutes)
    if left <= dt.timedelta(0):
        return start
    day = cal._local_day(start) - dt.timedelta(days=1)
    for _ in range(3660):
        for a, b in cal._intervals(day):
            lo = max(a, start)
            if b <= lo:
                continue
            if b - lo >= left:
                return lo + left
            left -= b - lo
        day += dt.timedelta(days=1)
    raise ValueError("no working time")


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
RANGES = [["08:00-12:00", "13:00-17:00"], ["00:00-24:00"], ["01:30-03:30"], ["22:00-24:00"], []]


@st.composite
def calendars(draw: st.DrawFn) -> Calendar:
    """Random weekly hours (DST-crossing ranges included), zones with DST changes of an
    hour and of half an hour, holidays and closed days."""
    zone = draw(st.sampled_from(ZONES))
    week = {
        d: draw(st.sampled_from(RANGES)) for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    }
    if not any(week.values()):
        week["mon"] = ["09:00-17:00"]
    holidays = draw(st.sampled_from(["", "DE-BY", "US", "AU"]))
    closed = draw(st.lists(st.dates(dt.date(2025, 1, 1), dt.date(2027, 12, 31)), max_size=5))
    return Calendar(
        CalendarConfig(
            name="random", timezone=zone, hours=week, holidays=holidays,
            closed=[d.isoformat() for d in closed],
        )
    )  # fmt: skip


utc_instants = st.datetimes(
    min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2027, 12, 31),
    timezones=st.just(dt.UTC),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(calendars(), utc_instants, st.floats(min_value=0, max_value=60 * 24 * 60))
def test_the_index_adds_as_the_walk_did(cal: Calendar, start: dt.datetime, minutes: float) -> None:
    assert outcome(cal.add, start, minutes) == outcome(walk_add, cal, start, minutes)


def outcome(fn: object, *args: object) -> object:
    """The result, or that it found no working time (both must agree on that too)."""
    try:
        return fn(*args)  # type: ignore[operator]
    except ValueError:
        return "no working time"


@settings(max_examples=300, deadline=None)
@given(calendars(), utc_instants, utc_instants)
def test_the_index_measures_as_the_walk_did(
    cal: Calendar, start: dt.datetime, end: dt.datetime
) -> None:
    assert cal.working_time(start, end) == walk_working_time(cal, start, end)
