"""The knowledge base: `faq` commands, faq=<id> in agents' replies, suggestions in the
acknowledgement of queues that opt in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import FaqEntry
from otrs_mailgate.tickets import faq

from agent_helpers import Desk, SigningDomain
from cli_helpers import cli, write_config
from helpers import mail, make_config, outbox_mails

HOT, DE = "hotline@example.com", "support@example.de"
ENTRIES = [
    ("Resetting your password", "Open the login page, choose 'Forgot password' and follow "
     "the link we mail you. The link works for one hour.", "en", ""),
    ("Replacing the toner", "Open the front cover, pull the old toner cartridge out and "
     "push the new one in until it clicks.", "en", "Hotline"),
    ("Passwort zurücksetzen", "Öffnen Sie die Anmeldeseite und wählen Sie 'Passwort "
     "vergessen'.", "de", ""),
    ("VPN on the road", "Start the VPN client before you open the mail program.", "en",
     "Support-DE"),
]  # fmt: skip


def fill(p: Pipeline) -> list[int]:
    with db.transaction(p.sessions) as s:
        return [faq.add(s, *entry).id for entry in ENTRIES]


def ack_of(p: Pipeline, sender: str) -> str:
    [ack] = [
        m
        for m in outbox_mails(p)
        if m["To"].addresses[0].addr_spec == sender and "thank you" in m.get_content()
    ]
    return ack.get_content()


@pytest.fixture
def suggesting(db_url: str) -> Pipeline:
    config = make_config(
        db_url,
        queue=[
            {"name": "Hotline", "addresses": [HOT], "suggest_faq": True},
            {"name": "Support-DE", "addresses": [DE], "language": "de"},
        ],
    )
    p = Pipeline(config)
    p.ensure_queues()
    fill(p)
    yield p
    p.engine.dispose()


def test_the_acknowledgement_offers_the_best_matches(suggesting: Pipeline) -> None:
    p = suggesting
    raw = mail("Forgot my password", "I cannot log in, I forgot the password.", sender="a@x.test")
    p.deliver_one(raw, HOT)
    text = ack_of(p, "a@x.test")
    assert "Perhaps one of these answers helps you already:" in text
    assert "Resetting your password" in text and "Forgot password" in text
    assert "Replacing the toner" not in text  # shares no two words with the mail
    assert "Passwort" not in text  # another language
    assert "VPN" not in text  # another queue's entry

    p.deliver_one(mail("Toner cartridge empty", "The toner is empty.", sender="b@x.test"), HOT)
    assert "Replacing the toner" in ack_of(p, "b@x.test")

    p.deliver_one(mail("Invoice", "Please send the invoice again.", sender="c@x.test"), HOT)
    assert "Perhaps one of these" not in ack_of(p, "c@x.test")  # nothing fits: nothing offered


def test_queues_that_do_not_opt_in_offer_nothing(pipeline: Pipeline) -> None:
    pipeline.ensure_queues()
    fill(pipeline)
    raw = mail("Forgot my password", "I forgot the password.", sender="a@x.test")
    pipeline.deliver_one(raw, HOT)
    assert "Perhaps one of these" not in ack_of(pipeline, "a@x.test")


def test_agents_insert_entries_with_faq(pipeline: Pipeline) -> None:
    desk = Desk(pipeline, SigningDomain())
    ids = fill(pipeline)
    number = pipeline.deliver_one(mail("Toner?", "How?", sender="c@x.test"), HOT).ticket_number
    desk.command("alice", number, f"faq={ids[1]}", "Hello,\n\nhere is how:")
    [answer] = [m for m in desk.to("c@x.test") if "here is how" in m.get_content()]
    body = answer.get_content()
    assert body.index("here is how:") < body.index("pull the old toner cartridge out")
    transcript = desk.to(f"alice@{desk.domain.domain}")[-1].get_content()
    assert f"FAQ entry {ids[1]} (Replacing the toner) added to your text" in transcript

    before = len(outbox_mails(pipeline))
    desk.command("alice", number, "faq=999", "See this.")
    refused = desk.to(f"alice@{desk.domain.domain}")[-1].get_content()
    assert "no FAQ entry 999" in refused
    assert [m for m in outbox_mails(pipeline)[before:] if m["To"].addresses[0].addr_spec ==
            "c@x.test"] == []  # fmt: skip


def test_cli(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path / "c.toml", db_url)
    assert cli(cfg, "init").returncode == 0
    added = cli(cfg, "faq", "add", "--title", "Password", "--text", "-", "--queue", "Hotline",
                stdin=b"Use 'Forgot password'.\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert b"added     1  en  Hotline          Password" in added.stdout
    edited = cli(cfg, "faq", "edit", "1", "--language", "de", "--queue", "")
    assert edited.returncode == 0 and b"de  (every queue)" in edited.stdout
    shown = json.loads(cli(cfg, "faq", "show", "1", "--json").stdout)
    assert shown == {"id": 1, "title": "Password", "text": "Use 'Forgot password'.",
                     "language": "de", "queue": ""}  # fmt: skip
    assert json.loads(cli(cfg, "faq", "list", "--language", "de", "--json").stdout)[0]["id"] == 1
    assert cli(cfg, "faq", "list", "--language", "en", "--json").stdout.strip() == b"[]"

    for args, message, code in (
        (("add", "--title", "X", "--text", "  "), b"the text is empty", 1),
        (("add", "--title", "X", "--text", "y", "--queue", "Nowhere"), b"no queue named", 2),
        (("add", "--title", "X", "--text", "y", "--language", "english"), b"not two letters", 2),
        (("edit", "7", "--title", "Y"), b"no FAQ entry 7", 1),
        (("show", "7"), b"no FAQ entry 7", 1),
    ):
        proc = cli(cfg, "faq", *args)
        assert proc.returncode == code and message in proc.stderr, (args, proc.stderr)
        assert b"Traceback" not in proc.stderr
    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(FaqEntry)).scalar_one() == 1
        assert faq.get(conn, 1).title == "Password"  # type: ignore[union-attr]
    engine.dispose()
