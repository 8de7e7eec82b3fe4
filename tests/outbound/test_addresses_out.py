"""Issue 25, item 1: every address the parser accepts gives an outgoing mail or a clean,
isolated `failed` row; one row never stops the pass or holds another in `sending`."""

from __future__ import annotations

import json
import signal
import time
import uuid

import pytest
from aiosmtpd.controller import Controller
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.mail import addresses
from otrs_mailgate.mail.parse import parse
from otrs_mailgate.outbound.outbox import Sender, split_recipients
from otrs_mailgate.store import db
from otrs_mailgate.store.models import History, Outbox
from otrs_mailgate.tickets import agents

from agent_helpers import agent_mail
from cli_helpers import cli, write_config
from helpers import mail, make_config
from lmtp_helpers import free_port, serve

HOT = "hotline@example.com"


class Sink:
    """An SMTP server that keeps what it is given (envelope and bytes)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes, list[str]]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received.append(
            (
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                list(envelope.mail_options),
            )
        )
        return "250 2.0.0 queued"


def sink_server(smtputf8: bool) -> tuple[Sink, Controller]:
    handler = Sink()
    ctl = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        enable_SMTPUTF8=smtputf8,
        decode_data=False,
    )
    ctl.start()
    return handler, ctl


# (From as customers write it, the address our answer goes to; None: filed, never answered)
CUSTOMERS = [
    ("Claudia <Claudia.Shu@yahoo.com.>", "claudia.shu@yahoo.com"),
    ("Normal <normal@customer.test>", "normal@customer.test"),
    ('"a b" <"a b"@customer.test>', '"a b"@customer.test'),
    ("<@relay.example:route@customer.test>", "route@customer.test"),
    ("dots <a..b@customer.test>", '"a..b"@customer.test'),
    ("Jörg <jörg@exämple.de>", "jörg@xn--exmple-cua.de"),
    ("Broken <x@-bad-.test>", None),
]


def _rows(db_url: str) -> list:
    engine = db.make_engine(db_url)  # the SQLite build that reads the WAL
    with engine.connect() as conn:
        rows = conn.execute(select(Outbox).order_by(Outbox.id)).all()
    engine.dispose()
    return rows


def _wait_settled(db_url: str, proc, timeout: float = 30) -> list:
    deadline = time.monotonic() + timeout
    while True:
        rows = _rows(db_url)
        if rows and all(r.status in ("sent", "failed") for r in rows):
            return rows
        assert time.monotonic() < deadline, (
            [(r.id, r.rcpt_to, r.status, r.last_error) for r in rows],
            proc.log_path.read_text(),
        )
        time.sleep(0.2)


@pytest.mark.parametrize("smtputf8", [True, False], ids=["smtputf8", "no-smtputf8"])
def test_odd_customer_addresses_never_stall_serves_outbox(tmp_path, db_url, smtputf8) -> None:
    """The reproduction of the issue: the mails stored with `deliver --direct`, then `serve`
    with an SMTP sink: every answerable customer gets an acknowledgement, the one that
    cannot be answered is filed with the reason, the non-ASCII one goes with SMTPUTF8 or
    fails alone with a reason naming it, and nothing stays `sending`."""
    sink, ctl = sink_server(smtputf8)
    try:
        cfg = write_config(tmp_path / "c.toml", db_url, f"[smtp]\nport = {ctl.port}\n")
        for sender, _ in CUSTOMERS:
            raw = mail("Hello", sender=sender)
            proc = cli(cfg, "deliver", "--direct", "--recipient", HOT, stdin=raw)
            assert proc.returncode == 0, proc.stderr
        daemon = serve(cfg)
        try:
            rows = _wait_settled(db_url, daemon)
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
        log = daemon.log_path.read_text()
    finally:
        ctl.stop()
    assert "Traceback" not in log
    by_to = {split_recipients(r.rcpt_to)[0]: r for r in rows}
    answered = [to for _, to in CUSTOMERS if to is not None]
    assert set(by_to) == set(answered)  # the unanswerable one has no row at all
    # smtplib writes <a..b@customer.test> for "a..b"@customer.test: the same mailbox
    sent = {addresses.canonical(rcpt[0]): (data, o) for _, rcpt, data, o in sink.received}
    for to in answered:
        row = by_to[to]
        if to.isascii() or smtputf8:
            assert row.status == "sent", (to, row.last_error)
            data, options = sent[to]
            assert parse(data).to == [to]
            assert ("SMTPUTF8" in options) == (not to.isascii())
        else:
            assert row.status == "failed" and to not in sent
            assert row.last_error.startswith("553 5.6.7") and "SMTPUTF8" in row.last_error
    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        suppressed = conn.execute(
            select(History.detail).where(History.type == "AutoResponseSuppressed")
        ).scalars()
        reasons = [str(d) for d in suppressed]
    engine.dispose()
    assert any("cannot be answered" in r and "-bad-" in r for r in reasons), reasons


def test_a_failed_row_is_shown_and_retried_by_the_cli(tmp_path, db_url) -> None:
    """A row that failed for want of SMTPUTF8: `outbox list` gives the reason, `outbox
    retry ID` makes it due again, and a pass against an MTA that offers it sends it."""
    plain, ctl = sink_server(False)
    cfg = write_config(tmp_path / "c.toml", db_url, f"[smtp]\nport = {ctl.port}\n")
    raw = mail("Hi", sender="jörg@exämple.de")
    assert cli(cfg, "deliver", "--direct", "--recipient", HOT, stdin=raw).returncode == 0
    assert cli(cfg, "outbox", "send").returncode == 0
    ctl.stop()
    listing = cli(cfg, "outbox", "list").stdout.decode()
    assert "failed" in listing and "5.6.7" in listing and "SMTPUTF8" in listing
    [row] = _rows(db_url)
    assert row.status == "failed" and plain.received == []
    utf8, ctl = sink_server(True)
    try:
        cfg = write_config(tmp_path / "c.toml", db_url, f"[smtp]\nport = {ctl.port}\n")
        retried = cli(cfg, "outbox", "retry", str(row.id))
        assert retried.returncode == 0 and b"1 mail(s) due again" in retried.stdout
        assert cli(cfg, "outbox", "send").returncode == 0
    finally:
        ctl.stop()
    [row] = _rows(db_url)
    assert row.status == "sent" and len(utf8.received) == 1


def test_a_row_that_raises_anything_fails_alone_and_the_pass_goes_on(db_url, monkeypatch) -> None:
    """Whatever a row's composing throws (not only template errors), the pass records it as
    that row's failure and sends the rows after it; none is left `sending`."""
    sink, ctl = sink_server(False)
    try:
        config = make_config(db_url, smtp={"port": ctl.port})
        pipeline = Pipeline(config)
        for i in range(3):
            pipeline.deliver_one(mail(f"m{i}", sender=f"c{i}@customer.test"), HOT)
        sender = Sender(config, pipeline.sessions)
        real = sender.responder.compose

        def compose(response, message_id, date):
            if response.to == "c1@customer.test":
                raise RuntimeError("a bug that only this row meets")
            return real(response, message_id, date)

        monkeypatch.setattr(sender.responder, "compose", compose)
        result = sender.run_pass()
    finally:
        ctl.stop()
    assert (result.sent, result.failed) == (2, 1)
    rows = _rows(db_url)
    assert [r.status for r in rows] == ["sent", "failed", "sent"]
    assert "RuntimeError: a bug that only this row meets" in rows[1].last_error
    assert {rcpt[0] for _, rcpt, _, _ in sink.received} == {"c0@customer.test", "c2@customer.test"}


