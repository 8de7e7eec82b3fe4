"""Issue 25, item 3: eight ways around the agent checks and the data boundaries, each
tried as an attacker would.  The DKIM cases use real signatures made by dkimpy and go
through the daemon over LMTP, with the agents' key pinned (agents.dkim_keys)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.mail import tokens
from otrs_mailgate.outbound.outbox import split_recipients
from otrs_mailgate.store.models import Article, History, Outbox, Ticket, utcnow

from agent_helpers import Desk, SigningDomain, agent_mail
from helpers import mail, make_config
from lmtp_helpers import RawLMTP, running

HOT = "hotline@example.com"
CUSTOMER = "cus@customer.test"
ALICE = "alice@agents.test"


@pytest.fixture
def pinned(tmp_path: Path, db_url: str, signing: SigningDomain) -> Desk:
    """A desk whose daemon knows the agents' DKIM key from a pinned-keys file only."""
    keys = tmp_path / "agent-keys"
    keys.write_text(f"{signing.selector}._domainkey.{signing.domain} {signing.txt.decode()}\n")
    desk = Desk(Pipeline(make_config(db_url, agents={"dkim_keys": str(keys)})), signing)
    desk.p.dns = lambda name, timeout=5: None  # nothing but the pinned key
    return desk


def deliver(desk: Desk, raw: bytes, to: str, sender: str = ALICE) -> list[str]:
    """Through a running daemon, over LMTP; the replies to DATA."""
    with running(desk.p.config) as daemon:
        client = RawLMTP(daemon.config.lmtp.port)
        client.cmd("LHLO attacker.test")
        _, replies = client.send(sender, [to], raw)
        client.close()
    return replies


def ticket(desk: Desk, number: str) -> Ticket:
    with desk.p.sessions() as s:
        return s.execute(select(Ticket).where(Ticket.number == number)).unique().scalar_one()


def answers_to(desk: Desk, address: str) -> list[Outbox]:
    with desk.p.sessions() as s:
        rows = s.execute(select(Outbox).where(Outbox.kind == "agent_reply")).scalars().all()
    return [r for r in rows if address in split_recipients(r.rcpt_to)]


def refusals(desk: Desk) -> list[str]:
    """The reasons of every command mail refused so far (the ticket's history)."""
    with desk.p.sessions() as s:
        rows = s.execute(select(History.detail).where(History.type == "CommandRefused"))
        return ["; ".join(json.loads(d)["reasons"]) for d in rows.scalars()]


def new_ticket(desk: Desk) -> str:
    return desk.p.deliver_one(mail("Printer", "It burns.", sender=CUSTOMER), HOT).ticket_number


def agent_answer(desk: Desk, number: str, subject_extra: str = "", body: str = "Fixed.") -> bytes:
    to = desk.reply_address("alice", number)
    tag = f"[Ticket#{number}{' ' + subject_extra if subject_extra else ''}]"
    return agent_mail(ALICE, to, f"Re: {tag} Printer", body)


# -- DKIM that covers too little ----------------------------------------------------------


def test_a_signature_over_from_alone_commands_nothing_nor_does_its_replay(pinned: Desk) -> None:
    """Signed over From only: not a command mail.  A copy with a new Message-ID (which
    the signature does not cover) answers the customer no second time either."""
    n = new_ticket(pinned)
    to = pinned.reply_address("alice", n)
    raw = pinned.domain.sign(agent_answer(pinned, n, "close"), headers=[b"from"])
    assert deliver(pinned, raw, to)[0].startswith("250")
    replay = raw.replace(b"Message-ID: <", b"Message-ID: <again-")
    assert deliver(pinned, replay, to)[0].startswith("250")
    assert ticket(pinned, n).state == "new"
    assert answers_to(pinned, CUSTOMER) == []
    reasons = refusals(pinned)
    assert len(reasons) == 2
    assert all("does not sign to, subject, date, message-id" in r for r in reasons), reasons


