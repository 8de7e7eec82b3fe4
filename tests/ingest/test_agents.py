"""Agents work by mail: notifications, reply-address tokens, commands, locks, transcripts."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from otrs_mailgate.ingest import auth
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.jobs import locks
from otrs_mailgate.mail import tokens
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Article, History, Outbox, Ticket, TimeEntry, utcnow
from otrs_mailgate.tickets import agents

from agent_helpers import Desk, SigningDomain, agent_mail
from helpers import count, mail, make_config

HOT = "hotline@example.com"
CUSTOMER = "cus@customer.test"
ALICE, BOB, CAROL = (f"{n}@agents.test" for n in ("alice", "bob", "carol"))


@pytest.fixture
def desk(pipeline: Pipeline, signing: SigningDomain) -> Desk:
    return Desk(pipeline, signing)


def ticket_row(desk: Desk, number: str) -> Ticket:
    with desk.p.sessions() as s:
        return s.execute(select(Ticket).where(Ticket.number == number)).unique().scalar_one()


def history_types(desk: Desk, number: str) -> list[str]:
    t = ticket_row(desk, number)
    with desk.p.sessions() as s:
        rows = s.execute(select(History.type).where(History.ticket_id == t.id).order_by(History.id))
        return list(rows.scalars())


def new_ticket(desk: Desk, subject: str = "Printer on fire", sender: str = CUSTOMER) -> str:
    raw = mail(subject, "It burns.", sender=f"Cus Tomer <{sender}>")
    return desk.p.deliver_one(raw, HOT).ticket_number


def customer_mails(desk: Desk, address: str = CUSTOMER) -> list:
    """What the customer got besides the acknowledgement."""
    return [m for m in desk.to(address) if "thank you for your message" not in m.get_content()]


def transcripts(desk: Desk, address: str) -> list:
    return [
        m
        for m in desk.to(address)
        if str(m["Subject"]).strip().startswith(("Processed", "Not processed"))
    ]


def state(desk: Desk, number: str) -> tuple[str, str | None, int]:
    t = ticket_row(desk, number)
    return t.state, t.owner.login if t.owner else None, t.priority


# -- notifications and reply addresses ---------------------------------------------------


def test_new_ticket_notifies_each_rw_agent_with_its_own_reply_address(desk: Desk) -> None:
    n = new_ticket(desk)
    [to_alice], [to_bob] = desk.to(ALICE), desk.to(BOB)
    assert desk.to(CAROL) == []  # read-only agents are not asked to work
    assert str(to_alice["Subject"]).strip() == f"[Ticket#{n}] Printer on fire"
    assert "It burns." in to_alice.get_content()
    assert to_alice["Auto-Submitted"] == "auto-generated"  # notifications: generated
    assert to_alice["X-Auto-Response-Suppress"] == "All" and to_alice["Precedence"] == "bulk"
    assert to_alice["X-Loop"] == HOT and to_alice["Message-ID"].endswith("@mailgate.test>")
    a, b = str(to_alice["Reply-To"]), str(to_bob["Reply-To"])
    assert a != b and a.startswith("hotline+") and a.endswith("@example.com")
    token = tokens.token_of(a)
    assert len(token) == tokens.TOKEN_LENGTH  # 128-bit MAC plus the fields it covers
    # tokens never reach the customer
    assert all("hotline+" not in m.as_string() for m in desk.to(CUSTOMER))


def test_follow_up_notifies_the_owner_else_the_queue(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.p.deliver_one(mail(f"Re: [Ticket#{n}] Printer", sender=CUSTOMER), HOT)
    assert len(desk.to(ALICE)) == 2 and len(desk.to(BOB)) == 2  # unowned: the queue
    desk.command("bob", n, "take note", "Mine.")
    desk.p.deliver_one(mail(f"Re: [Ticket#{n}] Printer", sender=CUSTOMER), HOT)
    assert len([m for m in desk.to(ALICE) if m["Reply-To"]]) == 2  # alice not again
    assert len([m for m in desk.to(BOB) if m["Reply-To"]]) == 3  # the owner


def test_disabled_agent_gets_nothing_and_its_tokens_die(desk: Desk) -> None:
    n = new_ticket(desk)
    address = desk.reply_address("alice", n)
    with db.transaction(desk.p.sessions) as s:
        agents.set_enabled(s, "alice", False)
    _, r = desk.command("alice", n, "close", to=address)
    assert state(desk, n)[0] == "new" and "not processed as commands" in r.notes[-1]
    assert "agent alice is disabled" in r.notes[-1]
    new_ticket(desk, "Another")
    assert len([m for m in desk.to(ALICE) if m["Reply-To"]]) == 1


# -- the main flow: reply, commands, transcript -------------------------------------------


def test_reply_goes_to_the_customer_and_locks_the_ticket(desk: Desk) -> None:
    n = new_ticket(desk)
    body = "Please restart it.\n\nOn Sunday the hotline wrote:\n> It burns.\n"
    _, r = desk.command("alice", n, "time=15m", body)
    assert r.ticket_number == n and r.status == "stored"
    t = ticket_row(desk, n)
    assert (t.state, t.owner.login) == ("open", "alice") and t.lock_until > utcnow()
    [reply] = customer_mails(desk)
    assert str(reply["Subject"]).strip() == f"[Ticket#{n}] Printer on fire"
    assert reply["From"].addresses[0].addr_spec == HOT
    content = reply.get_content()
    assert "Please restart it." in content and "It burns." not in content
    assert reply["Auto-Submitted"] is None  # a person wrote it
    assert "hotline+" not in reply.as_string()
    [transcript] = transcripts(desk, ALICE)
    assert str(transcript["Subject"]).strip() == f"Processed: Re: [Ticket#{n} time=15m] Printer"
    text = transcript.get_content()
    assert "> reply\n  your text went to the customer" in text
    assert "> time=15m\n  15 minutes accounted" in text
    assert count(desk.p, TimeEntry) == 1
    with desk.p.sessions() as s:
        article = s.execute(select(Article).order_by(Article.id.desc())).scalars().first()
    assert (article.sender_type, article.internal, article.body_text) == (
        "agent",
        False,
        "Please restart it.",
    )


def test_commands_as_lines_at_the_top_of_the_body(desk: Desk) -> None:
    n = new_ticket(desk)
    body = "Command: note\nPending: 3d\nPriority: high\n\nCalled them, waiting for a part."
    desk.command("alice", n, "", body)
    t = ticket_row(desk, n)
    assert (t.state, t.priority) == ("pending", 4)
    assert t.pending_until is not None and t.pending_until > utcnow() + dt.timedelta(days=2)
    [told] = customer_mails(desk)  # the note stays internal; the customer hears of the wait
    assert (
        "is waiting until" in told.get_content() and "waiting for a part" not in told.get_content()
    )
    with desk.p.sessions() as s:
        article = s.execute(select(Article).order_by(Article.id.desc())).scalars().first()
    assert article.internal and article.body_text == "Called them, waiting for a part."


def test_an_ordinary_first_line_is_text_not_a_command(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "", "Note: the printer works again.\nClose: the lid, please.")
    [reply] = customer_mails(desk)
    assert "Note: the printer works again." in reply.get_content()
    assert state(desk, n)[0] == "open"


def test_close_reopen_owner_queue_priority_quiet(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "close quiet", "")
    assert state(desk, n)[0] == "closed" and customer_mails(desk) == []
    desk.command("alice", n, "reopen owner=bob priority=very-high note", "For Bob.")
    assert state(desk, n) == ("open", "bob", 5)
    desk.command("bob", n, "queue=Support-DE note", "")  # bob has no rights there
    assert state(desk, n)[0] == "open" and ticket_row(desk, n).queue.name == "Hotline"
    [*_, refused] = transcripts(desk, BOB)
    assert str(refused["Subject"]).strip().startswith("Processed (with 1 errors)")
    assert "no rw access to queue Support-DE" in refused.get_content()
    with db.transaction(desk.p.sessions) as s:
        agents.grant(s, desk.p.queue_id("Support-DE"), "@team", "rw")
        agents.join(s, "bob", "team")
    desk.command("bob", n, "queue=Support-DE note", "")
    assert ticket_row(desk, n).queue.name == "Support-DE"


def test_all_or_none_with_a_transcript_that_says_how_to_fix(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "close bogus time=soon", "Done.")
    assert state(desk, n) == ("new", None, 3)
    assert customer_mails(desk) == [] and count(desk.p, TimeEntry) == 0
    [transcript] = transcripts(desk, ALICE)
    assert str(transcript["Subject"]).strip() == (
        f"Processed (with 2 errors): Re: [Ticket#{n} close bogus time=soon] Printer"
    )
    text = transcript.get_content()
    assert "unknown command 'bogus'; known are: reply, note, close" in text
    assert "'soon' is not a duration (use e.g. 15m, 2h" in text
    assert "Nothing was changed" in text
    with desk.p.sessions() as s:  # the agent's text is kept, internally
        article = s.execute(select(Article).order_by(Article.id.desc())).scalars().first()
    assert article.internal and article.body_text == "Done."
    assert "CommandsRefused" in history_types(desk, n)


def test_merge_sends_later_mail_to_the_surviving_ticket(desk: Desk) -> None:
    a, b = new_ticket(desk, "A"), new_ticket(desk, "B")
    desk.command("alice", a, f"merge={b} note", "")
    assert state(desk, a)[0] == "merged"
    r = desk.p.deliver_one(mail(f"Re: [Ticket#{a}] A", sender=CUSTOMER), HOT)
    assert r.ticket_number == b


def test_closing_a_parent_closes_its_children_and_tells_their_customers(desk: Desk) -> None:
    parent = new_ticket(desk, "Network down")
    child = new_ticket(desk, "No mail", sender="other@customer.test")
    desk.command("alice", child, f"parent={parent} note", "")
    desk.command("alice", parent, "close", "Fixed the switch.")
    assert state(desk, child)[0] == "closed"
    [told] = customer_mails(desk, "other@customer.test")
    assert str(told["Subject"]).strip() == f"[Ticket#{child}] No mail"
    assert "has now\nbeen resolved" in told.get_content()


def test_cc_list_gets_copies_of_replies(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "cc+=boss@customer.test", "First answer.")
    [first] = customer_mails(desk)
    assert first["Cc"] == "boss@customer.test"
    with desk.p.sessions() as s:
        rcpts = s.execute(select(Outbox.rcpt_to).where(Outbox.kind == "agent_reply")).scalar()
    assert rcpts == f"{CUSTOMER}\nboss@customer.test"
    desk.command("alice", n, "cc-=boss@customer.test", "Second answer.")
    assert customer_mails(desk)[-1]["Cc"] is None


# -- locks -----------------------------------------------------------------------------------


def test_a_locked_ticket_refuses_other_agents_unless_they_steal(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "", "On it.")
    desk.command("bob", n, "close", "Closing.")
    assert state(desk, n)[:2] == ("open", "alice")
    [refused] = transcripts(desk, BOB)
    assert "locked by Alice <alice@agents.test>" in refused.get_content()
    assert "add steal to take it over" in refused.get_content()
    desk.command("bob", n, "steal close", "Closing.")
    assert state(desk, n)[:2] == ("closed", "bob")


def test_locks_lapse_and_the_history_says_so(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "take note", "")
    with db.transaction(desk.p.sessions) as s:
        assert locks.expire(s) == 0
        released = locks.expire(s, utcnow() + dt.timedelta(minutes=121))
    assert released == 1 and ticket_row(desk, n).lock_until is None
    assert history_types(desk, n)[-1] == "Unlock"
    desk.command("bob", n, "close", "")  # no steal needed any more
    assert state(desk, n)[0] == "closed"


def test_unlock_command(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "take note", "")
    desk.command("alice", n, "unlock note", "")
    assert ticket_row(desk, n).lock_until is None
    desk.command("bob", n, "note", "Not locked.")
    assert "CommandsRefused" not in history_types(desk, n)


# -- authentication: each of these is a plain follow-up and leaves the ticket alone -------


def _refused(desk: Desk, n: str, r, reason: str, told: str | None) -> None:
    assert state(desk, n) == ("new", None, 3), "the ticket must not change"
    assert r.ticket_number == n
    assert any("not processed as commands" in note and reason in note for note in r.notes), r
    assert customer_mails(desk) == []
    with desk.p.sessions() as s:
        article = s.execute(select(Article).order_by(Article.id.desc())).scalars().first()
    assert article.internal, "a refused reply-address mail is for agents only (issue 19)"
    assert "CommandRefused" in history_types(desk, n)
    if told:
        [notice] = [
            m for m in transcripts(desk, told) if "Not processed" in str(m["Subject"]).strip()
        ]
        assert reason in notice.get_content()


def test_forged_from_with_another_agents_token(desk: Desk) -> None:
    n = new_ticket(desk)
    _, r = desk.command("alice", n, "close", to=desk.reply_address("bob", n))
    _refused(desk, n, r, "From is alice@agents.test, not the agent's address bob@", BOB)


def test_valid_token_without_dkim(desk: Desk) -> None:
    n = new_ticket(desk)
    _, r = desk.command("alice", n, "close", sign=False)
    _refused(desk, n, r, "DKIM: the mail is not signed (policy: dkim = required)", ALICE)


def test_valid_token_with_failing_dkim(desk: Desk) -> None:
    n = new_ticket(desk)
    to = desk.reply_address("alice", n)
    raw = desk.domain.sign(agent_mail(ALICE, to, f"Re: [Ticket#{n} close] x", "Closing."))
    raw = raw.replace(b"Closing.", b"Hacked!!")  # altered after signing
    r = desk.p.deliver_one(raw, to, ALICE)
    _refused(desk, n, r, "d=agents.test fails", ALICE)


def test_token_of_one_ticket_used_on_another(desk: Desk) -> None:
    a, b = new_ticket(desk, "A"), new_ticket(desk, "B")
    _, r = desk.command("alice", b, "close", to=desk.reply_address("alice", a))
    assert state(desk, a) == ("new", None, 3)
    _refused(desk, b, r, f"the reply address is for ticket {a}, the subject names {b}", ALICE)


def test_expired_token(desk: Desk) -> None:
    n = new_ticket(desk)
    with desk.p.sessions() as s:
        alice = agents.by_login(s.connection(), "alice")
    t = ticket_row(desk, n)
    old = tokens.make(alice.secret, alice.id, t.id, "command", dt.date.today() - dt.timedelta(1))
    _, r = desk.command("alice", n, "close", to=tokens.address(HOT, old))
    _refused(desk, n, r, "the token expired on", ALICE)


def test_token_after_rotate_secret(desk: Desk) -> None:
    n = new_ticket(desk)
    address = desk.reply_address("alice", n)
    with db.transaction(desk.p.sessions) as s:
        agents.rotate_secret(s, "alice")
    _, r = desk.command("alice", n, "close", to=address)
    _refused(desk, n, r, "the token's signature does not match", ALICE)


def test_replayed_command_mail(desk: Desk) -> None:
    n = new_ticket(desk)
    raw, _ = desk.command("alice", n, "note", "First.", message_id="<once@agents.test>")
    assert desk.p.deliver_one(raw, desk.reply_address("alice", n), ALICE).status == "duplicate"
    _, r = desk.command("alice", n, "close", "Again.", message_id="<once@agents.test>")
    assert state(desk, n)[0] == "new"
    assert any("Message-ID <once@agents.test> was seen before" in x for x in r.notes)


def test_old_date(desk: Desk) -> None:
    n = new_ticket(desk)
    _, r = desk.command("alice", n, "close", date=utcnow() - dt.timedelta(hours=49))
    _refused(desk, n, r, "is more than 48 hours away from now", ALICE)


def test_customer_writing_a_command_tag(desk: Desk) -> None:
    n = new_ticket(desk)
    r = desk.p.deliver_one(mail(f"Re: [Ticket#{n} close] thanks", sender=CUSTOMER), HOT)
    assert r.ticket_number == n and state(desk, n)[0] == "new"


def test_notification_forwarded_to_an_outsider_who_replies(desk: Desk) -> None:
    n = new_ticket(desk)
    outsider = SigningDomain("outside.test")
    to = desk.reply_address("alice", n)
    raw = outsider.sign(agent_mail("eve@outside.test", to, f"Re: [Ticket#{n} close] x", "Hi"))
    r = desk.p.deliver_one(raw, to, "eve@outside.test")
    _refused(desk, n, r, "From is eve@outside.test, not the agent's address", ALICE)
    assert desk.to("eve@outside.test") == []  # the outsider learns nothing


def test_read_only_agent_cannot_command(desk: Desk) -> None:
    from otrs_mailgate.outbound.notify import reply_address

    n = new_ticket(desk)
    with desk.p.sessions() as s:
        carol = agents.by_login(s.connection(), "carol")
    address, _ = reply_address(desk.p, desk.p.config.queue[0], carol, ticket_row(desk, n).id)
    desk.command("carol", n, "close", to=address)
    assert state(desk, n)[0] == "new"
    [t] = transcripts(desk, CAROL)
    assert "you have read-only access to queue Hotline" in t.get_content()


def test_dkim_optional_accepts_the_token_and_from_alone(
    db_url: str, signing: SigningDomain
) -> None:
    desk = Desk(Pipeline(make_config(db_url, agents={"dkim": "optional"})), signing)
    n = new_ticket(desk)
    desk.command("alice", n, "close", sign=False)
    assert state(desk, n)[0] == "closed"


def test_authentication_results_only_with_our_authserv_id(
    db_url: str, signing: SigningDomain
) -> None:
    """The daemon believes our milter's dkim=pass (the key is not in its own DNS here)
    when it names, by header.b, a signature in the mail that signs what a command mail
    must have signed; another authserv-id, or no signature named, is nothing."""
    desk = Desk(Pipeline(make_config(db_url, agents={"authserv_id": "mx.mailgate.test"})), signing)
    desk.p.dns = lambda name, timeout=5: None  # only the milter could look the key up
    n = new_ticket(desk)

    def close_with(results: str, signed: bool) -> str:
        to = desk.reply_address("alice", n)
        raw = agent_mail("alice@agents.test", to, f"Re: [Ticket#{n} close] Printer", "Done.")
        raw = signing.sign(raw) if signed else raw
        b = auth._declared(auth.dkim.DKIM(raw))[0].b[:16] if signed else ""
        value = results.replace("B", b)
        desk.p.deliver_one(f"Authentication-Results: {value}\r\n".encode() + raw, to)
        return state(desk, n)[0]

    assert close_with("mx.elsewhere.test; dkim=pass header.d=agents.test header.b=B", True) == "new"
    assert close_with("mx.mailgate.test; dkim=pass header.d=agents.test", False) == "new"
    assert close_with("mx.mailgate.test; dkim=pass header.d=agents.test header.b=B", True) == (
        "closed"
    )


def test_no_header_injection_into_customer_mail(desk: Desk) -> None:
    subject = "=?utf-8?q?Printer=0D=0ABcc=3A_evil=40x=2Etest?="
    n = new_ticket(desk, subject)
    desk.command("alice", n, "", "Answer.")
    [reply] = customer_mails(desk)
    assert reply["Bcc"] is None
    assert str(reply["Subject"]).strip() == f"[Ticket#{n}] Printer Bcc: evil@x.test"
    desk.command("alice", n, "cc+=a@b.test,evil@x.test", "")
    assert customer_mails(desk)[-1]["Cc"] is None  # refused, nothing applied


# -- the customer is told of state changes -------------------------------------------------


def test_customer_is_told_when_closed_with_the_last_answer(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "", "Restart the printer, please.")
    desk.command("alice", n, "close note", "")
    [answer, closed] = customer_mails(desk)
    assert "Restart the printer" in answer.get_content()
    assert str(closed["Subject"]).strip() == f"[Ticket#{n}] Printer on fire"
    text = closed.get_content()
    assert "we have closed your request" in text and "Restart the printer, please." in text
    assert closed["Auto-Submitted"] == "auto-generated"


def test_an_answer_in_the_same_mail_is_the_only_mail(desk: Desk) -> None:
    n = new_ticket(desk)
    desk.command("alice", n, "close", "Fixed, closing.")
    [only] = customer_mails(desk)
    assert "Fixed, closing." in only.get_content()


def test_pending_reopened_merged_moved(desk: Desk) -> None:
    a, b = new_ticket(desk, "A"), new_ticket(desk, "B")
    desk.command("alice", a, "pending=2d note", "")
    desk.command("alice", a, "close quiet", "")
    desk.command("alice", a, "reopen note", "")
    with db.transaction(desk.p.sessions) as s:
        agents.grant(s, desk.p.queue_id("Support-DE"), "alice", "rw")
    desk.command("alice", a, "queue=Support-DE note", "")
    desk.command("alice", b, f"merge={a} note", "")
    texts = [m.get_content() for m in customer_mails(desk)]
    assert "is waiting until" in texts[0]
    assert "opened your request" in texts[1] and "again" in texts[1]
    assert "passed on to Support-DE" in texts[2]
    assert f"continue under [Ticket#{a}]" in texts[3]


def test_queue_may_keep_the_customer_uninformed(db_url: str, signing: SigningDomain) -> None:
    queues = [{"name": "Hotline", "addresses": [HOT], "tell_customer": []}]
    desk = Desk(Pipeline(make_config(db_url, queue=queues)), signing)
    n = new_ticket(desk)
    desk.command("alice", n, "close note", "")
    assert state(desk, n)[0] == "closed" and customer_mails(desk) == []


def test_customer_language_decides_the_template(desk: Desk, tmp_path) -> None:
    from otrs_mailgate.tickets import customers

    n = new_ticket(desk)
    with db.transaction(desk.p.sessions) as s:
        customers.set_language(s, CUSTOMER, "de", desk.p.responder.languages)
    desk.command("alice", n, "close note", "")
    [closed] = customer_mails(desk)
    assert "wir haben Ihre Anfrage" in closed.get_content()
    known = desk.p.responder.languages
    with (
        pytest.raises(customers.CustomerError, match="no templates for language 'xx'"),
        db.transaction(desk.p.sessions) as s,
    ):
        customers.set_language(s, CUSTOMER, "xx", known)
    with (
        pytest.raises(customers.CustomerError, match=r"no customer 'nobody@x\.test'"),
        db.transaction(desk.p.sessions) as s,
    ):
        customers.set_language(s, "nobody@x.test", "de", known)


def test_transcript_shows_the_final_state_and_each_command_once(desk: Desk) -> None:
    with db.transaction(desk.p.sessions) as s:
        agents.grant(s, desk.p.queue_id("Support-DE"), "alice", "rw")
    n = new_ticket(desk)
    desk.command("alice", n, "priority=5 queue=Support-DE note", "Moving it.")
    desk.command("alice", n, "reply", "Done.")
    first, second = transcripts(desk, ALICE)
    text = first.get_content()
    assert text.count("> note") == 1 and "your text was kept internal" in text
    assert "queue: Support-DE, priority: 5." in text  # after the commands, not before
    assert second.get_content().count("> reply") == 1