# -- any address the parser accepts --------------------------------------------------------

_ATOM = st.text(alphabet="abcXYZ019!#$%&'*+-/=?^_`{|}~.", min_size=1, max_size=12)
_ODD_LOCAL = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=10
)
_DOMAIN = st.sampled_from(
    ["customer.test", "Customer.TEST.", "exämple.de", "[192.0.2.7]", "x", "-bad.test", "a..b", ""]
)


@st.composite
def header_addresses(draw) -> str:
    """An address header's value in forms real mail and RFC 5322's obsolete syntax use."""
    local = draw(st.one_of(_ATOM, _ODD_LOCAL))
    quoted = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    spec = f"{draw(st.sampled_from([local, quoted]))}@{draw(_DOMAIN)}"
    name = draw(st.text(max_size=30))
    form = draw(st.integers(0, 4))
    return [
        spec,
        f"{name} <{spec}>",
        f'"{name}" <{spec}>',
        f"<@relay.test:{spec}>",
        f"{spec} ({name})",
    ][form]


@pytest.fixture(scope="module")
def desk_for_properties(tmp_path_factory, sqlite_template):
    """One database, pipeline, agent and SMTPUTF8 sink for every example."""
    import shutil

    path = tmp_path_factory.mktemp("prop") / "p.sqlite"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    _sink, ctl = sink_server(True)
    config = make_config(
        url, smtp={"port": ctl.port}, agents={"dkim": "optional", "date_window_hours": 48}
    )
    pipeline = Pipeline(config)
    pipeline.ensure_queues()
    with db.transaction(pipeline.sessions) as s:
        agents.add(s, "pat", "pat@agents.test", "Pat", [])
        agents.grant(s, pipeline.queue_id("Hotline"), "pat", "rw")
    yield url, pipeline, Sender(config, pipeline.sessions)
    ctl.stop()
    pipeline.engine.dispose()


