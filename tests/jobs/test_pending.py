"""Pending times and locks run out through the scheduler, as the queue's policy says."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store.models import History, Ticket

from agent_helpers import Desk, SigningDomain, scheduler
from helpers import mail, make_config

HOT = "hotline@example.com"
CUSTOMER = "Cus Tomer <cus@customer.test>"


def make_desk(db_url: str, signing: SigningDomain, policy: str) -> Desk:
    config = make_config(
        db_url,
        queue=[{"name": "Hotline", "addresses": [HOT], "pending": policy}],
    )
    return Desk(Pipeline(config), signing)


def ticket(desk: Desk, number: str) -> Ticket:
    with desk.p.sessions() as s:
        return s.execute(select(Ticket).where(Ticket.number == number)).unique().scalar_one()


def pending_ticket(desk: Desk) -> tuple[str, dt.datetime]:
    number = desk.p.deliver_one(mail("Printer", sender=CUSTOMER), HOT).ticket_number
    desk.command("alice", number, "pending=2d", "Please try it and tell us.")
    t = ticket(desk, number)
    assert t.state == "pending" and t.pending_until is not None
    return number, t.pending_until


def test_remind_opens_the_ticket_and_tells_the_owner(db_url, signing) -> None:
    desk = make_desk(db_url, signing, "remind")
    number, until = pending_ticket(desk)
    sched = scheduler(desk.p)
    assert sched.run_pass(until - dt.timedelta(minutes=1)).reminded == 0
    before = len(desk.mails())
    result = sched.run_pass(until)
    assert result.reminded == 1 and result.closed == 0
    t = ticket(desk, number)
    assert t.state == "open" and t.pending_until is None
    new = desk.mails()[before:]
    assert [str(m["To"]) for m in new] == ["Alice <alice@agents.test>"]  # the owner only
    assert "Pending time up: Printer" in str(new[0]["Subject"])
    assert "the ticket is open again" in new[0].get_content()
    assert str(new[0]["Reply-To"]).startswith("hotline+")
    assert sched.run_pass(until + dt.timedelta(days=1)).reminded == 0  # once


def test_auto_close_closes_and_tells_the_customer(db_url, signing) -> None:
    desk = make_desk(db_url, signing, "close")
    number, until = pending_ticket(desk)
    before = len(desk.mails())
    assert scheduler(desk.p).run_pass(until + dt.timedelta(hours=1)).closed == 1
    t = ticket(desk, number)
    assert t.state == "closed" and t.closed_at is not None and t.pending_until is None
    (notice,) = desk.mails()[before:]
    assert str(notice["To"]) == CUSTOMER
    body = notice.get_content()
    assert "we have closed it now" in body and "Please try it and tell us." in body
    assert notice["Reply-To"] is None  # the customer never gets an agent's token
    with desk.p.sessions() as s:
        reasons = s.execute(select(History.detail).where(History.type == "StateUpdate"))
        assert any("auto close" in d for d in reasons.scalars())


def test_the_customer_answering_opens_the_ticket_and_voids_the_reminder(db_url, signing) -> None:
    desk = make_desk(db_url, signing, "close")
    number, until = pending_ticket(desk)
    desk.p.deliver_one(mail(f"Re: [Ticket#{number}] Printer", sender=CUSTOMER), HOT)
    t = ticket(desk, number)
    assert t.state == "open" and t.pending_until is None
    assert scheduler(desk.p).run_pass(until + dt.timedelta(hours=1)).closed == 0
    assert ticket(desk, number).state == "open"


def test_an_auto_reply_leaves_the_ticket_pending(db_url, signing) -> None:
    desk = make_desk(db_url, signing, "remind")
    number, _ = pending_ticket(desk)
    raw = mail(
        f"Re: [Ticket#{number}] Printer",
        sender=CUSTOMER,
        headers={"Auto-Submitted": "auto-replied"},
    )
    desk.p.deliver_one(raw, HOT)
    assert ticket(desk, number).state == "pending"


def test_locks_time_out_through_the_scheduler(db_url, signing) -> None:
    desk = make_desk(db_url, signing, "remind")
    number = desk.p.deliver_one(mail("Printer", sender=CUSTOMER), HOT).ticket_number
    desk.command("alice", number, "take note", "")
    until = ticket(desk, number).lock_until
    assert until is not None
    sched = scheduler(desk.p)
    assert sched.next_due() == until
    assert sched.run_pass(until - dt.timedelta(seconds=1)).unlocked == 0
    assert sched.run_pass(until).unlocked == 1
    t = ticket(desk, number)
    assert t.lock_until is None and t.owner_id is not None  # still hers, no longer locked
