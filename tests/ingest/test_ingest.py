"""The pipeline end to end: routing, follow-ups, closed-ticket policies, retries, acks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import select, update

from otrs_mailgate.ingest.pipeline import Pipeline, UnknownRecipient
from otrs_mailgate.mail.wire import canonical
from otrs_mailgate.store import db
from otrs_mailgate.store.models import (
    Article,
    Delivery,
    History,
    Outbox,
    RawMessage,
    Ticket,
    TicketLink,
)

from helpers import count, mail, make_config, outbox_mails

HOT = "hotline@example.com"


def set_state(p: Pipeline, number: str, state: str) -> None:
    with db.transaction(p.sessions) as s:
        s.execute(update(Ticket).where(Ticket.number == number).values(state=state))


def test_new_ticket_stores_raw_and_queues_ack(pipeline: Pipeline) -> None:
    raw = mail("Printer on fire", "It burns.\r\n", message_id="m1@customer.test")
    r = pipeline.deliver_one(raw, HOT, "alice@customer.test")
    assert r.status == "stored" and r.new_ticket and r.queue == "Hotline"
    with pipeline.sessions() as s:
        t = s.execute(select(Ticket)).scalar_one()
        a = s.execute(select(Article)).scalar_one()
        assert (t.number, t.title, t.state, t.customer.address) == (
            r.ticket_number,
            "Printer on fire",
            "new",
            "alice@customer.test",
        )
        assert s.get(RawMessage, a.raw_id).data == raw  # byte for byte
        assert a.body_text == "It burns."
        types = s.execute(select(History.type).order_by(History.id)).scalars().all()
    assert types == ["NewTicket", "EmailCustomer", "AutoResponseQueued"]
    [ack] = outbox_mails(pipeline)
    assert ack["Subject"] == f"[Ticket#{r.ticket_number}] Printer on fire"
    assert ack["To"].addresses[0].addr_spec == "alice@customer.test"
    assert ack["From"].addresses[0].addr_spec == HOT
    assert ack["In-Reply-To"] == "<m1@customer.test>"
    assert "<m1@customer.test>" in ack["References"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["X-Auto-Response-Suppress"] == "All" and ack["Precedence"] == "bulk"
    assert ack["X-Loop"] == HOT
    assert ack["Message-ID"].endswith("@mailgate.test>")
    assert r.ticket_number in ack.get_content()
    assert "thank you for your message" in ack.get_content()


def test_ack_language_from_content_language_then_queue(pipeline: Pipeline) -> None:
    pipeline.deliver_one(mail("a", headers={"Content-Language": "de-DE"}), HOT)
    pipeline.deliver_one(mail("b", to="support@example.de"), "support@example.de")
    pipeline.deliver_one(mail("c", sender="bob@x.test", headers={"Content-Language": "fr"}), HOT)
    pipeline.deliver_one(mail("d", headers={"Content-Language": "fr"}), HOT)
    de1, de2, en, de3 = (m.get_content() for m in outbox_mails(pipeline))
    assert "vielen Dank" in de1 and "vielen Dank" in de2
    assert "thank you" in en  # no French templates: the queue's language
    assert "vielen Dank" in de3  # Alice wrote German before: her stored language


def test_follow_up_by_tag_and_by_reply_to_our_ack(pipeline: Pipeline) -> None:
    first = pipeline.deliver_one(mail("Printer"), HOT)
    n = first.ticket_number
    by_tag = pipeline.deliver_one(mail(f"Re: AW: [Ticket#{n}] Printer"), HOT)
    assert (by_tag.ticket_number, by_tag.new_ticket) == (n, False)
    [ack] = outbox_mails(pipeline)
    by_ref = pipeline.deliver_one(
        mail("no tag here", headers={"In-Reply-To": ack["Message-ID"]}), HOT
    )
    assert by_ref.ticket_number == n
    by_refs = pipeline.deliver_one(
        mail("x", headers={"References": f"<unknown@x> {ack['Message-ID']}"}), HOT
    )
    assert by_refs.ticket_number == n
    assert count(pipeline, Ticket) == 1 and count(pipeline, Article) == 4
    assert count(pipeline, Outbox) == 1  # follow-ups are not acknowledged again


def test_mistyped_or_unknown_number_makes_a_new_ticket(pipeline: Pipeline) -> None:
    n = pipeline.deliver_one(mail("Printer"), HOT).ticket_number
    typo = n[:-3] + n[-2] + n[-3] + n[-1]  # adjacent transposition
    if typo == n:
        typo = n[:-2] + str((int(n[-2]) + 1) % 10) + n[-1]
    r = pipeline.deliver_one(mail(f"Re: [Ticket#{typo}] Printer"), HOT)
    assert r.new_ticket and r.ticket_number != n
    r2 = pipeline.deliver_one(mail("Re: [Ticket#10000015] Printer"), HOT)  # valid digit, no ticket
    assert r2.new_ticket


def test_tag_does_not_cross_to_another_number_in_the_subject(pipeline: Pipeline) -> None:
    a = pipeline.deliver_one(mail("A"), HOT).ticket_number
    b = pipeline.deliver_one(mail("B"), HOT).ticket_number
    r = pipeline.deliver_one(mail(f"Re: [Ticket#{b}] was [Ticket#{a}]"), HOT)
    assert r.ticket_number == b


@pytest.mark.parametrize("policy_name", ["reopen", "new", "reject"])
def test_follow_up_to_closed_ticket(db_url: str, policy_name: str) -> None:
    config = make_config(
        db_url, queue=[{"name": "Hotline", "addresses": [HOT], "follow_up_closed": policy_name}]
    )
    p = Pipeline(config)
    n = p.deliver_one(mail("Printer"), HOT).ticket_number
    set_state(p, n, "closed")
    r = p.deliver_one(mail(f"Re: [Ticket#{n}] still broken"), HOT)
    with p.sessions() as s:
        old = s.execute(select(Ticket).where(Ticket.number == n)).scalar_one()
        hist = s.execute(select(History.type).where(History.ticket_id == old.id)).scalars().all()
        links = s.execute(select(TicketLink)).scalars().all()
    mails = outbox_mails(p)
    if policy_name == "reopen":
        assert r.ticket_number == n and old.state == "open" and "StateUpdate" in hist
        assert len(mails) == 1
    elif policy_name == "new":
        assert r.new_ticket and r.ticket_number != n and old.state == "closed"
        assert [(lnk.kind, lnk.target_id) for lnk in links] == [("follow-up-of", old.id)]
        assert len(mails) == 2 and mails[1]["Subject"].startswith(f"[Ticket#{r.ticket_number}]")
    else:
        assert r.ticket_number == n and old.state == "closed" and "FollowUpRejected" in hist
        assert "does not take follow-ups" in mails[1].get_content()
    assert count(p, Article) == 2  # stored in every case: nothing is dropped
    p.engine.dispose()


def test_machine_mail_never_reopens_nor_gets_an_answer(pipeline: Pipeline) -> None:
    n = pipeline.deliver_one(mail("Printer"), HOT).ticket_number
    set_state(pipeline, n, "closed")
    ooo = mail(
        f"Out of office: Re: [Ticket#{n}] Printer", headers={"Auto-Submitted": "auto-replied"}
    )
    r = pipeline.deliver_one(ooo, HOT)
    assert r.ticket_number == n and "closed ticket not reopened" in r.notes[0]
    news = mail("Newsletter", headers={"List-Id": "<news.x.test>"})
    new = pipeline.deliver_one(news, HOT)
    assert new.ticket_number == "" and "machine mail (List-Id present) matching no" in new.notes[0]
    bounce = pipeline.deliver_one(mail("x", sender="MAILER-DAEMON@x.test"), HOT, "")
    assert bounce.ticket_number == "" and not bounce.new_ticket
    assert count(pipeline, Ticket) == 1  # machine mail made no ticket of its own
    assert count(pipeline, Outbox) == 1  # only the first, human mail was acknowledged
    with pipeline.sessions() as s:  # but nothing is lost
        assert news in s.execute(select(RawMessage.data)).scalars().all()
    assert pipeline.deliver_one(news, HOT).status == "duplicate"
    with pipeline.sessions() as s:
        t = s.execute(select(Ticket).where(Ticket.number == n)).scalar_one()
        assert t.state == "closed"


def test_retried_delivery_is_recognised(pipeline: Pipeline) -> None:
    raw = mail("Printer", message_id="retry@customer.test")
    first = pipeline.deliver_one(raw, HOT)
    again = pipeline.deliver_one(b"Received: by another hop\r\n" + raw, HOT)
    assert again.status == "duplicate" and again.ticket_number == first.ticket_number
    assert again.article_id == first.article_id
    assert count(pipeline, Article) == 1 and count(pipeline, Outbox) == 1
    # the same message to a second queue is a second delivery, not a duplicate
    other = pipeline.deliver_one(raw, "support@example.de")
    assert other.status == "stored" and other.new_ticket
    assert count(pipeline, RawMessage) == 1  # raw bytes stored once for both


def test_unknown_recipient_stores_nothing(pipeline: Pipeline) -> None:
    with pytest.raises(UnknownRecipient, match=r"nobody@example\.com"):
        pipeline.deliver_one(mail("x"), "nobody@example.com")
    for model in (Ticket, Article, RawMessage, Delivery, History, Outbox):
        assert count(pipeline, model) == 0


def test_plus_extension_and_case_route_to_the_queue(pipeline: Pipeline) -> None:
    assert pipeline.deliver_one(mail("x"), "Hotline+abc123@Example.COM").queue == "Hotline"


def test_route_by_headers_when_no_envelope(pipeline: Pipeline) -> None:
    assert pipeline.deliver_one(mail("x", to="support@example.de"), None).queue == "Support-DE"
    with pytest.raises(UnknownRecipient):
        pipeline.deliver_one(mail("x", to="else@where.test"), None)


def test_merged_ticket_forwards_follow_ups(pipeline: Pipeline) -> None:
    a = pipeline.deliver_one(mail("A"), HOT).ticket_number
    b = pipeline.deliver_one(mail("B"), HOT).ticket_number
    with db.transaction(pipeline.sessions) as s:
        target = s.execute(select(Ticket.id).where(Ticket.number == b)).scalar_one()
        s.execute(
            update(Ticket).where(Ticket.number == a).values(merged_into_id=target, state="merged")
        )
    assert pipeline.deliver_one(mail(f"Re: [Ticket#{a}] A"), HOT).ticket_number == b


def test_corpus_ingests_byte_identical(pipeline: Pipeline, corpus: Path) -> None:
    """Every byte kept: what is stored is the file in the canonical form (CRLF line ends,
    mail/wire.py), and nothing else changed."""
    files = sorted(p for p in (corpus / "otrs").iterdir() if p.suffix in (".box", ".eml"))
    assert files
    for path in files:
        raw = path.read_bytes()
        r = pipeline.deliver_one(raw, HOT)
        digest = hashlib.sha256(canonical(raw)).hexdigest()
        with pipeline.sessions() as s:
            stored = s.execute(select(RawMessage).where(RawMessage.sha256 == digest)).scalar_one()
            assert stored.data == canonical(raw), path.name
            assert stored.data.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n") + (
                b"" if raw.endswith(b"\n") else b"\n"
            ), path.name
            if r.article_id is not None:  # machine mail matching no ticket has none
                assert s.get(Article, r.article_id).raw_id == stored.id


def test_unparsable_structure_is_stored_and_flagged(pipeline: Pipeline, monkeypatch) -> None:
    import otrs_mailgate.mail.parse as parse_mod

    def boom(*a, **k):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(parse_mod, "_walk", boom)
    raw = mail("deeply nested")
    r = pipeline.deliver_one(raw, HOT)
    with pipeline.sessions() as s:
        a = s.get(Article, r.article_id)
        assert a.unparsed and "recursion" in a.problem
        assert s.get(RawMessage, a.raw_id).data == raw
        hist = s.execute(select(History.detail).where(History.type == "EmailCustomer")).scalar_one()
    assert '"unparsed": true' in hist


def test_header_injection_in_subject_cannot_reach_the_ack(pipeline: Pipeline) -> None:
    raw = mail("=?utf-8?Q?Hi=0D=0ABcc:_victim@evil.test?=")
    pipeline.deliver_one(raw, HOT)
    [ack] = outbox_mails(pipeline)
    assert ack["Bcc"] is None
    assert "\n" not in ack["Subject"] and "Bcc: victim" in ack["Subject"]


def test_templates_folder_from_config(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "mail" / "en").mkdir(parents=True)
    (tmp_path / "mail" / "en" / "acknowledgement.txt.j2").write_text("Custom {{ number }}\n")
    p = Pipeline(make_config(db_url, system={"templates": str(tmp_path)}))
    n = p.deliver_one(mail("x"), HOT).ticket_number
    assert outbox_mails(p)[0].get_content().strip() == f"Custom {n}"
    p.engine.dispose()


def test_one_batch_sees_its_own_earlier_mails(pipeline: Pipeline) -> None:
    """Group commit writes history, references and deliveries at the end of the batch;
    a reply to a mail, or the same mail again, in the same batch must still find it."""
    from otrs_mailgate.ingest.pipeline import Failed, Item
    from otrs_mailgate.tickets import history

    first = mail("Printer", message_id="orig@customer.test")
    reply = mail("Re: Printer", headers={"In-Reply-To": "<orig@customer.test>"})
    items = [
        Item(first, [HOT], "alice@customer.test"),
        Item(reply, [HOT], "alice@customer.test"),
        Item(first, [HOT], "alice@customer.test"),  # Postfix retried it meanwhile
        Item(b"\x00\x01 not a mail", [HOT], "x@y.test"),
        Item(mail("other"), [HOT, "nobody@example.com"], "bob@customer.test"),
    ]
    out = pipeline.deliver_batch(items)
    [[a], [b], [c], [d], [e, f]] = out
    assert a.new_ticket and b.ticket_number == a.ticket_number and not b.new_ticket
    assert c.status == "duplicate" and c.ticket_number == a.ticket_number
    assert isinstance(d, Failed) and type(d.error).__name__ == "NotAMail"
    assert e.new_ticket and isinstance(f, Failed) and type(f.error).__name__ == "UnknownRecipient"
    assert (count(pipeline, Ticket), count(pipeline, Article), count(pipeline, Delivery)) == (
        2,
        3,
        3,
    )
    with pipeline.sessions() as s:
        keys = history.keys_for(pipeline.config)
        found = history.verify(s, keys)
        assert [x for x in found if isinstance(x, history.Broken)] == []


def test_a_failing_mail_rolls_the_batch_back_and_redoes_it_carefully(
    pipeline: Pipeline, monkeypatch
) -> None:
    """The fast path has no savepoints: one exception undoes the whole transaction, and
    the batch is done again with a savepoint each, so only the bad mail is missing."""
    import otrs_mailgate.ingest.pipeline as ingest_mod
    from otrs_mailgate.ingest.pipeline import Failed, Item

    real = ingest_mod.run
    calls: list[str] = []

    def run(trip):
        calls.append(trip.mail.subject)
        if trip.mail.subject == "boom":
            raise RuntimeError("a bug")
        return real(trip)

    monkeypatch.setattr(ingest_mod, "run", run)
    out = pipeline.deliver_batch(
        [Item(mail(s), [HOT], "a@customer.test") for s in ("one", "boom", "two")]
    )
    assert calls == ["one", "boom", "one", "boom", "two"]
    assert [type(x).__name__ for [x] in out] == ["Result", "Failed", "Result"]
    assert isinstance(out[1][0], Failed) and str(out[1][0].error) == "a bug"
    assert count(pipeline, Ticket) == 2 and count(pipeline, Outbox) == 2
    with pipeline.sessions() as s:
        titles = s.execute(select(Ticket.title).order_by(Ticket.id)).scalars().all()
    assert titles == ["one", "two"]


def test_loop_limit_per_address_in_a_sliding_day(db_url: str) -> None:
    """At most N automatic answers to one address in 24 hours, counting what was put in
    the outbox (the same batch included); the history says when one was held back."""
    import datetime as dt

    from otrs_mailgate.ingest.pipeline import Item
    from otrs_mailgate.store.models import utcnow

    p = Pipeline(make_config(db_url, system={"auto_response_limit": 3}))
    loop = "Robot <robot@loop.test>"
    for i in range(2):
        p.deliver_one(mail(f"one {i}", sender=loop), HOT)
    p.deliver_batch(
        [Item(mail(f"two {i}", sender=loop), [HOT], "robot@loop.test") for i in range(3)]
    )
    p.deliver_one(mail("a human", sender="bob@customer.test"), HOT)
    acks = [m["To"].addresses[0].addr_spec for m in outbox_mails(p)]
    assert acks.count("robot@loop.test") == 3 and acks.count("bob@customer.test") == 1
    with p.sessions() as s:
        held = (
            s.execute(select(History.detail).where(History.type == "AutoResponseSuppressed"))
            .scalars()
            .all()
        )
    assert len(held) == 2
    assert all(
        "loop limit: 3 automatic answers to robot@loop.test in the last 24 hours" in d for d in held
    )
    assert count(p, Ticket) == 6  # every mail is still stored
    with db.transaction(p.sessions) as s:  # a day later the window has moved on
        s.execute(update(Outbox).values(created_at=utcnow() - dt.timedelta(hours=25)))
    p.deliver_one(mail("next day", sender=loop), HOT)
    assert [m["To"].addresses[0].addr_spec for m in outbox_mails(p)].count("robot@loop.test") == 4


def test_a_queue_may_make_tickets_of_machine_mail(db_url: str) -> None:
    queues = [{"name": "Lists", "addresses": ["lists@example.com"], "auto_tickets": True}]
    p = Pipeline(make_config(db_url, queue=queues))
    r = p.deliver_one(mail("Digest", headers={"List-Id": "<l.x.test>"}), "lists@example.com")
    assert r.new_ticket and count(p, Outbox) == 0  # a ticket, still no answer


def test_auto_response_types_per_queue(db_url: str) -> None:
    """Answer every follow-up; a queue taking no new tickets rejects new senders (once
    the loop limit allows) and keeps their mail; old closed tickets are not reopened."""
    import datetime as dt

    from otrs_mailgate.store.models import utcnow

    queues = [
        {"name": "Hotline", "addresses": [HOT], "answer_follow_ups": True, "reopen_days": 30},
        {"name": "Closed", "addresses": ["closed@example.com"], "new_tickets": "reject"},
    ]
    p = Pipeline(make_config(db_url, queue=queues, system={"auto_response_limit": 2}))
    n = p.deliver_one(mail("Printer", sender="cus@customer.test"), HOT).ticket_number
    p.deliver_one(mail(f"Re: [Ticket#{n}] Printer", sender="cus@customer.test"), HOT)
    subjects = [str(m["Subject"]).strip() for m in outbox_mails(p)]
    assert subjects == [f"[Ticket#{n}] Printer"] * 2
    assert "has been added to ticket" in outbox_mails(p)[1].get_content()

    new = p.deliver_one(mail("Hello", sender="new@customer.test"), "closed@example.com")
    assert new.ticket_number == "" and "the sender was told" in new.notes[0]
    [rejection] = [m for m in outbox_mails(p) if "does not take new requests" in m.get_content()]
    assert rejection["To"].addresses[0].addr_spec == "new@customer.test"
    assert rejection["Auto-Submitted"] == "auto-replied"
    for _ in range(2):  # a forged or looping sender gets no more than the loop limit allows
        p.deliver_one(mail("Hello again", sender="new@customer.test"), "closed@example.com")
    told = [m for m in outbox_mails(p) if m["To"].addresses[0].addr_spec == "new@customer.test"]
    assert len(told) == 2
    known = p.deliver_one(mail("From a customer", sender="cus@customer.test"), "closed@example.com")
    assert known.new_ticket  # people who are customers already still get a ticket

    with db.transaction(p.sessions) as s:
        s.execute(
            update(Ticket)
            .where(Ticket.number == n)
            .values(state="closed", closed_at=utcnow() - dt.timedelta(days=31))
        )
    late = p.deliver_one(mail(f"Re: [Ticket#{n}] Printer", sender="cus@customer.test"), HOT)
    assert late.new_ticket and late.ticket_number != n
    with p.sessions() as s:
        link = s.execute(select(TicketLink)).scalar_one()
    assert link.kind == "follow-up-of"


@pytest.mark.parametrize(
    ("from_line", "extra", "envelope", "customer", "source"),
    [
        (
            b"",
            b"Reply-To: Bob <bob@customer.test>\r\n",
            "env@customer.test",
            "bob@customer.test",
            "Reply-To",
        ),
        (
            b"From: <>\r\n",
            b"Sender: Carol <carol@customer.test>\r\n",
            None,
            "carol@customer.test",
            "Sender",
        ),
        (
            b"From: not an address\r\n",
            b"",
            "<dave@customer.test>",
            "dave@customer.test",
            "envelope sender",
        ),
    ],
)
def test_no_usable_from_takes_the_customer_from_reply_to_sender_or_envelope(
    pipeline: Pipeline,
    from_line: bytes,
    extra: bytes,
    envelope: str | None,
    customer: str,
    source: str,
) -> None:
    raw = from_line + extra + b"To: hotline@example.com\r\nSubject: Who am I\r\n\r\nHelp.\r\n"
    r = pipeline.deliver_one(raw, HOT, envelope)
    assert r.new_ticket and f"the customer is {customer} ({source})" in r.notes[0]
    [ack] = outbox_mails(pipeline)
    assert ack["To"].addresses[0].addr_spec == customer
    with pipeline.sessions() as s:
        t = s.execute(select(Ticket)).scalar_one()
        assert t.customer.address == customer
        [entry] = s.execute(select(History).where(History.type == "EmailCustomer")).scalars()
    assert json.loads(entry.detail)["customer_from"] == source