def test_a_swapped_subject_outside_the_signature_closes_nothing(pinned: Desk) -> None:
    """The agent's genuine mail signs From, To, Date, Message-ID but not Subject: a copy
    whose Subject says close and cc+= an outsider is refused, the ticket stays as it was."""
    n = new_ticket(pinned)
    to = pinned.reply_address("alice", n)
    genuine = agent_answer(pinned, n, "note", "Looking into it.")
    signed = pinned.domain.sign(genuine, headers=[b"from", b"to", b"date", b"message-id"])
    swapped = signed.replace(
        f"[Ticket#{n} note]".encode(), f"[Ticket#{n} close cc+=eve@evil.test]".encode()
    )
    assert deliver(pinned, swapped, to)[0].startswith("250")
    row = ticket(pinned, n)
    assert row.state == "new"
    assert any("does not sign subject" in r for r in refusals(pinned))
    assert answers_to(pinned, "eve@evil.test") == []


def test_an_added_cc_is_not_signed_and_not_a_command(pinned: Desk) -> None:
    """A header the mail did not have when signed (Cc), added on the way: unsigned."""
    n = new_ticket(pinned)
    to = pinned.reply_address("alice", n)
    signed = pinned.domain.sign(agent_answer(pinned, n))
    added = b"Cc: eve@evil.test\r\n" + signed
    assert deliver(pinned, added, to)[0].startswith("250")
    assert answers_to(pinned, CUSTOMER) == []
    assert any("does not sign cc" in r for r in refusals(pinned))


def test_the_same_mail_signed_over_everything_works(pinned: Desk) -> None:
    """The control: dkimpy's default signature (From, To, Subject, Date, Message-ID and
    the rest) is a command mail through the daemon with pinned keys."""
    n = new_ticket(pinned)
    to = pinned.reply_address("alice", n)
    assert deliver(pinned, pinned.domain.sign(agent_answer(pinned, n, "close")), to)[0][:3] == "250"
    assert ticket(pinned, n).state == "closed"
    assert len(answers_to(pinned, CUSTOMER)) == 1


# -- DKIM l= ------------------------------------------------------------------------------


def test_text_appended_after_an_l_signature_never_reaches_the_customer(pinned: Desk) -> None:
    n = new_ticket(pinned)
    to = pinned.reply_address("alice", n)
    signed = pinned.domain.sign(
        agent_answer(pinned, n, body="Your refund is on its way."), length=True
    )
    appended = signed + b"\r\nPlease pay the fee to IBAN DE00 1234 5678 first.\r\n"
    assert deliver(pinned, appended, to)[0].startswith("250")
    assert answers_to(pinned, CUSTOMER) == []
    assert any("bytes of the body unsigned" in r for r in refusals(pinned))
    with pinned.p.sessions() as s:
        stored = s.execute(select(Article).order_by(Article.id.desc())).scalars().first()
    assert stored.internal and "IBAN" in stored.body_text  # filed for the agents, not sent


def test_an_l_signature_over_the_whole_body_is_fine(pinned: Desk) -> None:
    n = new_ticket(pinned)
    to = pinned.reply_address("alice", n)
    signed = pinned.domain.sign(agent_answer(pinned, n, "close"), length=True)
    assert deliver(pinned, signed, to)[0].startswith("250")
    assert ticket(pinned, n).state == "closed"


# -- confusable addresses ---------------------------------------------------------------

LOCAL = "abcdefghijklmnopqrstuvwxyz0123456789"


def look_alikes() -> list[tuple[str, str]]:
    """Every code point outside ASCII whose NFKC form, case fold or lower case (or a mix)
    is one character of [a-z0-9]: (the character, the letter it passes for)."""
    import sys
    import unicodedata

    found = []
    for cp in range(0x80, sys.maxunicode + 1):
        c = chr(cp)
        if unicodedata.category(c) in ("Cs", "Cn"):
            continue
        nfkc = unicodedata.normalize("NFKC", c)
        for form in (nfkc, c.casefold(), c.lower(), nfkc.casefold(), nfkc.lower()):
            if len(form) == 1 and form in LOCAL:
                found.append((c, form))
                break
    return found


