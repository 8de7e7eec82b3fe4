"""Scale-out: two `serve` processes on one PostgreSQL behind one Postfix, against one.

    python bench/scaleout.py [--mails 5000] [--db PG-ADMIN-URL] [--daemons 1,2]

Per run (a fresh database and a fresh Postfix instance each; needs root, Postfix,
smtp-source and PostgreSQL):
  1. Postfix gets `postfix-config --lmtp` for every daemon: a randmap spreads each
     delivery over them.  One agent (alice) has the queue; the service level gives
     each ticket a first response of --first-response minutes, escalation level 1 to
     the queue at the deadline, level 2 one minute later to a lead.
  2. Half the mails come from as many customers: new tickets.
  3. Each customer replies to the acknowledgement that came back through Postfix into
     the customers' Maildir: half name the ticket in the subject, half only answer
     (In-Reply-To, no tag).
  Every mail is its own `smtp-source -F FILE` run through Postfix, 10 at a time (one
  sender for all would defeat the randmap: Postfix's resolver client caches the
  transport of the last sender and recipient).
  4. The run with the most daemons then waits until every level is due and fired.
Checks: ticket numbers unique; every reply on the ticket its acknowledgement named;
every acknowledgement, notification and escalation mail sent once and delivered once
(Message-IDs in the Maildirs against the outbox); every level fired once.
Reported: mails stored per second (the two sending phases), and each daemon's share.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.utils import format_datetime
from pathlib import Path

# The tests' private Postfix instance, so a bench run and a test run set Postfix up alike.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from ingest import scratch_databases
from lab import MachineLoad, cli, cpu_seconds, free_port, serve
from sqlalchemy import create_engine, func, select

from otrs_mailgate.config.schema import load
from otrs_mailgate.store.models import Article, Escalation, Outbox, Ticket

from helpers import ALWAYS_TOML
from postfix_helpers import Instance, instance, require_postfix, wait_for

HOT = "hotline@example.com"
CUSTOMERS = "@customer.test"  # one Maildir for all of them: Instance.maildir("customer.test")
MAILBOXES = [CUSTOMERS, "alice@agents.test", "lead@agents.test"]
SESSIONS = 10


def config_text(url: str, smtp_port: int, first_response: int) -> str:
    return f"""