def _reply_to(db_url: str, agent: str) -> str:
    rows = [r for r in _rows(db_url) if split_recipients(r.rcpt_to) == [agent]]
    spec = json.loads(rows[-1].spec)
    return spec["reply_to"]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    sender=header_addresses(),
    reply_to=header_addresses(),
    cc=header_addresses(),
    subject=st.text(max_size=60),
)
def test_any_accepted_address_composes_or_fails_cleanly(
    desk_for_properties, sender, reply_to, cc, subject
) -> None:
    """From/Reply-To/Cc of any form: the acknowledgement and the agents' notifications
    compose, or the row fails with its reason; an agent's `cc+=` of the same address gives
    a transcript and an answer that compose or fail cleanly; never an exception out of
    the pass, never a row left `sending`."""
    url, pipeline, outgoing = desk_for_properties
    with db.transaction(pipeline.sessions) as s:
        s.execute(text("DELETE FROM message_ref WHERE direction = 'out'"))
        s.execute(text("DELETE FROM outbox"))
    raw = (
        f"From: {sender}\r\nReply-To: {reply_to}\r\nCc: {cc}\r\nTo: {HOT}\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{uuid.uuid4().hex}@customer.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
    ).encode("utf-8", "surrogateescape")
    parsed = parse(raw)
    number = pipeline.deliver_one(raw, HOT, "bounce@customer.test").ticket_number
    who = parsed.from_addr
    if number and who and who.isprintable() and " " not in who:  # the agent copies them in
        token = _reply_to(url, "pat@agents.test")
        command = agent_mail(
            "pat@agents.test", token, f"Re: [Ticket#{number} cc+={parsed.from_addr}] x", "Ok."
        )
        pipeline.deliver_one(command, token, "pat@agents.test")
        transcripts = [r for r in _rows(url) if r.kind.startswith("transcript")]
        assert transcripts, [r.kind for r in _rows(url)]
    result = outgoing.run_pass()
    rows = _rows(url)
    assert result.claimed == len(rows)
    for row in rows:
        assert row.status in ("sent", "failed"), (row.rcpt_to, row.status, row.last_error)
        if row.status == "failed":
            assert row.last_error, row
    acks = [r for r in rows if r.kind == "acknowledgement"]
    for ack in acks:  # only an answerable address gets one, and then it goes out
        assert addresses.canonical(ack.rcpt_to) == ack.rcpt_to
        assert ack.status == "sent", (ack.rcpt_to, ack.last_error)
    try:
        answerable = bool(parsed.from_addr) and bool(addresses.canonical(parsed.from_addr))
    except addresses.Unanswerable:
        answerable = False
    if answerable:
        assert [a.rcpt_to for a in acks] == [parsed.from_addr]
