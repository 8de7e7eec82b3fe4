"""Split (issue 20): an article becomes a ticket of its own, by mail and on the command
line; copied (the old ticket keeps it), both histories point at each other, the
customer is told the new number."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from otrs_mailgate.config.schema import load
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store.models import Article, History, Ticket, TicketLink

from agent_helpers import Desk, SigningDomain, agent_mail
from cli_helpers import cli, write_config
from helpers import count, mail

HOT = "hotline@example.com"
CUSTOMER = "cus@customer.test"


def articles_of(p: Pipeline, number: str) -> list[Article]:
    with p.sessions() as s:
        t = s.execute(select(Ticket).where(Ticket.number == number)).unique().scalar_one()
        return list(s.execute(select(Article).where(Article.ticket_id == t.id)).scalars())


def history(p: Pipeline, number: str) -> list[tuple[str, dict]]:
    with p.sessions() as s:
        t = s.execute(select(Ticket).where(Ticket.number == number)).unique().scalar_one()
        rows = s.execute(select(History).where(History.ticket_id == t.id).order_by(History.id))
        return [(h.type, json.loads(h.detail)) for h in rows.scalars()]


def test_split_by_mail_in_a_reply_to_the_articles_notification(
    pipeline: Pipeline, signing: SigningDomain
) -> None:
    desk = Desk(pipeline, signing)
    n = pipeline.deliver_one(mail("Printer", "It burns.", sender=CUSTOMER), HOT).ticket_number
    second = mail(f"Re: [Ticket#{n}] Printer", "Also: my VPN is down.", sender=CUSTOMER)
    pipeline.deliver_one(second, HOT)
    [note] = [m for m in desk.to("alice@agents.test") if "VPN" in m.get_content()]
    reply = agent_mail(
        "alice@agents.test", str(note["Reply-To"]), f"Re: [Ticket#{n} split note] Printer",
        "The VPN gets its own ticket.",
        headers={"In-Reply-To": note["Message-ID"], "References": note["References"]},
    )  # fmt: skip
    pipeline.deliver_one(signing.sign(reply), str(note["Reply-To"]), "alice@agents.test")
    new = [t for t in _numbers(pipeline) if t != n]
    assert len(new) == 1, "one new ticket"
    [copied] = articles_of(pipeline, new[0])
    assert "VPN is down" in copied.body_text
    assert any("VPN is down" in a.body_text for a in articles_of(pipeline, n)), "copied, not moved"
    assert ("SplitFrom", {"ticket": n, "article": copied.id}) in history(pipeline, new[0])
    assert any(t == "Split" and d["new_ticket"] == new[0] for t, d in history(pipeline, n))
    told = [m for m in desk.to(CUSTOMER) if "is now a request" in m.get_content()]
    assert len(told) == 1 and f"[Ticket#{new[0]}]" in str(told[0]["Subject"])
    [transcript] = [m for m in desk.to("alice@agents.test") if "Processed" in str(m["Subject"])]
    assert f"copied to the new ticket {new[0]}" in transcript.get_content()
    with pipeline.sessions() as s:
        assert s.execute(select(func.count()).select_from(TicketLink)).scalar_one() == 1


def test_split_without_a_named_article_changes_nothing(
    pipeline: Pipeline, signing: SigningDomain
) -> None:
    desk = Desk(pipeline, signing)
    n = pipeline.deliver_one(mail("Printer", "It burns.", sender=CUSTOMER), HOT).ticket_number
    before = count(pipeline, Ticket)
    desk.command("alice", n, "split close", "x")  # no References to an article
    assert count(pipeline, Ticket) == before
    [transcript] = [m for m in desk.to("alice@agents.test") if "Processed" in str(m["Subject"])]
    assert "reply to the notification of the article to split off" in transcript.get_content()
    assert articles_of(pipeline, n)[0].ticket_id  # still there
    with pipeline.sessions() as s:
        assert s.execute(select(Ticket.state).where(Ticket.number == n)).scalar() == "new"


def _numbers(p: Pipeline) -> list[str]:
    with p.sessions() as s:
        return list(s.execute(select(Ticket.number).order_by(Ticket.id)).scalars())


def test_ticket_split_on_the_command_line(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path / "otrs-mailgate.toml", db_url)
    p = Pipeline(load(cfg))
    n = p.deliver_one(mail("Printer", "It burns.", sender=CUSTOMER), HOT).ticket_number
    p.deliver_one(mail(f"Re: [Ticket#{n}] x", "And the fax.", sender=CUSTOMER), HOT)
    [fax] = [a for a in articles_of(p, n) if "fax" in a.body_text]
    bad = cli(cfg, "ticket", "split", n, "--article", "999")
    assert bad.returncode == 1 and f"ticket {n} has no article 999".encode() in bad.stderr
    assert count(p, Ticket) == 1  # nothing made
    done = cli(cfg, "ticket", "split", n, "--article", str(fax.id), "--json")
    assert done.returncode == 0, done.stderr
    new = json.loads(done.stdout)["number"]
    assert [a.body_text for a in articles_of(p, new)] == [fax.body_text]
    shown = json.loads(cli(cfg, "ticket", "show", new, "--json").stdout)
    assert shown["customer"] == CUSTOMER
    assert [o["kind"] for o in shown["outbox"]] == ["customer_split"]
    p.engine.dispose()
