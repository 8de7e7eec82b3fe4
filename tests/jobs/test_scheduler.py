"""The scheduler inside `serve`: wakes at the due instant; with two daemons and cron on one
PostgreSQL every level still fires exactly once."""

from __future__ import annotations

import datetime as dt
import re
import signal
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select, text, update

from otrs_mailgate.config import schema as config_mod
from otrs_mailgate.ingest.pipeline import Item, Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Escalation, Outbox, Ticket
from otrs_mailgate.tickets import agents, sla

from cli_helpers import cli_process, write_config
from helpers import ALWAYS_TOML, mail
from lmtp_helpers import RawLMTP, free_port, serve, start

HOT = "hotline@example.com"
SLA = (
    ALWAYS_TOML
    + """
[[sla]]
name = "std"
queues = ["Hotline"]
calendar = "always"
first_response = 60
warn_to = ["queue"]
[[sla.escalation]]
to = ["queue"]
[[sla.escalation]]
after = 30
to = ["manager@boss.test"]
"""
)


def daemon_config(tmp_path: Path, db_url: str, port: int, name: str = "otrs-mailgate.toml") -> Path:
    # The outbox sender finds no MTA on this port: the mails stay queued for counting.
    return write_config(
        tmp_path / name, db_url, f"[smtp]\nport = {free_port()}\n" + SLA, lmtp_port=port
    )


def rows(db_url: str, stmt: object) -> list:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        found = list(conn.execute(stmt))  # type: ignore[arg-type]
    engine.dispose()
    return found


def deliver(port: int, subject: str) -> None:
    c = RawLMTP(port)
    c.cmd("LHLO t")
    _, replies = c.send("cus@customer.test", [HOT], mail(subject))
    c.close()
    assert replies[0].startswith("250")


def test_serve_wakes_at_the_due_instant_not_at_its_next_poll(tmp_path, db_url) -> None:
    port = free_port()
    proc = start(daemon_config(tmp_path, db_url, port), port)
    try:
        deliver(port, "first")
        # Move the first ticket back in time behind the daemon's back: its warning is
        # due in 3 s.  The daemon learns of it when the next mail's commit wakes it.
        engine = create_engine(db_url)
        instant = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
        created = instant - dt.timedelta(minutes=48)
        with engine.begin() as conn:
            conn.execute(
                update(Ticket)
                .where(Ticket.id == 1)
                .values(
                    created_at=created,
                    first_response_due=created + dt.timedelta(minutes=60),
                    escalation_at=instant,
                )
            )
        engine.dispose()
        deliver(port, "second")
        deadline = time.monotonic() + 20  # far below the 60 s the loop sleeps at most
        found: list = []
        while not found and time.monotonic() < deadline:
            time.sleep(0.2)
            found = rows(
                db_url, select(Escalation.ticket_id, Escalation.level, Escalation.fired_at)
            )
        assert [(f.ticket_id, f.level) for f in found] == [(1, 0)]
        assert found[0].fired_at >= instant  # not before its time
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_daemons_workers_and_cron_fire_each_level_once(tmp_path, pg_url) -> None:
    tickets = 1000
    cfg = daemon_config(tmp_path, pg_url, free_port())
    config = config_mod.load(cfg)
    pipeline = Pipeline(config)
    pipeline.ensure_queues()
    with db.transaction(pipeline.sessions) as s:
        for login in ("alice", "bob"):
            agents.add(s, login, f"{login}@agents.test", "", [])
            agents.grant(s, pipeline.queue_id("Hotline"), login, "rw")
    for first in range(0, tickets, 100):
        pipeline.deliver_batch([Item(mail(f"Case {i}"), [HOT]) for i in range(first, first + 100)])
    # Two hours old: the warning (recorded, unsent: its deadline passed), level 1 (to
    # alice and bob) and level 2 (to the manager) are all due at once.
    with db.transaction(pipeline.sessions) as s:
        conn = s.connection()
        conn.execute(text("UPDATE ticket SET created_at = created_at - interval '2 hours'"))
        for ticket_id in conn.execute(select(Ticket.id)).scalars().all():
            sla.recompute(conn, config, ticket_id)
    pipeline.engine.dispose()

    # All six start at once and race for the same due tickets: three crons, a daemon of
    # two workers (serve --workers 2, issue 21: one scheduler each) and a plain one.
    ports = [free_port(), free_port()]
    daemons = [
        serve(daemon_config(tmp_path, pg_url, ports[0], f"d{ports[0]}.toml"), "--workers", "2"),
        serve(daemon_config(tmp_path, pg_url, ports[1], f"d{ports[1]}.toml")),
    ]
    crons = [cli_process(cfg, "escalations", "check") for _ in range(3)]
    try:
        outputs = [c.communicate(timeout=120)[0].decode() for c in crons]
        assert all(c.returncode == 0 for c in crons), outputs
        deadline = time.monotonic() + 60
        now = dt.datetime.now(dt.UTC)
        due = select(func.count()).where(Ticket.escalation_at <= now)
        while rows(pg_url, due)[0][0] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert rows(pg_url, due)[0][0] == 0
    finally:
        for d in daemons:
            d.send_signal(signal.SIGTERM)
        for d in daemons:
            assert d.wait(30) == 0

    fired = rows(pg_url, select(Escalation.ticket_id, Escalation.level))
    assert len(fired) == tickets * 3 == len(set(fired))
    mails = rows(
        pg_url,
        select(Outbox.ticket_id, Outbox.rcpt_to, func.count())
        .where(Outbox.kind == "escalation")
        .group_by(Outbox.ticket_id, Outbox.rcpt_to),
    )
    assert len(mails) == tickets * 3  # alice and bob at level 1, the manager at level 2
    assert {m[2] for m in mails} == {1}  # each exactly once
    # What each process says it fired adds up to the rows: nobody counted a level
    # another had fired, so nobody sent its mails either.
    shares = [int(re.search(r"^(\d+) escalation", o).group(1)) for o in outputs]  # type: ignore[union-attr]
    for d in daemons:
        log = Path(d.log_path).read_text()  # type: ignore[attr-defined]
        shares.append(sum(int(n) for n in re.findall(r"scheduler: (\d+) escalation", log)))
    assert sum(shares) == tickets * 3
    print(f"levels fired by cron, cron, cron, daemon of 2 workers, daemon: {shares}")
