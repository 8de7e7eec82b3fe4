"""SLA clocks: due instants per ticket, moved by what customers and agents do."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from otrs_mailgate.config.schema import ConfigError, load
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store.models import Ticket
from otrs_mailgate.tickets import sla

from agent_helpers import Desk, SigningDomain
from helpers import mail, make_config

HOT = "hotline@example.com"
SLAS = [
    {
        "name": "vip",
        "queues": ["Hotline"],
        "priorities": [5],
        "first_response": 15,
        "solution": 120,
    },
    {"name": "std", "queues": ["Hotline"], "first_response": 60, "update": 120, "solution": 600},
]


@pytest.fixture
def desk(db_url: str, signing: SigningDomain) -> Desk:
    return Desk(Pipeline(make_config(db_url, sla=SLAS)), signing)


def row(desk: Desk, number: str) -> Ticket:
    with desk.p.sessions() as s:
        return s.execute(select(Ticket).where(Ticket.number == number)).unique().scalar_one()


def due(desk: Desk, number: str) -> tuple:
    t = row(desk, number)
    return t.first_response_due, t.update_due, t.solution_due


def test_clocks_start_with_the_ticket(desk: Desk) -> None:
    n = desk.p.deliver_one(mail("Printer", sender="cus@customer.test"), HOT).ticket_number
    t = row(desk, n)
    cal = sla.calendar(desk.p.config, "default")
    assert t.first_response_due == cal.add(t.created_at, 60)
    assert t.solution_due == cal.add(t.created_at, 600)
    assert t.update_due is not None and t.update_due >= cal.add(t.created_at, 120)


def test_a_note_does_not_stop_the_first_response_clock_an_answer_does(desk: Desk) -> None:
    n = desk.p.deliver_one(mail("Printer", sender="cus@customer.test"), HOT).ticket_number
    first = due(desk, n)
    desk.command("alice", n, "note", "Looking into it.")
    assert due(desk, n)[0] == first[0]
    desk.command("alice", n, "", "Please restart it.")
    t = row(desk, n)
    assert t.first_response_at is not None and t.first_response_due is None
    assert t.update_due is None  # answered: nothing to update until the customer writes
    assert t.solution_due == first[2]
    desk.p.deliver_one(mail(f"Re: [Ticket#{n}] Printer", sender="cus@customer.test"), HOT)
    assert row(desk, n).update_due is not None  # the customer wrote again: clock runs


def test_pending_stops_the_update_clock_close_stops_all_reopen_rearms(desk: Desk) -> None:
    n = desk.p.deliver_one(mail("Printer", sender="cus@customer.test"), HOT).ticket_number
    desk.command("alice", n, "pending=2d note", "")
    fr, upd, sol = due(desk, n)
    assert upd is None and fr is not None and sol is not None
    desk.command("alice", n, "close note", "")
    assert due(desk, n) == (None, None, None)
    desk.command("alice", n, "reopen note", "")
    assert due(desk, n)[2] == sol  # the solution clock counts from creation again


def test_priority_picks_another_sla(desk: Desk) -> None:
    n = desk.p.deliver_one(mail("Printer", sender="cus@customer.test"), HOT).ticket_number
    desk.command("alice", n, "priority=very-high note", "")
    t = row(desk, n)
    cal = sla.calendar(desk.p.config, "default")
    assert t.first_response_due == cal.add(t.created_at, 15)
    assert t.solution_due == cal.add(t.created_at, 120) and t.update_due is None  # vip has none


def test_no_sla_no_clocks(db_url: str) -> None:
    p = Pipeline(make_config(db_url))
    n = p.deliver_one(mail("x"), HOT).ticket_number
    with p.sessions() as s:
        t = s.execute(select(Ticket).where(Ticket.number == n)).unique().scalar_one()
    assert (t.first_response_due, t.update_due, t.solution_due) == (None, None, None)


def test_sla_config_errors(tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[[queue]]\nname = "Q"\naddresses = ["q@x.test"]\n[[sla]]\nname = "s"\nqueues = ["Nope"]\n'
    )
    with pytest.raises(ConfigError, match="sla\\[0\\] \\(s\\): no queue named 'Nope'"):
        load(cfg)
    queue = '[[queue]]\nname = "Q"\naddresses = ["q@x.test"]\n'
    cfg.write_text(queue + '[[sla]]\nname = "s"\nqueues = ["Q"]\ncalendar = "x"\n')
    with pytest.raises(ConfigError, match="no calendar named 'x'"):
        load(cfg)
    assert dt  # keep the import for readers of the due arithmetic above


def test_escalation_config_errors(tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    head = '[[queue]]\nname = "Q"\naddresses = ["q@x.test"]\n[[sla]]\nname = "s"\nqueues = ["Q"]\n'
    cfg.write_text(head + '[[sla.escalation]]\nto = ["Bad Name"]\n')
    with pytest.raises(ConfigError, match=r"sla\[0\]\.escalation\[0\]\.to: .*use queue, owner"):
        load(cfg)
    cfg.write_text(head + "notify_before = 100\n")
    with pytest.raises(ConfigError, match=r"sla\[0\]\.notify_before"):
        load(cfg)
    cfg.write_text(head + '[[sla.escalation]]\ntemplate = "nosuch"\n')
    with pytest.raises(ConfigError, match=r"escalation\[0\]\.template: no template mail/en/nosuch"):
        load(cfg)
    cfg.write_text(head + "escalation = []\n")
    with pytest.raises(ConfigError, match=r"sla\[0\]\.escalation"):
        load(cfg)


def test_a_new_tickets_clocks_are_what_recompute_finds(db_url: str) -> None:
    """Issue 31: a new ticket's clocks are set from what the pipeline knows, without
    reading; recompute from the rows must find the very same instants."""
    from otrs_mailgate.config.schema import load as load_config
    from otrs_mailgate.store import db

    from cli_helpers import ROOT

    example = load_config(ROOT / "otrs-mailgate.toml.example")
    config = make_config(
        db_url,
        calendar=[c.model_dump() for c in example.calendar],
        sla=[s.model_dump() for s in example.sla]
        + [{"name": "any", "queues": ["Hotline"], "calendar": "office", "update": 30}],
    )
    p = Pipeline(config)
    numbers = [
        p.deliver_one(mail(f"Printer {i}", sender=f"c{i}@customer.test"), HOT).ticket_number
        for i in range(3)
    ]
    columns = ("first_response_due", "update_due", "solution_due", "escalation_at")
    for number in numbers:
        before = row_of(p, number, columns)
        assert before[0] is not None and before[3] is not None
        with db.transaction(p.sessions) as s:
            tid = s.execute(select(Ticket.id).where(Ticket.number == number)).scalar_one()
            sla.recompute(s.connection(), config, tid)
        assert row_of(p, number, columns) == before
    p.engine.dispose()


def row_of(p: Pipeline, number: str, columns: tuple[str, ...]) -> tuple:
    with p.sessions() as s:
        t = s.execute(select(Ticket).where(Ticket.number == number)).unique().scalar_one()
        return tuple(getattr(t, c) for c in columns)