def test_every_look_alike_of_an_agents_address_is_refused(db_url: str, signing) -> None:
    """U+212A KELVIN SIGN + `ate@` was agent kate (str.lower() makes it a k).  Identities
    are compared on the exact ASCII addr-spec; every non-ASCII look-alike is refused
    with that reason, never matched."""
    from otrs_mailgate.ingest import auth
    from otrs_mailgate.mail.parse import parse
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import agents

    pairs = look_alikes()
    assert len(pairs) > 900 and ("\u212a", "k") in pairs and ("ｋ", "k") in pairs
    desk = Desk(Pipeline(make_config(db_url, agents={"dkim": "optional"})), signing)
    with db.transaction(desk.p.sessions) as s:
        kate = agents.add(s, "kate", f"{LOCAL}@agents.test", "Kate", [])
        agents.grant(s, desk.p.queue_id("Hotline"), "kate", "rw")
    row = ticket(desk, new_ticket(desk))
    to = tokens.make(kate.secret, kate.id, row.id, "command", dt.date.today() + dt.timedelta(9))

    refused = 0
    with desk.p.engine.connect() as conn:
        for char, letter in pairs:
            local = LOCAL.replace(letter, char, 1)
            raw = f"From: <{local}@agents.test>\r\nTo: x\r\nSubject: s\r\n\r\nx\r\n".encode()
            verdict = auth.check(conn, desk.p.config.agents, parse(raw), to, utcnow(), None)
            assert verdict.reasons, (hex(ord(char)), "matched the agent")
            assert any("imitates the agent's address" in r for r in verdict.reasons), (
                hex(ord(char)),
                verdict.reasons,
            )
            refused += 1
    assert refused == len(pairs)


def test_the_kelvin_sign_through_the_daemon_closes_nothing(pinned: Desk) -> None:
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import agents

    with db.transaction(pinned.p.sessions) as s:
        agents.add(s, "kate", "kate@agents.test", "Kate", [])
        agents.grant(s, pinned.p.queue_id("Hotline"), "kate", "rw")
    n = new_ticket(pinned)
    to = pinned.reply_address("kate", n)
    raw = agent_mail("x@agents.test", to, f"Re: [Ticket#{n} close] Printer", "Done.")
    raw = raw.replace(b"From: x@agents.test", "From: \u212aate@agents.test".encode())
    assert deliver(pinned, pinned.domain.sign(raw), to, "kate@agents.test")[0][:3] == "250"
    assert ticket(pinned, n).state == "new"
    assert any("imitates the agent's address kate@agents.test" in r for r in refusals(pinned))


# -- a ticket moved away from its owner ---------------------------------------------------


@pytest.fixture
def desk(db_url: str, signing: SigningDomain) -> Desk:
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import agents

    desk = Desk(Pipeline(make_config(db_url)), signing)
    with db.transaction(desk.p.sessions) as s:
        agents.add(s, "dave", "dave@agents.test", "Dave", [])
        agents.grant(s, desk.p.queue_id("Support-DE"), "dave", "rw")
        agents.grant(s, desk.p.queue_id("Support-DE"), "bob", "rw")
    return desk


def move(desk: Desk, number: str, queue: str, actor: str) -> None:
    from otrs_mailgate.outbound import notify
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import refs, state

    site = desk.p.site
    with db.transaction(desk.p.sessions) as session:
        ticket_ref = refs.load(session.connection(), refs.id_of(session.connection(), number))
        old = ticket_ref.queue
        state.move(session, ticket_ref, queue, site.queue_id(queue), actor=actor, now=utcnow())
        notify.moved(site, session, ticket_ref, old, actor)


def texts_to(desk: Desk, address: str) -> list[str]:
    return [m.get_body(("plain",)).get_content() for m in desk.to(address)]


