"""Escalation passes over a big database: one that finds nothing, one that fires 1,000.

    python bench/escalations.py [--tickets 1000000] [--due 1000] [--db sqlite|URL]

The database holds --tickets open tickets (no articles), each with a running
first response clock and its next escalation instant in the future; then --due
of them (part of the total) are made due: created 55 minutes ago, their 80%
warning (48 minutes) has passed, the deadline (60) has not.  The SLA sends the
warning to the queue's two agents, so each firing queues two mails.

Measured through Scheduler.run_pass, the code `serve` and `escalations check`
run: the median and worst of 50 passes that find nothing due, then the one pass
that fires the due warnings (its mails are rendered later by the outbox sender,
not here).  Goals (issue 6): under 50 ms and under 5 s.  The tickets are
written with one INSERT ... SELECT each; PostgreSQL is ANALYZEd afterwards, as
autovacuum would do after such a load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import bindparam, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest import scratch_databases

from otrs_mailgate.config.schema import Config
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.jobs.scheduler import Scheduler
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Escalation, Outbox, UTCDateTime
from otrs_mailgate.tickets import agents

ALWAYS = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
SEQUENCE = {
    "sqlite": "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :n) "
    "SELECT i FROM seq",
    "postgresql": "SELECT i FROM generate_series(1, :n) AS i",
}
INSERT = (
    "INSERT INTO ticket (number, title, queue_id, state, priority, language, created_at, "
    "updated_at, first_response_due, solution_due, escalation_at) "
    "SELECT :prefix || CAST(i AS VARCHAR(12)), 'bench ticket', :queue, 'open', 3, 'en', "
    ":created, :created, :due, NULL, :warn FROM ({seq}) AS s"
)


def make_config(url: str) -> Config:
    return Config.model_validate(
        {
            "system": {"domain": "mailgate.test"},
            "database": {"url": url},
            "queue": [{"name": "Hotline", "addresses": ["hotline@example.com"]}],
            "calendar": [{"name": "always", "hours": ALWAYS}],
            "sla": [
                {
                    "name": "std",
                    "queues": ["Hotline"],
                    "calendar": "always",
                    "first_response": 60,
                    "warn_to": ["queue"],
                }
            ],
        }
    )


def add_tickets(pipeline: Pipeline, prefix: str, n: int, created: dt.datetime) -> float:
    """n open tickets created at `created`, in one statement; seconds it took."""
    dialect = pipeline.engine.dialect.name
    stmt = text(INSERT.format(seq=SEQUENCE[dialect])).bindparams(
        bindparam("created", type_=UTCDateTime()),
        bindparam("due", type_=UTCDateTime()),
        bindparam("warn", type_=UTCDateTime()),
    )
    start = time.perf_counter()
    with db.transaction(pipeline.sessions) as session:
        session.execute(
            stmt,
            {
                "prefix": prefix,
                "n": n,
                "queue": pipeline.queue_id("Hotline"),
                "created": created,
                "due": created + dt.timedelta(minutes=60),
                "warn": created + dt.timedelta(minutes=48),
            },
        )
    return time.perf_counter() - start


def run(url: str, tickets: int, due: int) -> None:
    engine = db.make_engine(url)
    db.upgrade(engine)
    pipeline = Pipeline(make_config(url), engine)
    pipeline.ensure_queues()
    with db.transaction(pipeline.sessions) as session:
        for login in ("alice", "bob"):
            agents.add(session, login, f"{login}@agents.test", "", [])
            agents.grant(session, pipeline.queue_id("Hotline"), login, "rw")
    now = dt.datetime.now(dt.UTC)
    load = add_tickets(pipeline, "F", tickets - due, now - dt.timedelta(minutes=10))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    scheduler = Scheduler(lambda: pipeline.site, pipeline.sessions)

    empty = []
    for _ in range(50):
        start = time.perf_counter()
        result = scheduler.run_pass()
        empty.append(time.perf_counter() - start)
        assert not result.busy, result
    add_tickets(pipeline, "D", due, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=55))
    start = time.perf_counter()
    result = scheduler.run_pass()
    firing = time.perf_counter() - start
    after = time.perf_counter()
    scheduler.run_pass()
    after = time.perf_counter() - after
    with db.read_only(engine) as conn:
        fired = conn.execute(select(func.count()).select_from(Escalation)).scalar_one()
        mails = conn.execute(select(func.count()).select_from(Outbox)).scalar_one()
    assert result.escalated == fired == due and mails == 2 * due, (result, fired, mails)
    engine.dispose()

    print(f"escalation benchmark: {tickets} open tickets on {engine.dialect.name}")
    print(f"  loading the tickets:                    {load:8.1f} s")
    median, worst = statistics.median(empty) * 1000, max(empty) * 1000
    print(
        f"  pass finding nothing due (50 passes):   median {median:.2f} ms, "
        f"worst {worst:.2f} ms  (goal < 50 ms)"
    )
    print(f"  pass firing {due} warnings ({mails} mails): {firing:8.2f} s  (goal < 5 s)")
    print(f"  the next pass, nothing due again:       {after * 1000:8.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=1_000_000)
    ap.add_argument("--due", type=int, default=1000)
    ap.add_argument(
        "--db", default="sqlite", help="sqlite (files in ./), or a PostgreSQL admin URL"
    )
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory(dir=".", prefix=".bench-") as tmp,
        scratch_databases(args.db, tmp) as urls,
    ):
        run(urls[1], args.tickets, args.due)


if __name__ == "__main__":
    main()
