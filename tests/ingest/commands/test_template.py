"""template=<name> (issue 30): a named answer goes out, in the ticket's language, with
the acknowledgements' names, below the agent's own text; it may set a state."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Article, History, Ticket
from otrs_mailgate.tickets import answers

from agent_helpers import Desk, SigningDomain
from cli_helpers import cli, write_config
from helpers import mail

HOT = "hotline@example.com"
CUSTOMER = "cus@customer.test"
ALICE = "alice@agents.test"

RESET = """Hello {{ customer.name or "there" }},

please restart the printer: hold the power button for ten seconds.
Your ticket is {{ ticket.number }} ({{ ticket.title }}).
{{ agent.name }}"""


@pytest.fixture
def desk(pipeline: Pipeline, signing: SigningDomain) -> Desk:
    d = Desk(pipeline, signing)
    with db.transaction(pipeline.sessions) as s:
        answers.save(s, "reset", "", "en", RESET)
        answers.save(
            s, "reset", "", "de", "Bitte starten Sie den Drucker neu, {{ customer.name }}."
        )
        answers.save(s, "done", "Hotline", "en", "We consider this solved.", "close")
        answers.save(s, "wait", "", "en", "We wait for your test.", "pending=3d")
        answers.save(s, "other", "Support-DE", "en", "Only for Support-DE.")
    return d


def new_ticket(desk: Desk) -> str:
    raw = mail("Printer on fire", "It burns.", sender=f"Cus Tomer <{CUSTOMER}>")
    return desk.p.deliver_one(raw, HOT).ticket_number


def answers_to_customer(desk: Desk) -> list[str]:
    return [
        m.get_content()
        for m in desk.to(CUSTOMER)
        if "thank you for your message" not in m.get_content()
    ]


def transcript(desk: Desk) -> str:
    return [m for m in desk.to(ALICE) if str(m["Subject"]).startswith("Processed")][
        -1
    ].get_content()


def ticket_state(desk: Desk, number: str) -> str:
    with desk.p.sessions() as s:
        return s.execute(select(Ticket.state).where(Ticket.number == number)).scalar_one()


def test_a_template_goes_out_below_the_agents_own_text(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "template=reset", "Sorry for the trouble.")
    [answer] = answers_to_customer(desk)
    assert answer.index("Sorry for the trouble.") < answer.index("Hello Cus Tomer,")
    assert f"Your ticket is {n} (Printer on fire)." in answer and "\nAlice\n" in answer
    assert "answer template reset (en) added below your text" in transcript(desk)
    with desk.p.sessions() as s:
        stored = s.execute(select(Article.body_text).where(Article.sender_type == "agent")).scalar()
        assert "hold the power button" in stored  # the article is what the customer got
        detail = s.execute(select(History.detail).where(History.type == "AgentReply")).scalar()
        assert "template=reset" in detail


def test_a_template_alone_is_an_answer_and_may_close(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "template=done", "")
    [answer] = answers_to_customer(desk)
    assert "We consider this solved." in answer
    assert ticket_state(desk, n) == "closed"
    assert "answer template done (en) added below your text; closed" in transcript(desk)


def test_a_template_sets_pending(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "template=wait", "")
    assert ticket_state(desk, n) == "pending"
    assert "; pending until" in transcript(desk)


def test_the_ticket_language_picks_the_text(desk: Desk) -> None:
    n = new_ticket(desk)
    with db.transaction(desk.p.sessions) as s:
        s.execute(update(Ticket).where(Ticket.number == n).values(language="de"))
    desk.command("alice", n, "template=reset", "")
    [answer] = answers_to_customer(desk)
    assert "Bitte starten Sie den Drucker neu, Cus Tomer." in answer


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("template=nosuch", "no template 'nosuch' for queue Hotline"),
        ("template=other", "no template 'other' for queue Hotline"),  # another queue's
        ("template=done close", "sets the state itself (then=close); leave out close"),
        ("template=reset note", "a template is an answer to the customer: leave out note"),
        ("template=Bad!Name", "is not a template name"),
    ],
)
def test_a_bad_template_command_changes_nothing(desk: Desk, extra: str, reason: str) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, extra, "My own words.")
    text = transcript(desk)
    assert reason in text and "Nothing was changed" in text
    assert answers_to_customer(desk) == []  # nothing went to the customer
    assert ticket_state(desk, n) == "new"
    with desk.p.sessions() as s:  # and the agent's mail is kept, as an internal note
        kept = s.execute(select(Article.body_text).where(Article.sender_type == "agent")).scalar()
        assert kept == "My own words."


def test_template_cli_add_list_show_remove(tmp_path: Path, db_url: str, desk: Desk) -> None:
    cfg = write_config(tmp_path / "c.toml", db_url)
    body = tmp_path / "printer.txt"
    body.write_text("Dear {{ customer.name }}, the toner is on its way.\n", "utf-8")
    added = cli(cfg, "template", "add", "toner", "--file", str(body), "--queue", "Hotline")
    assert added.returncode == 0, added.stderr
    assert b"added toner" in added.stdout
    listed = cli(cfg, "template", "list", "--queue", "Hotline").stdout.decode()
    assert "toner" in listed and "reset" in listed and "other" not in listed
    shown = cli(cfg, "template", "show", "toner", "--queue", "Hotline")
    assert b"the toner is on its way" in shown.stdout
    # a typo in a name the template uses is refused when it is added, not when it is sent
    bad = cli(cfg, "template", "add", "typo", "--text", "Dear {{ custmer.name }}")
    assert bad.returncode == 1 and b"custmer" in bad.stderr
    wrong = cli(cfg, "template", "add", "x", "--text", "Hi", "--then", "explode")
    assert wrong.returncode == 1 and b"close or pending=<duration>" in wrong.stderr
    assert b"typo" not in cli(cfg, "template", "list").stdout
    n = new_ticket(desk)
    desk.command("alice", n, "template=toner", "")
    assert "Dear Cus Tomer, the toner is on its way." in answers_to_customer(desk)[0]
    gone = cli(cfg, "template", "remove", "toner")
    assert gone.returncode == 0 and b"removed 1" in gone.stdout
    assert cli(cfg, "template", "remove", "toner").returncode == 1
