"""Ticket numbers: the Damm digit catches every single error and adjacent transposition."""

from __future__ import annotations

import datetime as dt
import itertools
import multiprocessing
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.mail import ticketnumber
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Ticket

from helpers import mail, make_config

digits = st.text(alphabet="0123456789", min_size=1, max_size=30)


def test_known_damm_vector() -> None:
    assert ticketnumber.with_check_digit("572") == "5724"  # the textbook example
    assert ticketnumber.is_valid("5724")
    assert not ticketnumber.is_valid("5723")


@given(digits, st.data())
def test_every_single_digit_error_is_caught(body: str, data: st.DataObject) -> None:
    number = ticketnumber.with_check_digit(body)
    pos = data.draw(st.integers(0, len(number) - 1))
    wrong = data.draw(st.sampled_from([d for d in "0123456789" if d != number[pos]]))
    assert not ticketnumber.is_valid(number[:pos] + wrong + number[pos + 1 :])


@given(digits, st.data())
def test_every_adjacent_transposition_is_caught(body: str, data: st.DataObject) -> None:
    number = ticketnumber.with_check_digit(body)
    pairs = [i for i in range(len(number) - 1) if number[i] != number[i + 1]]
    if not pairs:
        return
    i = data.draw(st.sampled_from(pairs))
    swapped = number[:i] + number[i + 1] + number[i] + number[i + 2 :]
    assert not ticketnumber.is_valid(swapped)


def test_exhaustive_over_all_four_digit_bodies() -> None:
    """Belt and braces: every 4-digit body, every error, every swap."""
    for body in map("".join, itertools.product("0123456789", repeat=4)):
        number = ticketnumber.with_check_digit(body)
        for i in range(len(number)):
            for d in "0123456789":
                if d != number[i]:
                    assert not ticketnumber.is_valid(number[:i] + d + number[i + 1 :])
        for i in range(len(number) - 1):
            if number[i] != number[i + 1]:
                assert not ticketnumber.is_valid(
                    number[:i] + number[i + 1] + number[i] + number[i + 2 :]
                )


def test_generators_format() -> None:
    counter = iter(range(1, 100))
    day = dt.date(2026, 11, 22)
    n = ticketnumber.generate("date", "10", lambda name: next(counter), day)
    assert n == "2026112210000014"  # DESIGN.md's shape; its example digit 7 is not Damm's
    assert ticketnumber.generate(
        "autoincrement", "10", lambda name: 123456, day
    ) == ticketnumber.with_check_digit("10123456")
    r = ticketnumber.generate("random", "10", lambda name: pytest.fail("no counter"), day)
    assert len(r) == 2 + 10 + 1 and r.startswith("10") and ticketnumber.is_valid(r)
    with pytest.raises(ValueError):
        ticketnumber.generate("nope", "10", lambda name: 1, day)


def test_date_counter_restarts_each_day(db_url: str) -> None:
    engine = db.make_engine(db_url)
    sessions = db.sessionmaker_for(engine)
    with db.transaction(sessions) as s:
        a = [db.next_counter(s, "date:20261122") for _ in range(3)]
        b = db.next_counter(s, "date:20261123")
    assert a == [1, 2, 3] and b == 1
    engine.dispose()


def _create_tickets(url: str, kind: str, count: int, out: list[str] | None = None) -> list[str]:
    config = make_config(url, system={"ticket_number": kind})
    pipeline = Pipeline(config, acknowledge=False)
    numbers = [
        pipeline.deliver_one(mail(f"t{i}"), "hotline@example.com").ticket_number
        for i in range(count)
    ]
    pipeline.engine.dispose()
    if out is not None:
        out.extend(numbers)
    return numbers


@pytest.mark.parametrize("kind", ["date", "autoincrement", "random"])
def test_concurrent_creators_never_share_a_number(db_url: str, kind: str) -> None:
    """Threads on SQLite, processes on PostgreSQL (as several daemons would be)."""
    workers, each = 6, 15
    numbers: list[str] = []
    if db_url.startswith("sqlite"):
        threads = [
            threading.Thread(target=_create_tickets, args=(db_url, kind, each, numbers))
            for _ in range(workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers) as pool:
            for chunk in pool.starmap(_create_tickets, [(db_url, kind, each)] * workers):
                numbers.extend(chunk)
    assert len(numbers) == workers * each
    assert len(set(numbers)) == len(numbers)
    assert all(ticketnumber.is_valid(n) for n in numbers)
    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Ticket)).scalar_one() == len(numbers)
    engine.dispose()


@pytest.mark.postgres
def test_counter_outlives_a_dropped_connection(pg_url: str) -> None:
    """PostgreSQL: the counters have a pool of their own whose connections are not
    pinged before use (a round trip a ticket); when the server has dropped one, the
    next number still comes, once, on a fresh connection."""
    engine = db.make_engine(pg_url)
    sessions = db.sessionmaker_for(engine)
    with db.transaction(sessions) as s:
        first = db.next_counter(s, "autoincrement")
    counters = db._counter_engine(engine)
    with counters.connect() as line:  # the pooled connection the counter used
        pid = line.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        # durable through the ticket's own commit, which flushes the WAL past it
        assert line.exec_driver_sql("SHOW synchronous_commit").scalar_one() == "off"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    with db.transaction(sessions) as s:
        second = db.next_counter(s, "autoincrement")
        third = db.next_counter(s, "autoincrement")
    assert first < second < third
    engine.dispose()
    assert engine not in db._COUNTER_ENGINES  # disposing the engine closed its pool


@pytest.mark.postgres
def test_counter_pools_go_with_their_engines(pg_url: str) -> None:
    """An engine nobody disposes still takes its counters' connections with it when it
    is collected (a pool that held the engine alive used up the server's connections
    in a test run)."""
    import gc

    def one() -> None:
        engine = db.make_engine(pg_url)
        with db.transaction(db.sessionmaker_for(engine)) as s:
            db.next_counter(s, "autoincrement")

    def backends() -> int:
        probe = db.make_engine(pg_url)
        with probe.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM pg_stat_activity")).scalar_one()
        probe.dispose()
        return int(n)

    gc.collect()
    before = backends()
    for _ in range(30):
        one()
    gc.collect()
    assert len(db._COUNTER_ENGINES) == 0
    deadline = time.monotonic() + 10  # a backend ends a moment after its client closes
    while backends() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert backends() <= before + 2