def test_the_owner_of_a_ticket_moved_out_of_their_queues_hears_no_more_of_it(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "", "I'll handle this.")  # alice owns it now
    assert ticket(desk, n).owner_id is not None
    before = len(desk.to(ALICE))
    move(desk, n, "Support-DE", "bob@agents.test")  # as `ticket move` does it
    row = ticket(desk, n)
    assert row.lock_until is None  # let go: dave can take it
    [notice] = desk.to(ALICE)[before:]
    text = notice.get_body(("plain",)).get_content()
    assert "Support-DE" in text and "no access" in text
    assert "Printer" not in text and "It burns" not in text and CUSTOMER not in text
    assert notice["Reply-To"] is None  # nothing to work the ticket with
    desk.p.deliver_one(
        mail(f"Re: [Ticket#{n}] Printer", "Secret: the code is 4711.", sender=CUSTOMER), HOT
    )
    assert len(desk.to(ALICE)) == before + 1  # told once, never of the follow-up
    assert any("4711" in t for t in texts_to(desk, "dave@agents.test"))
    assert not any("4711" in t for t in texts_to(desk, ALICE))


def test_a_mail_decided_before_the_grant_went_is_withheld_when_sent(desk: Desk, sink) -> None:
    """Composed means checked: a notification queued while alice could read the queue is
    not sent once her grant is gone; the row fails with the reason, the rest go out."""
    from otrs_mailgate.outbound.outbox import Sender
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import agents

    n = new_ticket(desk)
    with db.transaction(desk.p.sessions) as s:
        agents.grant(s, desk.p.queue_id("Hotline"), "alice", "none")
    desk.p.config.smtp.port = sink.port
    result = Sender(desk.p.config, desk.p.sessions).run_pass()
    with desk.p.sessions() as s:
        rows = s.execute(select(Outbox).order_by(Outbox.id)).scalars().all()
    [to_alice] = [r for r in rows if r.rcpt_to == ALICE]
    assert to_alice.status == "failed" and "withheld: alice has no grant" in to_alice.last_error
    assert ALICE not in [rcpt for _, rcpts in sink.received for rcpt in rcpts]
    assert result.sent == len(rows) - 1 and n


@pytest.fixture
def sink():
    from aiosmtpd.controller import Controller

    from lmtp_helpers import free_port

    class Handler:
        def __init__(self) -> None:
            self.received: list[tuple[str, list[str]]] = []
            self.port = 0

        async def handle_DATA(self, server, session, envelope):
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos)))
            return "250 OK"

    handler = Handler()
    ctl = Controller(handler, hostname="127.0.0.1", port=free_port())
    ctl.start()
    handler.port = ctl.port
    yield handler
    ctl.stop()


# -- faq= across queues ---------------------------------------------------------------------


def test_a_faq_entry_of_another_queue_is_as_unknown_as_a_missing_one(desk: Desk) -> None:
    """An agent of Hotline asks for an entry of the Secret queue by number: refused like
    an unknown number, and neither its text nor its title reaches anyone."""
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import faq

    with db.transaction(desk.p.sessions) as s:
        secret = faq.add(s, "Merger plans", "We buy ACME on Friday.", "en", "Support-DE")
        public = faq.add(s, "Opening hours", "We answer 9 to 5.", "en", "")
        own = faq.add(s, "Toner", "Push until it clicks.", "en", "Hotline")
    n = new_ticket(desk)
    desk.command("alice", n, f"faq={secret.id}", "Here you go:")
    transcript = desk.to(ALICE)[-1].get_content()
    assert f"no FAQ entry {secret.id} for queue Hotline" in transcript
    assert "Merger" not in transcript and "ACME" not in transcript
    assert not any("ACME" in m.get_content() for m in desk.mails())
    assert answers_to(desk, CUSTOMER) == []
    desk.command("alice", n, f"faq={public.id} faq={own.id}", "Here you go:")
    [answer] = answers_to(desk, CUSTOMER)
    assert answer.status == "queued"
    text = next(m for m in desk.to(CUSTOMER) if "Here you go" in m.get_content()).get_content()
    assert "9 to 5" in text and "clicks" in text


