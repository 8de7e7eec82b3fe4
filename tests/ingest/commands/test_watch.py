"""watch / unwatch (issue 30): watchers hear what the owner hears while they hold a grant."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Article, History, Ticket, TicketWatcher, utcnow
from otrs_mailgate.tickets import agents, watchers

from agent_helpers import Desk, SigningDomain, scheduler
from helpers import mail

HOT = "hotline@example.com"
CUSTOMER = "cus@customer.test"
ALICE, BOB, CAROL = (f"{n}@agents.test" for n in ("alice", "bob", "carol"))


@pytest.fixture
def desk(pipeline: Pipeline, signing: SigningDomain) -> Desk:
    return Desk(pipeline, signing)


def new_ticket(desk: Desk, subject: str = "Printer on fire") -> str:
    raw = mail(subject, "It burns.", sender=f"Cus Tomer <{CUSTOMER}>")
    return desk.p.deliver_one(raw, HOT).ticket_number


def follow_up(desk: Desk, number: str) -> None:
    desk.p.deliver_one(
        mail(f"Re: [Ticket#{number}] Printer", "Still burning.", sender=CUSTOMER), HOT
    )


def about(desk: Desk, address: str, number: str, template_word: str = "") -> list:
    return [
        m
        for m in desk.to(address)
        if number in str(m["Subject"]) and template_word in m.get_body(("plain",)).get_content()
    ]


def watcher_logins(desk: Desk, number: str) -> list[str]:
    with desk.p.sessions() as s:
        tid = s.execute(select(Ticket.id).where(Ticket.number == number)).scalar_one()
        return [a.login for a in watchers.of(s.connection(), tid)]


def test_a_watcher_gets_follow_ups_the_owner_gets_and_unwatch_stops_it(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "take note", "")  # alice owns it: follow-ups go to her alone
    follow_up(desk, n)
    assert len(about(desk, BOB, n, "Still burning.")) == 0
    desk.command("bob", n, "watch", "")
    assert watcher_logins(desk, n) == ["bob"]
    transcript = desk.to(BOB)[-1].get_content()
    assert "> watch\n  you watch the ticket" in transcript
    follow_up(desk, n)
    assert len(about(desk, ALICE, n, "Still burning.")) == 2
    assert len(about(desk, BOB, n, "Still burning.")) == 1  # the watcher too, once
    desk.command("bob", n, "unwatch", "")
    assert watcher_logins(desk, n) == []
    follow_up(desk, n)
    assert len(about(desk, BOB, n, "Still burning.")) == 1
    with desk.p.sessions() as s:
        kinds = s.execute(select(History.type).where(History.type.like("Watcher%"))).scalars()
        assert list(kinds) == ["WatcherAdded", "WatcherRemoved"]


def test_watch_passes_another_agents_lock_and_keeps_the_text_internal(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "take note", "")
    desk.command("bob", n, "watch", "I will keep an eye on it.")
    assert watcher_logins(desk, n) == ["bob"]
    # no answer to the customer past alice's lock: only the acknowledgement went out
    assert [m for m in desk.to(CUSTOMER) if "keep an eye" in m.get_content()] == []
    # any other command still meets the lock
    desk.command("bob", n, "close", "")
    assert "locked by" in desk.to(BOB)[-1].get_content()
    with desk.p.sessions() as s:
        assert s.execute(select(Ticket.state).where(Ticket.number == n)).scalar() == "new"


def test_owner_and_watchers_hear_what_another_agent_changed(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "take note", "")
    desk.command("bob", n, "watch", "")
    desk.command("alice", n, "unlock note", "")
    desk.command("bob", n, "priority=high close", "Done.")
    [told] = [m for m in desk.to(ALICE) if "changed ticket" in m.get_content()]
    text = told.get_content()
    assert f"changed ticket {n}" in text and "priority=high: priority 4 (high)" in text
    assert "close: closed" in text and "as the ticket's former owner" in text
    assert told["Reply-To"] is not None  # the owner can answer it with commands
    # bob did it: bob is not told of his own change
    assert [m for m in desk.to(BOB) if "changed ticket" in m.get_content()] == []


def test_a_watcher_without_a_grant_hears_nothing_until_it_has_one_again(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "take note", "")
    desk.command("bob", n, "watch", "")
    hot = desk.p.queue_id("Hotline")
    with db.transaction(desk.p.sessions) as s:
        agents.grant(s, hot, "bob", "none")
    follow_up(desk, n)
    assert len(about(desk, BOB, n, "Still burning.")) == 0
    with desk.p.sessions() as s:
        refused = s.execute(select(History.detail).where(History.type == "AgentNotNotified"))
        assert any("bob" in d for d in refused.scalars())
    with db.transaction(desk.p.sessions) as s:
        agents.grant(s, hot, "bob", "ro")  # read access is enough to follow
    follow_up(desk, n)
    assert len(about(desk, BOB, n, "Still burning.")) == 1


def test_merged_and_split_tickets_keep_their_watchers(desk: Desk) -> None:
    a, b = new_ticket(desk, "A"), new_ticket(desk, "B")
    desk.command("bob", a, "watch note", "")
    desk.command("alice", a, f"merge={b} note", "")
    assert watcher_logins(desk, b) == ["bob"]  # OTRS: the watchers follow the merge
    c = new_ticket(desk, "C")
    desk.command("bob", c, "watch note", "")
    with desk.p.sessions() as s:
        tid = s.execute(select(Ticket.id).where(Ticket.number == c)).scalar_one()
        article = s.execute(select(Article.id).where(Article.ticket_id == tid)).scalars().first()
    desk.command("alice", c, f"split={article} note", "")
    with desk.p.sessions() as s:
        new = s.execute(select(Ticket.number).order_by(Ticket.id.desc())).scalars().first()
    assert new != c and watcher_logins(desk, new) == ["bob"]


def test_watchers_get_the_pending_reminder(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "take pending=1m note", "")
    desk.command("bob", n, "watch", "")
    later = utcnow() + dt.timedelta(minutes=5)
    assert scheduler(desk.p).run_pass(later).reminded == 1
    assert [m for m in desk.to(BOB) if "Pending time up" in str(m["Subject"])]
    assert [m for m in desk.to(ALICE) if "Pending time up" in str(m["Subject"])]


def test_ticket_watch_on_the_command_line_for_a_read_only_agent(desk: Desk, tmp_path) -> None:
    from cli_helpers import cli, write_config

    n = new_ticket(desk)
    cfg = write_config(tmp_path / "c.toml", str(desk.p.config.database.url))
    ok = cli(cfg, "ticket", "watch", n, "carol")
    assert ok.returncode == 0, ok.stderr
    assert b"carol watches ticket" in ok.stdout
    shown = cli(cfg, "ticket", "show", n)
    assert b"watched by carol" in shown.stdout
    follow_up(desk, n)
    assert len(about(desk, CAROL, n, "Still burning.")) == 1  # ro agents may be told
    # nobody without a grant, no unknown agent: refused, nothing written
    with db.transaction(desk.p.sessions) as s:
        agents.add(s, "dave", "dave@agents.test", "Dave", [])
    bad = cli(cfg, "ticket", "watch", n, "dave")
    assert bad.returncode == 1 and b"no grant on the ticket's queue" in bad.stderr
    assert cli(cfg, "ticket", "watch", n, "nobody").returncode == 1
    assert cli(cfg, "ticket", "unwatch", n, "carol").returncode == 0
    with desk.p.sessions() as s:
        assert s.execute(select(TicketWatcher)).first() is None
