"""Issue 26: agents' replies as real mail clients write them, through the daemon with
DKIM (the agents' key pinned): what the customer receives, what the article holds and
what the transcript says, for every shape in tests/support/client_shapes.py."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from pathlib import Path

import client_shapes as shapes
import pytest
from sqlalchemy import select

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.mail.parse import parse
from otrs_mailgate.mail.replytext import MARKERS
from otrs_mailgate.outbound.outbox import render, split_recipients
from otrs_mailgate.store.models import Article, Outbox, Ticket

from agent_helpers import Desk, SigningDomain
from helpers import mail, make_config
from lmtp_helpers import RawLMTP, running

HOT = "hotline@example.com"
CUSTOMER = "bob@customer.test"
ALICE = "alice@agents.test"
# The customer's mail carries a line that reads like a command: quoted back, it must
# never run ("Priority: high" applied from a quote was one of the failures).
CUSTOMER_TEXT = "Hello,\n\nIt still burns.\nPriority: high\n\nPlease call me back.\nBob"
SIGNATURE = "Alice, Hotline"  # what the queue signs with (agent_signature = replace)

ANSWERS = {
    "en": "Hello Bob,\n\nwe replaced the fuser; the printer works again.\n\nKind regards,\nAlice",
    "de": "Hallo Bob,\n\nwir haben die Fixiereinheit getauscht; der Drucker geht wieder.",
    "fr": "Bonjour Bob,\n\nnous avons remplacé l'unité de fixation ; l'imprimante fonctionne.",
    "es": "Hola Bob,\n\nhemos cambiado el fusor; la impresora funciona de nuevo.",
    "it": "Ciao Bob,\n\nabbiamo sostituito il fusore; la stampante funziona di nuovo.",
    "nl": "Hallo Bob,\n\nwe hebben de fuser vervangen; de printer werkt weer.",
    "ru": "Здравствуйте, Боб!\n\nМы заменили блок закрепления, принтер снова работает.",
    "ja": "ボブ様\n\n定着ユニットを交換しました。プリンターは再び動作します。",
    "zh": "鲍勃您好：\n\n我们更换了定影器，打印机已恢复正常。",
}


@pytest.fixture
def desk(tmp_path: Path, db_url: str, signing: SigningDomain) -> Desk:
    keys = tmp_path / "agent-keys"
    keys.write_text(f"{signing.selector}._domainkey.{signing.domain} {signing.txt.decode()}\n")
    d = Desk(Pipeline(make_config(db_url, agents={"dkim_keys": str(keys)})), signing)
    d.p.dns = lambda name, timeout=5: None  # the pinned key only
    return d


def notification(desk: Desk) -> tuple[str, shapes.Notification, bytes]:
    """A customer's mail, and the notification alice got about it (as her client sees it)."""
    raw = mail("Printer on fire", CUSTOMER_TEXT, sender=f"Bob <{CUSTOMER}>")
    number = desk.p.deliver_one(raw, HOT).ticket_number
    with desk.p.sessions() as s:
        rows = s.execute(select(Outbox).where(Outbox.kind == "notification_new")).scalars()
        row = next(r for r in rows if split_recipients(r.rcpt_to) == [ALICE])
    data = render(desk.p.site.responder, row).replace(b"\r\n", b"\n")
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    n = shapes.Notification(
        subject=str(message["Subject"]),
        message_id=str(message["Message-ID"]).strip("<>"),
        reply_to=str(message["Reply-To"]),
        text=text,
    )
    return number, n, data


def deliver(desk: Desk, raw: bytes, to: str) -> str:
    """The reply, DKIM-signed, through a running daemon over LMTP; the reply to DATA."""
    signed = desk.domain.sign(raw)
    with running(desk.p.config) as daemon:
        client = RawLMTP(daemon.config.lmtp.port)
        client.cmd("LHLO agents.test")
        _, replies = client.send(ALICE, [to], signed)
        client.close()
    return replies[0]


def to_customer(desk: Desk) -> list[EmailMessage]:
    """The agent's answers as the customer receives them."""
    with desk.p.sessions() as s:
        rows = s.execute(select(Outbox).where(Outbox.kind == "agent_reply")).scalars().all()
    return [
        email.message_from_bytes(  # type: ignore[misc]
            render(desk.p.site.responder, r).replace(b"\r\n", b"\n"), policy=policy.default
        )
        for r in rows
    ]


def body_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def agent_article(desk: Desk) -> Article:
    with desk.p.sessions() as s:
        query = select(Article).where(Article.sender_type == "agent").order_by(Article.id.desc())
        return s.execute(query).scalars().first()


def transcript(desk: Desk) -> str:
    mails = [m for m in desk.to(ALICE) if str(m["Subject"]).startswith("Processed")]
    return mails[-1].get_content()


def ticket(desk: Desk, number: str) -> Ticket:
    with desk.p.sessions() as s:
        return s.execute(select(Ticket).where(Ticket.number == number)).unique().scalar_one()


