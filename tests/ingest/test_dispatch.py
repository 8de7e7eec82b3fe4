"""OTRS's raw queue and dispatch (issue 20): mail no queue and no filter claims lands in
the catch-all queue; `ticket move` (and `queue=` by mail) dispatches it, telling the new
queue's agents and, where the queue says so, the customer."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from otrs_mailgate.admin import postfix
from otrs_mailgate.config.schema import ConfigError, load
from otrs_mailgate.ingest.outcome import Failed, Outcome
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import History, Ticket
from otrs_mailgate.tickets import agents

from cli_helpers import cli, cli_json, write_config
from helpers import count, mail, outbox_mails
from lmtp_helpers import RawLMTP, running

RAW = """
[[queue]]
name = "Raw"
addresses = ["dispatch@example.com"]

[[filter]]
name = "invoices"
match = { Subject = "(?i)invoice" }
queue = "Support-DE"
"""


def raw_config(tmp_path: Path, db_url: str, catch_all: bool = True) -> Path:
    cfg = write_config(tmp_path / "otrs-mailgate.toml", db_url, RAW)
    if catch_all:
        text = cfg.read_text().replace(
            'domain = "mailgate.test"', 'domain = "mailgate.test"\ncatch_all = "Raw"'
        )
        cfg.write_text(text)
    return cfg


def queue_of(p: Pipeline, number: str) -> str:
    with p.sessions() as s:
        return (
            s.execute(select(Ticket).where(Ticket.number == number))
            .unique()
            .scalar_one()
            .queue.name
        )


def test_unclaimed_addresses_land_in_the_raw_queue(tmp_path: Path, db_url: str) -> None:
    p = Pipeline(load(raw_config(tmp_path, db_url)))
    r = p.deliver_one(mail("Old address", sender="cus@customer.test"), "sales-2019@example.com")
    assert r.new_ticket and queue_of(p, r.ticket_number) == "Raw"
    claimed = p.deliver_one(mail("Invoice 42", sender="cus@customer.test"), "billing@example.com")
    assert queue_of(p, claimed.ticket_number) == "Support-DE"  # a filter claims it first
    own = p.deliver_one(mail("Printer", sender="cus@customer.test"), "hotline@example.com")
    assert queue_of(p, own.ticket_number) == "Hotline"
    before = count(p, Ticket)
    foreign = p.deliver(mail("Elsewhere"), "someone@elsewhere.test")
    assert isinstance(foreign, Failed) and foreign.outcome is Outcome.UNKNOWN_RECIPIENT
    assert count(p, Ticket) == before  # refused, nothing stored
    p.engine.dispose()


def test_without_a_catch_all_other_addresses_are_refused(tmp_path: Path, db_url: str) -> None:
    cfg = raw_config(tmp_path, db_url, catch_all=False)
    p = Pipeline(load(cfg))
    refused = p.deliver(mail("Old address"), "sales-2019@example.com")
    assert isinstance(refused, Failed) and refused.outcome is Outcome.UNKNOWN_RECIPIENT
    assert count(p, Ticket) == 0
    assert "\n@example.com\tOK" not in postfix.recipients(load(cfg))
    p.engine.dispose()


def test_lmtp_and_postfix_maps_follow_the_same_rule(tmp_path: Path, db_url: str) -> None:
    config = load(raw_config(tmp_path, db_url))
    assert "\n@example.com\tOK" in postfix.recipients(config)
    assert "\nexample.com\tlmtp:" in postfix.transport(config)
    with running(config) as d:
        c = RawLMTP(d.config.lmtp.port)
        c.cmd("LHLO client.test")
        rcpt, data = c.send("a@b.test", ["old@example.com", "x@elsewhere.test"], mail("Hi"))
        c.close()
    assert rcpt[0].startswith("250") and rcpt[1].startswith("550 5.1.1")
    assert data[0].startswith("250")


def test_catch_all_must_name_a_queue(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path / "c.toml", db_url)
    cfg.write_text(
        cfg.read_text().replace(
            'domain = "mailgate.test"', 'domain = "mailgate.test"\ncatch_all = "Nope"'
        )
    )
    with pytest.raises(ConfigError, match=r"system\.catch_all: no queue named 'Nope'"):
        load(cfg)


def test_ticket_move_dispatches_with_history_notices_and_the_new_queues_agents(
    tmp_path: Path, db_url: str
) -> None:
    cfg = raw_config(tmp_path, db_url)
    p = Pipeline(load(cfg))
    p.ensure_queues()
    with db.transaction(p.sessions) as s:
        agents.add(s, "alice", "alice@agents.test", "Alice", [])
        agents.grant(s, p.queue_id("Hotline"), "alice", "rw")
    r = p.deliver_one(mail("Printer", sender="Cus <cus@customer.test>"), "old@example.com")
    moved = cli(cfg, "ticket", "move", r.ticket_number, "Hotline")
    assert moved.returncode == 0, moved.stderr
    assert b"moved from Raw to Hotline; 1 agent(s) told" in moved.stdout
    assert queue_of(p, r.ticket_number) == "Hotline"
    mails = outbox_mails(p)
    [told] = [m for m in mails if m["To"] == "Alice <alice@agents.test>"]
    assert "was moved to Hotline from Raw" in told.get_content() and told["Reply-To"]
    [notice] = [m for m in mails if "passed on to" in m.get_content()]
    assert notice["From"].addresses[0].addr_spec == "hotline@example.com"
    assert notice.get_content().rstrip().endswith("Hotline")  # signed by the new queue
    with p.sessions() as s:
        types = s.execute(select(History.type).order_by(History.id)).scalars().all()
    assert "QueueMove" in types
    shown = cli_json(cfg, "ticket", "show", r.ticket_number)
    assert shown["queue"] == "Hotline"
    again = cli(cfg, "ticket", "move", r.ticket_number, "Hotline")
    assert again.returncode == 0 and b"in Hotline already" in again.stdout
    nowhere = cli(cfg, "ticket", "move", r.ticket_number, "Nowhere")
    assert nowhere.returncode == 2 and b"no queue named 'Nowhere'" in nowhere.stderr
    missing = cli(cfg, "ticket", "move", "2026010110000019", "Hotline")
    assert missing.returncode == 1 and b"no ticket 2026010110000019" in missing.stderr
    assert queue_of(p, r.ticket_number) == "Hotline"  # the failures changed nothing
    p.engine.dispose()


def test_dispatch_by_mail_tells_the_new_queues_agents(tmp_path: Path, db_url: str) -> None:
    """queue=<name> in a reply to the raw ticket's notification: moved, the customer told
    (signed by the new queue), the new queue's agents told, the mover not."""
    from agent_helpers import Desk, SigningDomain

    p = Pipeline(load(raw_config(tmp_path, db_url)))
    desk = Desk(p, SigningDomain())  # alice and bob rw on Hotline, carol ro
    with db.transaction(p.sessions) as s:
        agents.grant(s, p.queue_id("Raw"), "alice", "rw")
    r = p.deliver_one(mail("Stray", sender="cus@customer.test"), "old@example.com")
    desk.command("alice", r.ticket_number, "queue=Hotline note", "Yours, Hotline.")
    assert queue_of(p, r.ticket_number) == "Hotline"
    told = [m for m in desk.to("bob@agents.test") if "was moved to Hotline" in m.get_content()]
    assert len(told) == 1 and told[0]["Reply-To"]
    assert not [m for m in desk.to("alice@agents.test") if "was moved" in m.get_content()]
    [notice] = [m for m in desk.to("cus@customer.test") if "passed on to" in m.get_content()]
    assert notice["From"].addresses[0].addr_spec == "hotline@example.com"
    p.engine.dispose()
