"""Ingest throughput: the full pipeline against a raw-insert baseline, same process, same disk.

    python bench/ingest.py [--mails 10000] [--size 2048] [--db sqlite|URL] [--breakdown]
                           [--config FILE] [--profile N]

Baseline: one INSERT of the raw bytes per transaction into a one-table database
with the same durability settings (WAL, synchronous=FULL).  Pipeline: every mail
through Pipeline.deliver_batch (parse, classify, route, match, ticket number,
article, attachments, history chain, acknowledgement into the outbox), --batch
mails per transaction as `import` and the daemon's group commit do; the figure
for one transaction per mail (the pipe entry) is printed as well.  One mail in
five is a follow-up to an earlier ticket.
Goal (issue 2): the pipeline reaches at least half the baseline's mails/second.
--breakdown adds a run that splits a mail's cost: parsing, the database's own
work, SQLAlchemy around each statement, and the rest.  The pipeline runs the shipped
example configuration (queues, filters, SLAs on a business calendar: issue 31) unless
--config names another; the bare configuration's figure follows as a second line.
--profile N prints the N functions that take the most time of a run (cProfile).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import (
    Column,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    create_engine,
    event,
    insert,
    text,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab import EXAMPLE, settings

from otrs_mailgate.config.schema import Config
from otrs_mailgate.ingest.pipeline import Item, Pipeline, Result
from otrs_mailgate.mail.parse import parse
from otrs_mailgate.store import db

WORDS = ("printer server mail network laptop broken urgent please help login password").split()


def make_mail(i: int, size: int, follow_up: str | None) -> bytes:
    rnd = random.Random(i)
    subject = " ".join(rnd.choice(WORDS) for _ in range(4))
    if follow_up:
        subject = f"Re: [Ticket#{follow_up}] {subject}"
    head = (
        f"From: Customer {i % 997} <customer{i % 997}@example.net>\r\n"
        f"To: hotline@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <bench-{i}@example.net>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0100\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    body = []
    while len(head) + sum(len(line) + 2 for line in body) < size:
        body.append(" ".join(rnd.choice(WORDS) for _ in range(10)))
    return (head + "\r\n".join(body) + "\r\n").encode()


def baseline(url: str, mails: list[bytes]) -> float:
    engine = db.make_engine(url)
    meta = MetaData()
    table = Table("raw", meta, Column("id", Integer, primary_key=True), Column("data", LargeBinary))
    meta.drop_all(engine)
    meta.create_all(engine)
    start = time.perf_counter()
    for raw in mails:
        with engine.begin() as conn:
            conn.execute(insert(table).values(data=raw))
    elapsed = time.perf_counter() - start
    meta.drop_all(engine)
    engine.dispose()
    return len(mails) / elapsed


class Clock:
    """Where a pipeline run's time goes: the database's own work (the cursor calls) and
    SQLAlchemy around each statement (compile cache, parameters, result); the commits
    (one fsync a batch) stay in the rest.  The events cost a microsecond or two each."""

    def __init__(self, engine: Engine) -> None:
        self.cursor = self.around = 0.0
        self.statements = 0
        self._executes: list[float] = []  # nested executes (a BEGIN inside) count once
        self._cursor_at = 0.0
        event.listen(engine, "before_execute", self._before)
        event.listen(engine, "after_execute", self._after)
        event.listen(engine, "before_cursor_execute", self._before_cursor)
        event.listen(engine, "after_cursor_execute", self._after_cursor)

    def _before(self, *_: object) -> None:
        self._executes.append(time.perf_counter())

    def _after(self, *_: object) -> None:
        started = self._executes.pop()
        if not self._executes:
            self.around += time.perf_counter() - started

    def _before_cursor(self, *_: object) -> None:
        self._cursor_at = time.perf_counter()

    def _after_cursor(self, *_: object) -> None:
        self.cursor += time.perf_counter() - self._cursor_at
        self.statements += 1


def pipeline_run(
    url: str,
    n: int,
    size: int,
    batch: int,
    clock: list[Clock] | None = None,
    source: Path | None = None,
) -> tuple[float, int]:
    """Mails per second through Pipeline.deliver_batch, `batch` mails per transaction,
    with the configuration `source` (lab.settings; None: the bare one)."""
    engine = db.make_engine(url)
    db.upgrade(engine)
    if clock is not None:
        clock.append(Clock(engine))
    with tempfile.TemporaryDirectory(prefix=".bench-keys-", dir=".") as keys:
        config = Config.model_validate(settings(source, url, Path(keys)))
        pipeline = Pipeline(config, engine)
        rate, made = _deliver_all(pipeline, n, size, batch)
    engine.dispose()
    return rate, made


def _deliver_all(pipeline: Pipeline, n: int, size: int, batch: int) -> tuple[float, int]:
    numbers: list[str] = []
    elapsed = 0.0
    for first in range(0, n, batch):
        items = []
        for i in range(first, min(n, first + batch)):
            pick = random.Random(i)
            follow = numbers[pick.randrange(len(numbers))] if numbers and i % 5 == 4 else None
            raw = make_mail(i, size, follow)
            items.append(Item(raw, ["hotline@example.com"], f"customer{i % 997}@example.net"))
        start = time.perf_counter()
        done = pipeline.deliver_batch(items)
        elapsed += time.perf_counter() - start
        for [result] in done:
            assert isinstance(result, Result), result
            if result.new_ticket:
                numbers.append(result.ticket_number)
    return n / elapsed, len(numbers)


@contextmanager
def scratch_databases(kind: str, tmp: str) -> Iterator[tuple[str, str]]:
    """Two empty databases on the same disk/server: one for the baseline, one for the pipeline."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/baseline.sqlite", f"sqlite:///{tmp}/pipeline.sqlite"
        return
    admin = create_engine(db.normalise_url(kind), isolation_level="AUTOCOMMIT")
    names = [f"otrs_mailgate_bench_{os.getpid()}_{n}" for n in ("base", "pipe")]
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield tuple(  # type: ignore[misc]
            admin.url.set(database=n).render_as_string(hide_password=False) for n in names
        )
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mails", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument(
        "--db", default="sqlite", help="sqlite (files in ./), or a PostgreSQL admin URL"
    )
    ap.add_argument("--batch", type=int, default=100, help="mails per transaction (as import)")
    ap.add_argument(
        "--breakdown", action="store_true", help="also a run that says where the time goes"
    )
    ap.add_argument("--config", type=Path, default=EXAMPLE, help="default: the shipped example")
    ap.add_argument("--profile", type=int, default=0, help="the N costliest functions")
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory(dir=".", prefix=".bench-") as tmp,
        scratch_databases(args.db, tmp) as urls,
    ):
        mails = [make_mail(i, args.size, None) for i in range(args.mails)]
        base = baseline(urls[0], mails)
        full, tickets = pipeline_run(urls[1], args.mails, args.size, args.batch, None, args.config)
    with (
        tempfile.TemporaryDirectory(dir=".", prefix=".bench-") as tmp,
        scratch_databases(args.db, tmp) as urls,
    ):
        bare, _ = pipeline_run(urls[1], args.mails, args.size, args.batch)
    with (
        tempfile.TemporaryDirectory(dir=".", prefix=".bench-") as tmp,
        scratch_databases(args.db, tmp) as urls,
    ):
        single, _ = pipeline_run(urls[1], min(args.mails, 2000), args.size, 1, None, args.config)
    kind = "sqlite" if args.db == "sqlite" else db.normalise_url(args.db).split("+")[0]
    print(f"ingest benchmark: {args.mails} mails of {args.size} bytes on {kind}")
    print(f"  baseline (raw INSERT, one commit each):       {base:8.1f} mails/s")
    print(f"  configuration: {args.config.name} (every queue acknowledging)")
    print(f"  pipeline, {args.batch} mails per commit ({tickets} tickets): {full:8.1f} mails/s")
    print(f"  the same, bare configuration (one queue, no SLA): {bare:8.1f} mails/s")
    print(f"  pipeline, one commit per mail (2000 mails):   {single:8.1f} mails/s")
    print(f"  ratio pipeline/baseline: {full / base:.2f}  (goal >= 0.50)")
    print(f"  the goal allows {2000 / base:.2f} ms a mail; the pipeline takes {1000 / full:.2f}")
    if args.breakdown:
        breakdown(args, mails)
    if args.profile:
        profile(args)