def assert_nothing_of_ours(text: str, n: shapes.Notification) -> None:
    for marker in MARKERS:
        assert marker not in text
    assert n.reply_to not in text and ALICE not in text
    assert "Reply to this mail" not in text and "yours alone" not in text
    assert "It still burns" not in text and "Priority: high" not in text


@pytest.mark.parametrize(
    ("name", "language", "build"), shapes.SHAPES, ids=[s[0] for s in shapes.SHAPES]
)
def test_a_client_shape_sends_exactly_the_answer(desk: Desk, name, language, build) -> None:
    number, n, _ = notification(desk)
    answer = ANSWERS[language]
    assert deliver(desk, build(n, answer), n.reply_to).startswith("250")
    [sent] = to_customer(desk)
    body = body_of(sent)
    assert body == f"{answer}\n--\n{SIGNATURE}\n", body
    assert_nothing_of_ours(body, n)
    article = agent_article(desk)
    assert article.body_text == answer and not article.internal
    assert "your text went to the customer" in transcript(desk)
    row = ticket(desk, number)
    assert row.priority == 3, "a quoted 'Priority: high' must never run"
    assert row.first_response_at is not None


def test_an_interleaved_answer_keeps_the_customers_lines_it_answers(desk: Desk) -> None:
    """The agent answers between the customer's quoted lines: each answer goes with the
    customer's line above it (never a line of our notification's frame)."""
    number, n, _ = notification(desk)
    raw = shapes.interleaved_en(
        n,
        ("Unplug it now, please.", "I will call you at three."),
        ("It still burns.", "Please call me back."),
    )
    assert deliver(desk, raw, n.reply_to).startswith("250")
    [sent] = to_customer(desk)
    expected = (
        "> It still burns.\n\nUnplug it now, please.\n\n"
        "> Please call me back.\n\nI will call you at three."
    )
    assert body_of(sent) == f"{expected}\n--\n{SIGNATURE}\n"
    assert agent_article(desk).body_text == expected
    assert "quoted above each part" in transcript(desk)
    assert ticket(desk, number).priority == 3


def test_commands_at_the_top_of_a_bottom_posted_answer_run(desk: Desk) -> None:
    number, n, _ = notification(desk)
    answer = ANSWERS["de"]
    assert deliver(desk, shapes.mutt_bottom_with_commands_de(n, answer), n.reply_to)[:3] == "250"
    [sent] = to_customer(desk)
    assert body_of(sent) == f"{answer}\n--\n{SIGNATURE}\n"
    assert ticket(desk, number).state == "pending"
    assert "pending until" in transcript(desk)


def test_an_attached_original_is_not_forwarded(desk: Desk) -> None:
    """Outlook's "attach original": the notification rides along as message/rfc822. The
    customer gets the answer only."""
    _, n, original = notification(desk)
    answer = ANSWERS["en"]
    assert (
        deliver(desk, shapes.outlook_attach_original_en(n, answer, original), n.reply_to)[:3]
        == "250"
    )
    [sent] = to_customer(desk)
    assert [p.get_content_type() for p in sent.walk()] == ["text/plain"]
    assert body_of(sent) == f"{answer}\n--\n{SIGNATURE}\n"
    assert_nothing_of_ours(sent.as_string(), n)
    assert "the attached original mail was not forwarded" in transcript(desk)


def test_an_html_reply_quoting_the_customer_without_attribution(desk: Desk) -> None:
    number, n, _ = notification(desk)
    answer = ANSWERS["en"]
    assert deliver(desk, shapes.html_only_no_attribution(n, answer), n.reply_to)[:3] == "250"
    [sent] = to_customer(desk)
    assert body_of(sent) == f"{answer}\n--\n{SIGNATURE}\n"
    assert ticket(desk, number).priority == 3


def test_an_answer_of_only_an_attribution_line_is_not_sent(desk: Desk) -> None:
    """The German case: the attribution line alone used to go to the customer as the
    answer and counted as the first response."""
    number, n, _ = notification(desk)
    raw = shapes._message(n, body=f"Am 07.12.26 um 01:47 schrieb {n.sender_name}:\n").as_bytes()
    assert deliver(desk, raw, n.reply_to).startswith("250")
    assert to_customer(desk) == []
    said = transcript(desk)
    assert "reply\n  NOT sent" in said and "send it as a new reply" in said
    row = ticket(desk, number)
    assert row.first_response_at is None
    assert agent_article(desk).internal


def test_an_answer_with_our_notification_in_it_is_held(desk: Desk) -> None:
    """The agent pasted the notification (its token address) into the answer, unquoted:
    the answer is held, the agent told, the customer gets nothing."""
    number, n, _ = notification(desk)
    raw = shapes._message(
        n, body=f"Please write to {n.reply_to} from now on.\n\nThanks, Alice\n"
    ).as_bytes()
    assert deliver(desk, raw, n.reply_to).startswith("250")
    assert to_customer(desk) == []
    said = transcript(desk)
    assert "NOT sent: your answer contains" in said and "no customer may see" in said
    assert agent_article(desk).internal
    assert ticket(desk, number).first_response_at is None


