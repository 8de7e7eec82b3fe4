"""Delivery reports: a note on the ticket whose mail bounced, never a ticket, never answered."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.mail.parse import parse
from otrs_mailgate.mail.wire import canonical
from otrs_mailgate.store.models import Article, History, Outbox, RawMessage, Ticket

from agent_helpers import Desk, SigningDomain
from helpers import count, mail, outbox_mails

HOT = "hotline@example.com"


def dsn(original_message_id: str, recipient: str, status: str = "5.1.1") -> bytes:
    """A delivery status notification shaped like Postfix's."""
    return f"""From: MAILER-DAEMON@mx.customer.test (Mail Delivery System)
To: {HOT}
Subject: Undelivered Mail Returned to Sender
Message-Id: <bounce-{original_message_id}>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.customer.test
Arrival-Date: Sun, 22 Nov 2026 10:00:00 +0100

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: {status}
Diagnostic-Code: x-unix; user unknown

--B
Content-Type: text/rfc822-headers

From: Hotline <{HOT}>
To: {recipient}
Subject: [Ticket#1] Printer
Message-ID: <{original_message_id}>

--B--
""".replace("\n", "\r\n").encode()


def test_a_bounced_acknowledgement_lands_on_its_ticket(pipeline: Pipeline) -> None:
    desk = Desk(pipeline, SigningDomain())
    n = pipeline.deliver_one(mail("Printer", sender="ghost@customer.test"), HOT).ticket_number
    with pipeline.sessions() as s:
        ack_id = s.execute(
            select(Outbox.message_id).where(Outbox.kind == "acknowledgement")
        ).scalar()
    notified = len(outbox_mails(pipeline))
    r = pipeline.deliver_one(dsn(ack_id, "ghost@customer.test"), HOT, "")
    assert r.ticket_number == n and "delivery report" in r.notes
    assert count(pipeline, Ticket) == 1
    with pipeline.sessions() as s:
        article = s.execute(select(Article).order_by(Article.id.desc())).scalars().first()
        bounce = s.execute(select(History).where(History.type == "Bounce")).scalar_one()
        ack = s.execute(select(Outbox).where(Outbox.message_id == ack_id)).scalar_one()
    assert (article.sender_type, article.internal) == ("system", True)
    assert (
        '"recipient": "ghost@customer.test"' in bounce.detail
        and '"status": "5.1.1"' in bounce.detail
    )
    assert "user unknown" in bounce.detail
    assert ack.status == "bounced" and "ghost@customer.test: 5.1.1 user unknown" in ack.last_error
    new = outbox_mails(pipeline)[notified:]
    assert {m["To"].addresses[0].addr_spec for m in new} == {"alice@agents.test", "bob@agents.test"}
    assert all("could not be delivered" in m.get_content() for m in new)  # told once each
    assert "ghost@customer.test: failed 5.1.1 user unknown" in new[0].get_content()
    assert desk.to("ghost@customer.test")[1:] == []  # never answered


def test_a_bounced_notification_is_told_to_nobody_no_loop(pipeline: Pipeline) -> None:
    """Found by running docs/getting-started.md: a notification to an agent whose domain
    does not exist bounced, the bounce was told to that agent, which bounced, ... fifty
    rounds in seconds.  Mail to agents that bounces is recorded, never told to them."""
    desk = Desk(pipeline, SigningDomain())
    n = pipeline.deliver_one(mail("Printer", sender="cus@customer.test"), HOT).ticket_number
    with pipeline.sessions() as s:
        to_alice = s.execute(
            select(Outbox.message_id).where(
                Outbox.kind == "notification_new", Outbox.rcpt_to == "alice@agents.test"
            )
        ).scalar_one()
    before = len(outbox_mails(pipeline))
    r = pipeline.deliver_one(dsn(to_alice, "alice@agents.test"), HOT, "")
    assert r.ticket_number == n and "delivery report" in r.notes
    assert outbox_mails(pipeline)[before:] == []  # nobody is mailed: nothing to bounce again
    with pipeline.sessions() as s:
        told = s.execute(select(History.detail).where(History.type == "AgentMailBounced"))
        assert "alice@agents.test" in told.scalar_one()
        bounced = s.execute(select(Outbox.status).where(Outbox.message_id == to_alice))
        assert bounced.scalar_one() == "bounced"
    assert desk.to("alice@agents.test")[1:] == []


def test_a_report_about_nothing_of_ours_makes_no_ticket(pipeline: Pipeline, corpus: Path) -> None:
    raw = (corpus / "otrs" / "PostMaster-Issue24.eml").read_bytes()
    r = pipeline.deliver_one(raw, HOT, "")
    assert r.ticket_number == "" and "no ticket" in r.notes[0]
    assert count(pipeline, Ticket) == 0 and count(pipeline, Outbox) == 0
    with pipeline.sessions() as s:  # nothing lost: the bytes are kept
        assert s.execute(select(RawMessage.data)).scalar_one() == canonical(raw)
    again = pipeline.deliver_one(raw, HOT, "")  # and a retry is recognised
    assert again.status == "duplicate"


def test_reading_the_corpus_bounce() -> None:
    from otrs_mailgate.mail import bounces

    from helpers import CORPUS

    report = bounces.read(parse((CORPUS / "otrs" / "PostMaster-Issue24.eml").read_bytes()))
    assert [f.recipient for f in report.failures] == ["md@example.com"]
    assert report.original_message_id == ""