[system]
domain = "mailgate.test"
[database]
url = "{url}"
[lmtp]
port = 8024  # each daemon gets its own by OTRS_MAILGATE_LMTP_PORT
[milter]
enabled = false
[smtp]
port = {smtp_port}
[[queue]]
name = "Hotline"
addresses = ["{HOT}"]
{ALWAYS_TOML}
[[sla]]
name = "bench"
queues = ["Hotline"]
calendar = "always"
first_response = {first_response}
notify_before = 0
[[sla.escalation]]
to = ["queue"]
[[sla.escalation]]
after = 1
to = ["lead@agents.test"]
"""


def scalar(url: str, stmt: object):  # type: ignore[no-untyped-def]
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(stmt).scalar_one()  # type: ignore[call-overload]
    finally:
        engine.dispose()


def count(url: str, stmt: object) -> int:
    return int(scalar(url, stmt))


def rows(url: str, stmt: object) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(stmt))  # type: ignore[call-overload]
    finally:
        engine.dispose()


def articles(url: str) -> int:
    return count(url, select(func.count()).select_from(Article))


def wait_stored(url: str, total: int, what: str) -> float:
    wait_for(lambda: articles(url) >= total, 1800, what)
    return time.perf_counter()


def maildir(pf: Instance, mailbox: str) -> list:
    user, domain = mailbox.split("@")
    files = sorted(pf.maildir(user or domain).glob("*"))
    return [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]


def customer(i: int) -> str:
    return f"customer{i}@customer.test"


def new_mails(tmp: Path, half: int) -> list[Path]:
    """One mail from each of `half` customers, each about something else."""
    body = "The printer on floor 3 prints every page twice and then jams.\n" * 16
    date = format_datetime(dt.datetime.now(dt.UTC))
    out = []
    for i in range(half):
        path = tmp / f"new-{i}.eml"
        path.write_text(
            f"From: Customer {i} <{customer(i)}>\nTo: {HOT}\nSubject: Printer {i} is broken\n"
            f"Message-ID: <new-{i}@customer.test>\nDate: {date}\n\n{body}"
        )
        out.append(path)
    return out


def replies(tmp: Path, acks: list) -> list[tuple[Path, str, str]]:
    """Each customer answers its acknowledgement: (file, Message-ID, the ticket number).
    Half keep the ticket tag in the subject; half only answer (In-Reply-To)."""
    out = []
    for ack in acks:
        number = re.search(r"\[Ticket#(\d+)\]", str(ack["Subject"])).group(1)  # type: ignore[union-attr]
        i = int(str(ack["In-Reply-To"]).strip("<>").split("-")[1].split("@")[0])
        mid = f"reply-{i}@customer.test"
        subject = f"Re: {ack['Subject']}" if i % 2 == 0 else f"Re: Printer {i}"
        path = tmp / f"reply-{i}.eml"
        path.write_text(
            f"From: Customer {i} <{customer(i)}>\nTo: {HOT}\nSubject: {subject}\n"
            f"Message-ID: <{mid}>\nIn-Reply-To: {ack['Message-ID']}\n"
            f"References: {ack['In-Reply-To']} {ack['Message-ID']}\n"
            f"Date: {ack['Date']}\n\nThanks, here is more about it.\n"
        )
        out.append((path, mid, number))
    return out


def run(url: str, tmp: Path, daemons: int, mails: int, first_response: int, escalate: bool) -> Run:
    """One run with `daemons` serve processes."""
    half = mails // 2
    cfg = tmp / "otrs-mailgate.toml"
    cfg.write_text(config_text(url, 25, first_response))
    ports = [free_port() for _ in range(daemons)]
    with instance(load(cfg), MAILBOXES, lmtp=[f"inet:127.0.0.1:{p}" for p in ports]) as pf:
        cfg.write_text(config_text(url, pf.port, first_response))
        cli(cfg, "init")
        cli(cfg, "agent", "add", "alice", "alice@agents.test", "--name", "Alice")
        cli(cfg, "queue", "grant", "Hotline", "alice", "rw")
        logs = [tmp / f"serve-{p}.log" for p in ports]
        procs = [
            serve(cfg, p, log, {"OTRS_MAILGATE_LMTP_PORT": str(p),
                                "OTRS_MAILGATE_WEB_PORT": str(free_port())})
            for p, log in zip(ports, logs, strict=True)
        ]  # fmt: skip
        try:
            first = new_mails(tmp, half)
            cores = MachineLoad()
            cores.start()
            t0 = time.perf_counter()
            pf.send_files(first, HOT, SESSIONS)
            t1 = wait_stored(url, half, "the new tickets")
            print(
                f"  {daemons} daemon(s): {half} new tickets stored in {t1 - t0:.1f} s", flush=True
            )
            box = pf.maildir("customer.test")
            wait_for(lambda: len(list(box.glob("*"))) >= half, 600, "the acknowledgements")
            acks = maildir(pf, CUSTOMERS)
            answers = replies(tmp, acks)
            t2 = time.perf_counter()
            pf.send_files([a[0] for a in answers], HOT, SESSIONS)
            t3 = wait_stored(url, 2 * half, "the replies")
            print(f"  {daemons} daemon(s): {half} replies stored in {t3 - t2:.1f} s", flush=True)
            rate = 2 * half / ((t1 - t0) + (t3 - t2))
            busy = cores.busy()
            cpu = sum(cpu_seconds(p.pid) for p in procs)
            if escalate:
                last = scalar(url, select(func.max(Ticket.created_at)))
                wait_all_fired(url, pf, last, first_response)
            pf.wait_queue_empty(600)
            wait_for(lambda: queued(url) == 0, 600, "the outbox")
            pf.wait_queue_empty(600)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(60)
        shares = [log.read_text().count(" status=250 ") for log in logs]
        verify(url, pf, acks, answers, half, escalate)
    return Run(rate, shares, cpu * 1000 / (2 * half), busy)


@dataclass
class Run:
    rate: float  # mails stored per second while they were sent
    shares: list[int]  # deliveries each daemon answered 250
    cpu_ms: float  # the daemons' CPU time per mail, all of them together
    busy: float  # share of all cores in use while the mails were sent


def queued(url: str) -> int:
    return count(url, select(func.count()).where(Outbox.status != "sent"))


def wait_all_fired(url: str, pf: Instance, last: dt.datetime, first_response: int) -> None:
    """Until level 2 of the newest ticket is due, then until nothing is due any more."""
    due = last + dt.timedelta(minutes=first_response + 1, seconds=5)
    pause = (due - dt.datetime.now(dt.UTC)).total_seconds()
    print(f"  waiting {max(pause, 0):.0f} s for the last escalation level to be due", flush=True)
    time.sleep(max(pause, 0))
    now = dt.datetime.now(dt.UTC)
    wait_for(
        lambda: count(url, select(func.count()).where(Ticket.escalation_at <= now)) == 0,
        600,
        "the schedulers",
    )


def verify(url: str, pf: Instance, acks: list, answers: list, half: int, escalate: bool) -> None:  # type: ignore[type-arg]
    tickets = rows(url, select(Ticket.id, Ticket.number))
    number_of = {tid: number for tid, number in tickets}
    assert len(tickets) == half == len(set(number_of.values())), "ticket numbers not unique"
    stored = rows(url, select(Article.message_id, Article.ticket_id))
    ticket_of = dict((mid, number_of[tid]) for mid, tid in stored)
    assert len(stored) == 2 * half == len(ticket_of), "an article stored twice"
    for ack in acks:  # the acknowledged mail is on the ticket the acknowledgement names
        number = re.search(r"\[Ticket#(\d+)\]", str(ack["Subject"])).group(1)  # type: ignore[union-attr]
        assert ticket_of[str(ack["In-Reply-To"]).strip("<>")] == number
    wrong = [mid for _, mid, number in answers if ticket_of[mid] != number]
    assert not wrong, f"{len(wrong)} replies on the wrong ticket, e.g. {wrong[:3]}"
    acked = Counter(str(a["In-Reply-To"]) for a in acks)
    assert len(acks) == half and set(acked.values()) == {1}, "an acknowledgement twice"
    sent = rows(url, select(Outbox.message_id, Outbox.kind, Outbox.rcpt_to, Outbox.status))
    assert {r.status for r in sent} == {"sent"}, Counter(r.status for r in sent)
    delivered = Counter(
        str(m["Message-ID"]).strip("<>") for box in MAILBOXES for m in maildir(pf, box)
    )
    assert set(delivered.values()) == {1}, "a mail delivered twice"
    assert set(delivered) == {r.message_id.strip("<>") for r in sent}, "sent but not delivered"
    kinds = Counter(r.kind for r in sent)
    print(f"  outgoing mail, each sent and delivered once: {dict(kinds)}")
    if escalate:
        fired = rows(url, select(Escalation.ticket_id, Escalation.level))
        assert len(fired) == 2 * half == len(set(fired)), "an escalation level twice or never"
        to_lead = [r for r in sent if r.kind == "escalation" and r.rcpt_to == "lead@agents.test"]
        assert kinds["escalation"] == 2 * half and len(to_lead) == half
        print(f"  escalation levels fired once each: {len(fired)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mails", type=int, default=5000)
    ap.add_argument("--db", default="postgresql:///postgres?host=/var/run/postgresql")
    ap.add_argument("--daemons", default="1,2")
    ap.add_argument("--first-response", type=int, default=4, help="minutes")
    args = ap.parse_args()
    counts = [int(n) for n in args.daemons.split(",")]
    require_postfix()
    results = {}
    for n in counts:
        with (
            tempfile.TemporaryDirectory(dir=".", prefix=".bench-") as tmp,
            scratch_databases(args.db, tmp) as (url, _),
        ):
            Path(tmp).chmod(0o755)
            escalate = n == max(counts)
            results[n] = run(url, Path(tmp), n, args.mails, args.first_response, escalate)
    print(f"scale-out benchmark: {args.mails} mails through Postfix, half replies, PostgreSQL")
    print(
        f"  on {os.cpu_count()} cores; CPU time of the daemons (up to the end of sending) per mail"
    )
    for n, r in results.items():
        print(
            f"  {n} daemon(s): {r.rate:7.1f} mails/s ({r.rate / results[counts[0]].rate:.2f}x), "
            f"daemon CPU {r.cpu_ms:.1f} ms/mail, cores busy {r.busy:.0%}, "
            f"deliveries per daemon {r.shares}"
        )


if __name__ == "__main__":
    main()