# -- a 900 KB Subject ---------------------------------------------------------------------


def _header_lines(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return head.split(b"\r\n")


def test_a_huge_subject_is_refused_at_lmtp_time(desk: Desk) -> None:
    huge = "Invoice " * 112_500  # 900 KB
    raw = mail(huge, "Please pay.", sender=CUSTOMER)
    with running(desk.p.config) as daemon:
        client = RawLMTP(daemon.config.lmtp.port)
        client.cmd("LHLO t")
        _, replies = client.send(CUSTOMER, [HOT, "support@example.de"], raw)
        client.close()
        metrics = daemon.metrics.render().decode()
    assert replies == ["552 5.3.4 message header too big (over 262144 bytes)"] * 2
    assert 'otrs_mailgate_mails_total{outcome="rejected"} 2.0' in metrics
    with desk.p.sessions() as s:
        assert s.execute(select(Ticket.id)).first() is None


def test_a_long_subject_under_the_limit_makes_a_short_title_and_bounded_headers(
    desk: Desk,
) -> None:
    """200 KB of subject (and a 2 KB Message-ID) taken by the pipe's direct path: the
    ticket's title is cut, every mail we write keeps its subject to 250 characters and
    every header line to 998 octets; the raw mail keeps the whole subject."""
    from otrs_mailgate.outbound.outbox import render
    from otrs_mailgate.store.models import RawMessage

    subject = "Überweisung " * 17_000
    long_id = "x" * 2000 + "@customer.test"
    raw = mail(subject, "Please pay.", sender=CUSTOMER, message_id=long_id)
    n = desk.p.deliver_one(raw, HOT).ticket_number
    row = ticket(desk, n)
    assert len(row.title) <= 250 and row.title.startswith("Überweisung Überweisung")
    with desk.p.sessions() as s:
        assert subject.encode() in s.execute(select(RawMessage.data)).scalar_one()
        rows = s.execute(select(Outbox)).scalars().all()
    assert {r.kind for r in rows} == {"acknowledgement", "notification_new"}
    for outbox_row in rows:
        data = render(desk.p.site.responder, outbox_row)
        assert max(len(line) for line in _header_lines(data)) <= 998
        assert len(data) < 64_000, (outbox_row.kind, len(data))
    for message in desk.mails():
        assert len(str(message["Subject"])) <= 250


def test_the_milter_refuses_a_huge_header_block_while_the_sender_waits(desk: Desk) -> None:
    import asyncio

    from otrs_mailgate.entry import smtpchecks

    gate = smtpchecks.Gate(desk.p)

    async def run() -> smtpchecks.Reply | None:
        message = gate.message("192.0.2.7")
        message.mail_from(f"<{CUSTOMER}>", [])
        assert await message.rcpt(f"<{HOT}>") is None
        assert message.header("From", f" {CUSTOMER}".encode()) is None
        return message.header("Subject", b" " + b"Invoice " * 112_500)

    refused = asyncio.run(run())
    assert str(refused) == "552 5.3.4 message header too big (over 262144 bytes)"


# -- disable, then enable -----------------------------------------------------------------


def test_disable_then_enable_leaves_the_old_reply_addresses_void(desk: Desk) -> None:
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import agents

    n = new_ticket(desk)
    old = desk.reply_address("alice", n)
    with db.transaction(desk.p.sessions) as s:
        agents.set_enabled(s, "alice", False)
    with db.transaction(desk.p.sessions) as s:
        agents.set_enabled(s, "alice", True)
    desk.command("alice", n, "close", to=old)
    assert ticket(desk, n).state == "new"
    assert any("secret was rotated" in r for r in refusals(desk)), refusals(desk)
    desk.p.deliver_one(mail(f"Re: [Ticket#{n}] Printer", "More.", sender=CUSTOMER), HOT)
    fresh = desk.reply_address("alice", n)
    assert fresh != old
    desk.command("alice", n, "close", to=fresh)
    assert ticket(desk, n).state == "closed"
