"""Escalations: a warning, then level after level, each exactly once per deadline."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Escalation, History, Ticket, utcnow
from otrs_mailgate.tickets import agents, refs, state, watchers

from agent_helpers import Desk, SigningDomain, scheduler
from helpers import mail, make_config

HOT = "hotline@example.com"
ALWAYS = {
    "name": "always",
    "hours": {d: ["00:00-24:00"] for d in "mon tue wed thu fri sat sun".split()},
}
SLAS = [
    {
        "name": "std",
        "queues": ["Hotline"],
        "calendar": "always",
        "first_response": 60,
        "update": 120,
        "solution": 600,
        "warn_to": ["owner"],
        "escalation": [
            {"to": ["queue"]},
            {"after": 30, "to": ["manager@boss.test", "bob"], "template": "escalation"},
        ],
    }
]
MIN = dt.timedelta(minutes=1)


def make_desk(db_url: str, signing: SigningDomain, **overrides: object) -> Desk:
    config = make_config(db_url, **{"calendar": [ALWAYS], "sla": SLAS, **overrides})
    return Desk(Pipeline(config), signing)


@pytest.fixture
def desk(db_url: str, signing: SigningDomain) -> Desk:
    return make_desk(db_url, signing)


def ticket(desk: Desk, number: str) -> Ticket:
    with desk.p.sessions() as s:
        return s.execute(select(Ticket).where(Ticket.number == number)).unique().scalar_one()


def fired(desk: Desk) -> list[tuple[str, int]]:
    with desk.p.sessions() as s:
        rows = s.execute(select(Escalation).order_by(Escalation.id)).scalars()
        return [(r.clock, r.level) for r in rows]


def new_ticket(desk: Desk) -> tuple[str, dt.datetime]:
    n = desk.p.deliver_one(mail("Printer", sender="Cus Tomer <cus@customer.test>"), HOT)
    return n.ticket_number, ticket(desk, n.ticket_number).created_at


def test_warning_then_levels_each_once(desk: Desk) -> None:
    number, created = new_ticket(desk)
    sched = scheduler(desk.p)
    t = ticket(desk, number)
    assert t.escalation_at == created + 48 * MIN  # 80% of the first response time
    before = len(desk.mails())
    assert sched.run_pass(created + 47 * MIN).escalated == 0
    assert len(desk.mails()) == before

    result = sched.run_pass(created + 48 * MIN)
    assert result.escalated == 1 and fired(desk) == [("first_response", 0)]
    warnings = desk.mails()[before:]
    # nobody owns the ticket: the warning goes to the queue's rw agents, not carol (ro)
    assert sorted(m["To"].addresses[0].username for m in warnings) == ["alice", "bob"]
    assert "escalates in 12 min" in warnings[0].get_content()
    assert "Escalates soon (first response): Printer" in str(warnings[0]["Subject"])
    assert result.next_at == created + 60 * MIN

    for _ in range(2):  # again at the same instant, and again: nothing new
        assert sched.run_pass(created + 48 * MIN).escalated == 0
    assert len(desk.mails()) == before + 2

    assert sched.run_pass(created + 60 * MIN).escalated == 1
    assert fired(desk)[-1] == ("first_response", 1)
    assert sched.run_pass(created + 90 * MIN).escalated == 1
    assert fired(desk)[-1] == ("first_response", 2)
    level2 = desk.mails()[-2:]
    assert sorted(str(m["To"]) for m in level2) == ["Bob <bob@agents.test>", "manager@boss.test"]
    manager = next(m for m in level2 if str(m["To"]) == "manager@boss.test")
    assert manager["Reply-To"] is None  # no token for an address that is not an agent's
    assert "Escalation 2 (first response)" in str(manager["Subject"])
    with desk.p.sessions() as s:
        types = list(
            s.execute(select(History.type).where(History.type.like("Escalation%"))).scalars()
        )
    assert types.count("Escalation") == 2 and types.count("EscalationWarning") == 1


def test_escalation_mail_says_what_and_its_reply_address_works(desk: Desk) -> None:
    number, created = new_ticket(desk)
    due = created + 60 * MIN
    scheduler(desk.p).run_pass(due + 35 * MIN)  # levels 1 and 2 at once: the daemon was down
    assert fired(desk) == [("first_response", 0), ("first_response", 1), ("first_response", 2)]
    with desk.p.sessions() as s:
        warning = s.execute(select(History).where(History.type == "EscalationWarning")).scalar_one()
    assert "deadline had passed" in warning.detail  # recorded, not sent: level 1 says more
    to_alice = [m for m in desk.to("alice@agents.test") if "Escalation 1" in str(m["Subject"])]
    assert len(to_alice) == 1
    body = to_alice[0].get_content()
    assert "first response time of ticket" in body and "by 35 min of working time" in body
    assert "Owner:    nobody" in body and "Cus Tomer <cus@customer.test>" in body
    assert "SLA:      std, first response within 1 h 00 min" in body
    reply_to = str(to_alice[0]["Reply-To"])
    assert reply_to.startswith("hotline+")
    _, result = desk.command("alice", number, "take note", "On it.", to=reply_to)
    assert not any("not processed" in n for n in result.notes)
    assert ticket(desk, number).owner_id is not None


def test_levels_rearm_when_the_deadline_moves(desk: Desk) -> None:
    number, _ = new_ticket(desk)
    sched = scheduler(desk.p)
    first_due = ticket(desk, number).update_due
    sched.run_pass(first_due + MIN)
    assert ("update", 1) in fired(desk)
    before = [f for f in fired(desk) if f[0] == "first_response"]
    desk.command("alice", number, "", "Please restart it.")  # answered: update clock stops
    t = ticket(desk, number)
    assert t.update_due is None and t.first_response_due is None
    desk.p.deliver_one(mail(f"Re: [Ticket#{number}] Printer", sender="cus@customer.test"), HOT)
    second_due = ticket(desk, number).update_due
    assert second_due is not None and second_due != first_due
    sched.run_pass(second_due + MIN)
    with desk.p.sessions() as s:
        rows = s.execute(
            select(Escalation.due, Escalation.level).where(Escalation.clock == "update")
        )
        levels = sorted((due == second_due, level) for due, level in rows)
    assert (True, 1) in levels and (False, 1) in levels  # level 1 once for each deadline
    assert [f for f in fired(desk) if f[0] == "first_response"] == before  # that clock stopped


def test_writing_again_does_not_push_the_update_deadline(desk: Desk) -> None:
    number, _ = new_ticket(desk)
    due = ticket(desk, number).update_due
    desk.p.deliver_one(mail(f"Re: [Ticket#{number}] Printer", sender="cus@customer.test"), HOT)
    assert ticket(desk, number).update_due == due


def test_owner_gets_the_warning_and_named_agents_must_exist(db_url, signing) -> None:
    slas = [dict(SLAS[0], escalation=[{"to": ["owner", "ghost", "carol"]}])]
    desk = make_desk(db_url, signing, sla=slas)
    number, created = new_ticket(desk)
    desk.command("bob", number, "take note", "")
    before = len(desk.mails())
    scheduler(desk.p).run_pass(created + 48 * MIN)
    assert [str(m["To"]) for m in desk.mails()[before:]] == ["Bob <bob@agents.test>"]
    with db.transaction(desk.p.sessions) as s:
        agents.set_enabled(s, "carol", False)
    scheduler(desk.p).run_pass(created + 60 * MIN)
    assert [str(m["To"]) for m in desk.mails()[before + 1 :]] == ["Bob <bob@agents.test>"]
    with desk.p.sessions() as s:
        missing = s.execute(select(History.detail).where(History.type == "EscalationNotSent"))
        text = " ".join(missing.scalars())
    assert "ghost" in text and "no such agent" in text and "agent disabled" in text


def test_nothing_due_means_no_write_and_next_instant(desk: Desk) -> None:
    sched = scheduler(desk.p)
    assert sched.run_pass().next_at is None
    _, created = new_ticket(desk)
    result = sched.run_pass(created)
    assert not result.busy and result.next_at == created + 48 * MIN


def test_a_failing_ticket_does_not_stop_the_others(desk: Desk, monkeypatch) -> None:
    from otrs_mailgate.jobs import escalations

    a, created = new_ticket(desk)
    b, _ = new_ticket(desk)
    real = escalations.visit
    bad = ticket(desk, a).id

    def visit(pipeline, session, ticket_id, now):
        if ticket_id == bad:
            raise RuntimeError("a bug")
        return real(pipeline, session, ticket_id, now)

    monkeypatch.setattr(escalations, "visit", visit)
    now = created + 50 * MIN
    result = scheduler(desk.p).run_pass(now)
    assert result.failed == 1 and result.escalated == 1
    assert ticket(desk, a).escalation_at == now + dt.timedelta(minutes=5)  # tried again later
    assert ticket(desk, b).escalation_at > now


def test_german_desk_gets_german_escalations(db_url, signing) -> None:
    desk = make_desk(db_url, signing, system={"language": "de"})
    _, created = new_ticket(desk)
    before = len(desk.mails())
    scheduler(desk.p).run_pass(created + 48 * MIN)
    scheduler(desk.p).run_pass(created + 61 * MIN)
    warning, _, level1, _ = desk.mails()[before:]
    assert "Eskaliert bald (Erstreaktion): Printer" in str(warning["Subject"])
    assert "eskaliert in 12 min Arbeitszeit" in warning.get_content()
    assert "Eskalation 1 (Erstreaktion)" in str(level1["Subject"])
    body = level1.get_content()
    assert "Eskalationsstufe 1" in body and "um 1 min Arbeitszeit" in body
    assert "Besitzer: niemand" in body


def test_the_warning_to_the_owner_reaches_the_watchers_too(desk: Desk) -> None:
    """Issue 30: watchers get what the owner gets; carol watches with a read grant."""
    number, created = new_ticket(desk)
    with db.transaction(desk.p.sessions) as s:
        t = refs.load(s.connection(), refs.id_of(s.connection(), number) or 0)
        alice = agents.by_login(s.connection(), "alice")
        carol = agents.by_login(s.connection(), "carol")
        assert alice is not None and carol is not None
        state.lock(s, t, alice.id, "alice", utcnow() + dt.timedelta(days=1), actor="test")
        watchers.watch(s, t.id, carol, actor="test")
    before = len(desk.mails())
    assert scheduler(desk.p).run_pass(created + 48 * MIN).escalated == 1
    told = sorted(m["To"].addresses[0].username for m in desk.mails()[before:])
    assert told == ["alice", "carol"]  # the owner and the watcher, not bob