def profile(args: argparse.Namespace) -> None:
    """Where a run's time goes, function by function (cumulative and own time)."""
    import cProfile
    import pstats

    with (
        tempfile.TemporaryDirectory(dir=".", prefix=".bench-") as tmp,
        scratch_databases(args.db, tmp) as urls,
    ):
        profiler = cProfile.Profile()
        profiler.enable()
        pipeline_run(urls[1], min(args.mails, 2000), args.size, args.batch, None, args.config)
        profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(args.profile)
    stats.sort_stats("cumulative").print_stats(args.profile)


def breakdown(args: argparse.Namespace, mails: list[bytes]) -> None:
    """A third run, timed by its parts (ms a mail)."""
    started = time.perf_counter()
    for raw in mails:
        parse(raw)
    parsing = (time.perf_counter() - started) / len(mails) * 1000
    clocks: list[Clock] = []
    with (
        tempfile.TemporaryDirectory(dir=".", prefix=".bench-") as tmp,
        scratch_databases(args.db, tmp) as urls,
    ):
        rate, _ = pipeline_run(urls[1], args.mails, args.size, args.batch, clocks, args.config)
    [clock] = clocks
    total = 1000 / rate
    own = clock.cursor / args.mails * 1000
    around = (clock.around - clock.cursor) / args.mails * 1000
    each = (clock.around - clock.cursor) / clock.statements * 1e6
    print(f"  where the time goes, {args.batch} mails per commit (ms a mail):")
    print(f"    all ({rate:.1f} mails/s with the timing events): {total:6.3f}")
    print(f"    parsing (email, policy=default):           {parsing:6.3f}")
    statements = f"{clock.statements / args.mails:.1f} statements"
    print(f"    the database's own work, {statements}:  {own:6.3f}")
    print(f"    SQLAlchemy around them ({each:.0f} us each):       {around:6.3f}")
    print(f"    the rest (pipeline's Python, commits):     {total - parsing - own - around:6.3f}")


if __name__ == "__main__":
    main()
