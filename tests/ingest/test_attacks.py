"""Issue 19, tried as an attacker would, at the pipeline (the path LMTP, pipe and import
share; what goes through Postfix and the milter is in tests/entry/test_attacks_postfix.py).

Each test names the item of issue 19 it holds down, checks what the attacker gets to
see and that nothing they should not reach changed."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from otrs_mailgate.ingest import auth
from otrs_mailgate.ingest.outcome import Item
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.mail import tokens
from otrs_mailgate.mail.addresses import normalize
from otrs_mailgate.outbound.outbox import split_recipients
from otrs_mailgate.store.models import Article, Outbox, RawMessage, Ticket
from otrs_mailgate.web import views

from agent_helpers import Desk, SigningDomain, agent_mail
from helpers import count, mail, make_config

HOT = "hotline@example.com"
CUSTOMER = "cus@customer.test"
ALICE = "alice@agents.test"


@pytest.fixture
def desk(pipeline: Pipeline, signing: SigningDomain) -> Desk:
    return Desk(pipeline, signing)


def new_ticket(desk: Desk, subject: str = "Printer on fire", sender: str = CUSTOMER) -> str:
    return desk.p.deliver_one(mail(subject, "It burns.", sender=sender), HOT).ticket_number


def ticket(desk: Desk, number: str) -> Ticket:
    with desk.p.sessions() as s:
        return s.execute(select(Ticket).where(Ticket.number == number)).unique().scalar_one()


def last_article(desk: Desk) -> Article:
    with desk.p.sessions() as s:
        return s.execute(select(Article).order_by(Article.id.desc())).scalars().first()


def outbox_to(desk: Desk, address: str) -> list[str]:
    with desk.p.sessions() as s:
        rows = s.execute(select(Outbox.rcpt_to)).scalars().all()
    return [r for r in rows if address in split_recipients(r)]


# -- item 1 and 9: one form of an address, one rule for +extensions ----------------------


@pytest.mark.parametrize(
    "form",
    [
        '<"{local}"@example.com>',
        "<{local}@example.com.>",
        "<@relay.example,@mx.example:{local}@example.com>",
        "<{local}%example.com@localhost>",
        "{LOCAL}@EXAMPLE.COM",
    ],
)
def test_every_form_postfix_accepts_is_one_address(form: str) -> None:
    for local in ("hotline", "hotline+" + "a" * 44):
        address = form.format(local=local, LOCAL=local.upper())
        assert normalize(address) == f"{local}@example.com", address


def test_a_quoted_reply_address_still_needs_every_check(desk: Desk) -> None:
    n = new_ticket(desk)
    address = desk.reply_address("alice", n)
    local, _, domain = address.partition("@")
    quoted = f'"{local}"@{domain}.'
    _, r = desk.command("alice", n, "close", sign=False, to=quoted)
    assert ticket(desk, n).state == "new", "an unsigned mail must not command, in any form"
    assert any("not processed as commands" in note for note in r.notes)
    _, r = desk.command("alice", n, "close", to=quoted)
    assert ticket(desk, n).state == "closed"  # and the signed one works in that form too


def test_plus_address_is_the_queue_address_and_one_ticket_per_message(desk: Desk) -> None:
    r = desk.p.deliver_one(mail("Plus", "Hello.", sender=CUSTOMER), "hotline+sales@example.com")
    assert r.new_ticket and r.status == "stored"
    assert len(desk.to(ALICE)) == 1, "the agents are told of a ticket made at a plus address"
    recipients = [f"hotline+{i}@example.com" for i in range(15)]
    recipients += [f'"hotline+q{i}"@example.com' for i in range(15)]
    before = count(desk.p, Ticket)
    [results] = desk.p.deliver_batch([Item(mail("Thirty", "Hi", sender=CUSTOMER), recipients)])
    assert count(desk.p, Ticket) == before + 1
    assert {x.status for x in results} == {"stored", "duplicate"}
    assert len({x.ticket_number for x in results}) == 1


# -- item 2: duplicate headers ----------------------------------------------------------


def test_new_headers_above_an_old_signed_agent_mail_do_not_command(desk: Desk) -> None:
    n = new_ticket(desk)
    address = desk.reply_address("alice", n)
    old = desk.domain.sign(
        agent_mail(ALICE, address, f"Re: [Ticket#{n}] Printer", "Looking.", message_id="<old@x>")
    )
    desk.p.deliver_one(old, address, ALICE)  # the genuine mail, taken once
    now = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    forged = (
        f"Subject: Re: [Ticket#{n} close owner=alice] Printer\r\n"
        f"Date: {now}\r\nMessage-ID: <new-{n}@evil.test>\r\n"
    ).encode() + old
    r = desk.p.deliver_one(forged, address, ALICE)
    assert ticket(desk, n).state != "closed"
    assert any("2 Subject headers" in note for note in r.notes), r.notes
    assert any("2 Message-ID headers" in note for note in r.notes)
    assert last_article(desk).internal


# -- item 3: nothing from a token before its MAC holds ------------------------------------


def test_a_made_up_mac_with_a_real_ticket_id_picks_no_ticket(db_url: str, signing) -> None:
    desk = Desk(Pipeline(make_config(db_url)), signing)
    n = new_ticket(desk, "Secret merger plans")
    desk.p.config.queue[0].new_tickets = "reject"
    row = ticket(desk, n)
    forged = tokens.make("11" * 32, 1, row.id, "command", dt.date(2099, 1, 1))  # alice is 1
    to = tokens.address(HOT, forged)
    raws_before = count(desk.p, RawMessage)
    r = desk.p.deliver_one(mail("hello", "reopen please", sender="eve@evil.test"), to)
    assert r.ticket_number == "" and r.status == "stored"
    assert count(desk.p, RawMessage) == raws_before + 1  # its bytes are kept, nothing more
    assert ticket(desk, n).state == row.state
    assert desk.to("eve@evil.test") == []
    assert all("Secret merger" not in m.as_string() for m in desk.mails() if "eve" in m["To"])


# -- item 4: Authentication-Results read one way ------------------------------------------


def test_an_authserv_id_with_a_comment_glued_on_is_ours_to_milter_and_daemon(
    db_url: str, signing: SigningDomain
) -> None:
    glued = "mx.mailgate.test(x); dkim=pass header.d=agents.test"
    assert auth.claims_ours(glued, "mx.mailgate.test")  # the milter deletes it
    assert auth.claims_ours("not (an; a-r", "mx.mailgate.test")  # unreadable: deleted too
    assert not auth.claims_ours("mx.other.test; dkim=pass header.d=x.test", "mx.mailgate.test")
    desk = Desk(Pipeline(make_config(db_url, agents={"authserv_id": "mx.mailgate.test"})), signing)
    n = new_ticket(desk)
    below = {"Authentication-Results": "mx.other.test; dkim=none"}
    raw = agent_mail(ALICE, desk.reply_address("alice", n), f"Re: [Ticket#{n} close] x", "x")
    forged = f"Authentication-Results: {glued}\r\n".encode()
    # a forged one that is not the topmost is never read, even with our id
    desk.p.deliver_one(
        b"Authentication-Results: mx.other.test; dkim=none\r\n" + forged + raw,
        desk.reply_address("alice", n),
        ALICE,
    )
    assert ticket(desk, n).state == "new"
    assert below  # the milter's own header is the topmost one (test_attacks_postfix)


# -- item 5: a recipient is one address -------------------------------------------------


def test_a_quoted_local_part_with_a_comma_is_one_recipient(desk: Desk) -> None:
    sender = '"victim@third.example,1"@evil.example'
    desk.p.deliver_one(mail("Hi", "x", sender=f"Eve <{sender}>"), HOT)
    [row] = outbox_to(desk, sender)
    assert split_recipients(row) == [sender]
    assert outbox_to(desk, "victim@third.example") == []
    with desk.p.sessions() as s:
        every = s.execute(select(Outbox.rcpt_to)).scalars().all()
    assert all(r != "victim@third.example" for row in every for r in split_recipients(row))


# -- item 6: a refused agent mail is never published --------------------------------------


def test_a_note_to_an_expired_reply_address_stays_internal(desk: Desk) -> None:
    n = new_ticket(desk)
    with desk.p.sessions() as s:
        from otrs_mailgate.tickets import agents

        alice = agents.by_login(s.connection(), "alice")
    expired = tokens.make(
        alice.secret, alice.id, ticket(desk, n).id, "command", dt.date(2020, 1, 1)
    )
    desk.command(
        "alice", n, "note", "Customer is a known fraudster.", to=tokens.address(HOT, expired)
    )
    article = last_article(desk)
    assert article.internal and "fraudster" in article.body_text
    with desk.p.engine.connect() as conn:
        page = views.customer_ticket(conn, desk.p.config, ticket(desk, n).id)
    assert page is not None and "fraudster" not in repr(page)
    assert any("Not processed" in str(m["Subject"]) for m in desk.to(ALICE))
    assert [m for m in desk.to(CUSTOMER) if "fraudster" in m.as_string()] == []


# -- item 7: other customers' titles ----------------------------------------------------


def test_a_stranger_naming_a_ticket_learns_nothing_of_it(desk: Desk) -> None:
    n = new_ticket(desk, "Quarterly figures leaked")
    desk.p.config.queue[0].answer_follow_ups = True
    r = desk.p.deliver_one(mail(f"Re: [Ticket#{n}] ?", "hi", sender="eve@evil.test"), HOT)
    assert r.ticket_number == n  # filed, as OTRS files any follow-up by number
    assert desk.to("eve@evil.test") == []
    assert any("not the ticket's customer" in note for note in r.notes), r.notes
    desk.p.deliver_one(mail(f"Re: [Ticket#{n}] more", "x", sender=CUSTOMER), HOT)
    assert [m for m in desk.to(CUSTOMER) if "Quarterly" in str(m["Subject"])]  # the customer is


# -- item 8: machine mail from agents ---------------------------------------------------


def test_an_agents_out_of_office_is_no_answer(desk: Desk) -> None:
    n = new_ticket(desk)
    before = len(desk.to(CUSTOMER))
    desk.command(
        "alice", n, "", "I am out of the office until Monday.",
        headers={"Auto-Submitted": "auto-replied"},
    )  # fmt: skip
    row = ticket(desk, n)
    assert row.owner_id is None and row.lock_until is None and row.first_response_at is None
    assert len(desk.to(CUSTOMER)) == before, "an agent's robot must not write to the customer"
    assert last_article(desk).internal
    assert not any("Not processed" in str(m["Subject"]) for m in desk.to(ALICE))


def test_an_agents_robot_at_the_queue_address_is_not_notified_of_itself(desk: Desk) -> None:
    n = new_ticket(desk)
    told = len(desk.to(ALICE))
    for _ in range(8):
        desk.p.deliver_one(mail(f"Re: [Ticket#{n}] Away", "I am away.", sender=ALICE), HOT)
    assert len(desk.to(ALICE)) == told, "no notification ping-pong with an agent's robot"


# -- item 11: the number of MIME parts --------------------------------------------------


def test_a_mail_of_15000_parts_is_read_up_to_the_cap_and_kept_whole(desk: Desk) -> None:
    from otrs_mailgate.store.models import Attachment

    parts = "".join(
        f"--b\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Disposition: attachment; filename=f{i}.bin\r\n\r\nAAAA{i}\r\n"
        for i in range(15000)
    )
    raw = (
        "From: cus@customer.test\r\nTo: hotline@example.com\r\nSubject: many\r\n"
        "Message-ID: <many@customer.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n"
        f"\r\nPlease see the files.\r\n{parts}--b--\r\n"
    ).encode()
    r = desk.p.deliver_one(raw, HOT)
    assert r.status == "stored" and r.new_ticket
    assert count(desk.p, Attachment) == desk.p.config.lmtp.max_parts == 1000
    article = last_article(desk)
    assert "Please see the files." in article.body_text
    assert "15002 MIME parts (at most 1000 are read)" in article.problem
    with desk.p.sessions() as s:
        kept = s.execute(select(RawMessage.data).where(RawMessage.id == article.raw_id)).scalar()
    assert bytes(kept) == raw, "nothing of the mail may be lost"