def test_a_queue_that_keeps_the_agents_signature(tmp_path: Path, db_url: str, signing) -> None:
    keys = tmp_path / "agent-keys"
    keys.write_text(f"{signing.selector}._domainkey.{signing.domain} {signing.txt.decode()}\n")
    config = make_config(db_url, agents={"dkim_keys": str(keys)})
    config.queue[0].agent_signature = "keep"
    desk = Desk(Pipeline(config), signing)
    desk.p.dns = lambda name, timeout=5: None
    _, n, _ = notification(desk)
    answer = ANSWERS["de"]
    assert deliver(desk, shapes.thunderbird_bottom_de(n, answer), n.reply_to)[:3] == "250"
    [sent] = to_customer(desk)
    assert body_of(sent) == f"{answer}\n--\nAlice Agent\nHotline, Durchwahl -42\n"
    assert "replaced" not in transcript(desk)


def test_the_parser_reads_format_flowed_as_written() -> None:
    raw = (
        b"From: a@b.test\nSubject: s\nContent-Type: text/plain; charset=utf-8; format=flowed"
        b"\n\nThis is a long paragraph that was \nwrapped by the client.\n"
        b">> quoted and \n>> flowed\n \n-- \nsig\n"
    )
    assert parse(raw).body_text == (
        "This is a long paragraph that was wrapped by the client.\n> > quoted and flowed\n\n"
        "-- \nsig"
    )
    delsp = raw.replace(b"format=flowed", b"format=flowed; delsp=yes").replace(
        b"that was \nwrapped", b"that was wrap \nped"
    )
    assert parse(delsp).body_text.startswith("This is a long paragraph that was wrapped by")


# -- replies written by hand in the clients' default shapes, not by client_shapes.py ------

HAND_WRITTEN = {
    "thunderbird-bottom-flowed-de.eml": (
        "Hallo Bob,\n\nwir haben die Fixiereinheit getauscht. Der Drucker läuft wieder; falls "
        "noch etwas ist, melden Sie sich einfach.\n\nViele Grüße\nAlice"
    ),
    "thunderbird-top-html.eml": (
        "Hello Bob,\n\na technician is on the way and will be there before noon.\n\nAlice"
    ),
    "outlook-365-top.eml": (
        "Hi Bob,\n\nThanks for the details. Please switch the printer off at the wall until "
        "our technician arrives this afternoon.\n\nRegards,\nAlice"
    ),
    "outlook-de-html-only.eml": "Hallo Bob,\n\nder Techniker kommt heute um 15 Uhr.\n\nGruß\nAlice",
}


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_hand_written_replies_in_default_client_settings(desk: Desk, name: str) -> None:
    import datetime as dt
    import uuid
    from email.utils import format_datetime

    number, n, _ = notification(desk)
    template = (Path(__file__).parent / "replies" / name).read_text(encoding="utf-8")
    raw = (
        template.replace("{TOKEN}", n.reply_to)
        .replace("{NUMBER}", number)
        .replace("{NOTIFICATION}", n.message_id)
        .replace("{MID}", uuid.uuid4().hex)
        .replace("{DATE}", format_datetime(dt.datetime.now(dt.UTC)))
        .replace("\n", "\r\n")
        .encode("utf-8")
    )
    assert deliver(desk, raw, n.reply_to).startswith("250")
    [sent] = to_customer(desk)
    expected = HAND_WRITTEN[name]
    assert body_of(sent) == f"{expected}\n--\n{SIGNATURE}\n"
    assert_nothing_of_ours(body_of(sent), n)
    assert ticket(desk, number).priority == 3


def test_an_answer_the_mta_refuses_for_good_is_told_to_the_agent(desk: Desk) -> None:
    """The transcript said "queued"; when the customer's server refuses the answer for
    good, the agent gets a notice with the reason (and the row says failed)."""
    from aiosmtpd.controller import Controller

    from otrs_mailgate.outbound.outbox import Sender

    from lmtp_helpers import free_port

    class Refusing:
        async def handle_RCPT(self, server, session, envelope, address, options):
            if address == CUSTOMER:
                return "550 5.1.1 <bob@customer.test>: mailbox unavailable"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    _, n, _ = notification(desk)
    assert deliver(desk, shapes.gmail_en(n, ANSWERS["en"]), n.reply_to).startswith("250")
    assert "you are told if it cannot be delivered" in transcript(desk)
    ctl = Controller(Refusing(), hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        import datetime as dt

        from otrs_mailgate.store.models import utcnow

        desk.p.config.smtp.port = ctl.port
        later = utcnow() + dt.timedelta(days=1)  # the daemon deferred them: no MTA then
        Sender(desk.p.config, desk.p.sessions).run_pass(now=later)
    finally:
        ctl.stop()
    with desk.p.sessions() as s:
        rows = {r.kind: r for r in s.execute(select(Outbox)).scalars()}
    assert rows["agent_reply"].status == "failed"
    assert rows["reply_failed"].rcpt_to == ALICE
    [notice] = [m for m in desk.to(ALICE) if str(m["Subject"]).startswith("Not delivered")]
    text = notice.get_content()
    assert "could not be delivered to bob@customer.test" in text
    assert "550 mailbox unavailable" in text or "mailbox unavailable" in text
