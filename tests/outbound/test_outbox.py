"""The outbox sender: SMTP to the local MTA, backoff on 4xx, history on 5xx, DKIM, once only."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading
import time
from pathlib import Path

import dkim
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.outbound.outbox import Sender, dkim_keygen
from otrs_mailgate.store import db
from otrs_mailgate.store.models import History, MessageRef, Outbox, Ticket, utcnow

from helpers import mail, make_config
from lmtp_helpers import RawLMTP, free_port, running

HOT = "hotline@example.com"


class Sink:
    """An SMTP server that answers RCPT with a scripted code per recipient."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.script: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, options):
        reply = self.script.get(address, "250 OK")
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server, session, envelope):
        self.received.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 2.0.0 queued"


@pytest.fixture
def sink():
    handler = Sink()
    port = free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    handler.port = port
    yield handler
    ctl.stop()


def _setup(db_url: str, port: int, **extra):
    config = make_config(db_url, smtp={"port": port, "backoff_seconds": 60}, **extra)
    pipeline = Pipeline(config)
    return config, pipeline, Sender(config, pipeline.sessions)


def _rows(pipeline: Pipeline) -> list[Outbox]:
    with pipeline.sessions() as s:
        return s.execute(select(Outbox).order_by(Outbox.id)).scalars().all()


def test_sends_ack_and_remembers_message_id(db_url: str, sink: Sink) -> None:
    _, pipeline, sender = _setup(db_url, sink.port)
    n = pipeline.deliver_one(mail("Printer", sender="alice@customer.test"), HOT).ticket_number
    assert sender.run_pass().sent == 1
    [(mail_from, rcpts, data)] = sink.received
    assert (mail_from, rcpts) == (HOT, ["alice@customer.test"])
    assert f"[Ticket#{n}]".encode() in data
    [row] = _rows(pipeline)
    assert row.status == "sent" and row.sent_at is not None
    assert sender.run_pass().sent == 0  # sent once
    with pipeline.sessions() as s:
        ref = s.execute(select(MessageRef).where(MessageRef.direction == "out")).scalar_one()
    assert ref.message_id == row.message_id and ref.message_id.endswith("@mailgate.test")


def test_4xx_backs_off_then_sends(db_url: str, sink: Sink) -> None:
    _, pipeline, sender = _setup(db_url, sink.port)
    sink.script["alice@customer.test"] = "451 4.7.1 greylisted"
    pipeline.deliver_one(mail("x", sender="alice@customer.test"), HOT)
    assert sender.run_pass().retried == 1
    [row] = _rows(pipeline)
    assert row.status == "queued" and row.attempts == 1 and "451" in row.last_error
    wait = row.next_attempt_at - utcnow()
    assert dt.timedelta(seconds=50) < wait <= dt.timedelta(seconds=60)
    assert sender.run_pass().sent == 0  # not due yet
    later = utcnow() + dt.timedelta(seconds=61)
    sink.script.clear()
    assert sender.run_pass(now=later).sent == 1
    assert _rows(pipeline)[0].status == "sent"


def test_second_4xx_doubles_the_delay(db_url: str, sink: Sink) -> None:
    _, pipeline, sender = _setup(db_url, sink.port)
    sink.script["alice@customer.test"] = "450 try later"
    pipeline.deliver_one(mail("x", sender="alice@customer.test"), HOT)
    sender.run_pass()
    first = _rows(pipeline)[0].next_attempt_at
    sender.run_pass(now=first + dt.timedelta(seconds=1))
    row = _rows(pipeline)[0]
    assert row.attempts == 2
    assert row.next_attempt_at - first >= dt.timedelta(seconds=119)


def test_5xx_fails_and_lands_in_history(db_url: str, sink: Sink) -> None:
    _, pipeline, sender = _setup(db_url, sink.port)
    sink.script["alice@customer.test"] = "550 5.1.1 no such user"
    pipeline.deliver_one(mail("x", sender="alice@customer.test"), HOT)
    assert sender.run_pass().failed == 1
    row = _rows(pipeline)[0]
    assert row.status == "failed" and row.last_error.startswith("550")
    with pipeline.sessions() as s:
        h = s.execute(select(History).where(History.type == "SendFailed")).scalar_one()
    assert "no such user" in h.detail
    assert sender.run_pass().failed == 0


def test_mta_down_defers_everything_once(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    _, pipeline, sender = _setup(db_url, free_port())
    for i in range(3):
        pipeline.deliver_one(mail(f"x{i}", sender=f"c{i}@customer.test"), HOT)
    caplog.set_level("DEBUG", "otrs_mailgate.outbound.outbox")
    result = sender.run_pass()
    assert result.retried == 3
    assert all("MTA unreachable" in r.last_error for r in _rows(pipeline))
    with db.transaction(pipeline.sessions) as s:  # due again at once
        s.execute(update(Outbox).values(next_attempt_at=utcnow()))
    assert sender.run_pass().retried == 3
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1, "an MTA that stays down is said once, not once a pass"
    assert "`otrs-mailgate outbox list` shows them" in warned[0].getMessage()
    assert sender.where().startswith("SMTP 127.0.0.1:")


def test_dkim_signature_verifies(db_url: str, sink: Sink, tmp_path: Path) -> None:
    key = tmp_path / "dkim.key"
    record = dkim_keygen(key, "sel1", "mailgate.test")
    assert key.stat().st_mode & 0o777 == 0o600
    strings = record.split('"')[1::2]  # quoted strings of at most 255 characters (BIND)
    assert len(strings) > 1 and max(len(s) for s in strings) <= 255
    txt = "".join(strings)
    _, pipeline, sender = _setup(db_url, sink.port, dkim={"selector": "sel1", "key_file": str(key)})
    pipeline.deliver_one(mail("signed", sender="alice@customer.test"), HOT)
    sender.run_pass()
    data = sink.received[0][2]
    assert data.startswith(b"DKIM-Signature:")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sel1._domainkey.mailgate.test."
        return txt.encode()

    assert dkim.verify(data, dnsfunc=dns)
    assert not dkim.verify(data.replace(b"signed", b"forged"), dnsfunc=dns)


def _sender_pass(db_url: str, port: int) -> int:
    config = make_config(db_url, smtp={"port": port})
    pipeline = Pipeline(config)
    sender = Sender(config, pipeline.sessions)
    total = 0
    for _ in range(20):
        total += sender.run_pass(limit=5).sent
    pipeline.engine.dispose()
    return total


def test_several_senders_send_each_row_once(db_url: str, sink: Sink) -> None:
    _, pipeline, _ = _setup(db_url, sink.port)
    for i in range(40):
        pipeline.deliver_one(mail(f"x{i}", sender=f"c{i}@customer.test"), HOT)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        counts = pool.starmap(_sender_pass, [(db_url, sink.port)] * 4)
    assert sum(counts) == 40
    assert len(sink.received) == 40
    assert len({d for _, _, d in sink.received}) == 40
    assert all(r.status == "sent" for r in _rows(pipeline))


def test_crashed_sender_lease_expires(db_url: str, sink: Sink) -> None:
    _, pipeline, sender = _setup(db_url, sink.port)
    pipeline.deliver_one(mail("x", sender="alice@customer.test"), HOT)
    with db.transaction(pipeline.sessions) as s:  # a sender claimed it and died
        s.execute(
            update(Outbox).values(
                status="sending", next_attempt_at=utcnow() + dt.timedelta(minutes=10)
            )
        )
    assert sender.run_pass().sent == 0
    assert sender.run_pass(now=utcnow() + dt.timedelta(minutes=11)).sent == 1


def test_a_response_that_cannot_be_rendered_fails_on_the_ticket(
    db_url: str, sink: Sink, tmp_path: Path
) -> None:
    """Responses are rendered when sent: a template broken since is a permanent failure
    recorded on the ticket, and the row keeps its spec for a later look."""
    import shutil

    from otrs_mailgate.config.locate import template_dirs

    broken = tmp_path / "templates"
    shutil.copytree(template_dirs(make_config(db_url))[0], broken)
    _, pipeline, _ = _setup(db_url, sink.port)
    n = pipeline.deliver_one(mail("x", sender="alice@customer.test"), HOT).ticket_number
    (broken / "mail" / "en" / "acknowledgement.txt.j2").write_text("{{ no_such_variable }}\n")
    sender = Sender(
        make_config(db_url, smtp={"port": sink.port}, system={"templates": str(broken)}),
        pipeline.sessions,
    )
    result = sender.run_pass()
    assert (result.sent, result.failed) == (0, 1)
    assert sink.received == []
    [row] = _rows(pipeline)
    assert row.status == "failed" and "cannot compose acknowledgement" in row.last_error
    assert "no_such_variable" in row.last_error
    assert row.spec and row.data is None  # nothing lost: the decision is still there
    with pipeline.sessions() as s:
        failed = s.execute(select(History).where(History.type == "SendFailed")).scalar_one()
        number = s.execute(select(Ticket.number).where(Ticket.id == failed.ticket_id)).scalar_one()
    assert number == n


def test_sent_row_keeps_the_bytes_it_sent(db_url: str, sink: Sink) -> None:
    _, pipeline, sender = _setup(db_url, sink.port)
    pipeline.deliver_one(mail("Printer", sender="alice@customer.test"), HOT)
    [row] = _rows(pipeline)
    assert row.data is None and '"template": "acknowledgement"' in row.spec
    sender.run_pass()
    [row] = _rows(pipeline)
    [(_, _, data)] = sink.received
    assert row.data is not None and data.replace(b"\r\n", b"\n").endswith(
        row.data.replace(b"\r\n", b"\n")
    )


def test_database_gone_after_a_send_keeps_the_outcome_and_sends_nothing_twice(
    db_url: str, sink: Sink, monkeypatch
) -> None:
    """The MTA took the first mail, then the database went away: the outcome waits in
    the sender, the rest of the pass is given back unsent, and once the database
    answers every row is sent exactly once (not again after the lease)."""
    from otrs_mailgate.outbound import outbox

    _, pipeline, sender = _setup(db_url, sink.port)
    for i in range(3):
        pipeline.deliver_one(mail(f"Case {i}", sender=f"c{i}@customer.test"), HOT)
    real = db.transaction
    down = {"on": False}

    def flaky(sessions):  # the database fails from the first record on
        if down["on"]:
            raise db.TemporaryFailure("server closed the connection")
        return real(sessions)

    real_sendmail = outbox.smtplib.SMTP.sendmail

    def sendmail(self, *args, **kwargs):
        out = real_sendmail(self, *args, **kwargs)
        down["on"] = True  # gone right after the MTA said 250
        return out

    monkeypatch.setattr(outbox.db, "transaction", flaky)
    monkeypatch.setattr(outbox.smtplib.SMTP, "sendmail", sendmail)
    monkeypatch.setattr(outbox, "RECORD_EVERY", 1)  # record each row before the next
    with pytest.raises(db.TemporaryFailure):  # outcomes kept: the loop comes back soon
        sender.run_pass()
    assert len(sink.received) == 1
    with pytest.raises(db.TemporaryFailure):
        sender.run_pass()  # still down: nothing claimed, nothing sent
    assert len(sink.received) == 1
    monkeypatch.setattr(outbox.smtplib.SMTP, "sendmail", real_sendmail)
    down["on"] = False
    result = sender.run_pass()  # the kept outcome first, then the rows given back
    assert len(sink.received) == 3 and result.sent == 2  # the first counted when it went
    assert sorted(r.status for r in _rows(pipeline)) == ["sent"] * 3
    assert sorted(rcpts[0] for _, rcpts, _ in sink.received) == [
        f"c{i}@customer.test" for i in range(3)
    ]
    later = utcnow() + dt.timedelta(hours=1)  # long after any lease
    assert sender.run_pass(now=later).sent == 0 and len(sink.received) == 3


def test_outcomes_are_recorded_together_not_one_transaction_a_mail(
    db_url: str, sink: Sink, monkeypatch
) -> None:
    """30 mails sent in one pass: one transaction claims them, one records them all (a
    transaction a mail waited behind every group commit on SQLite and starved the
    sender under load); each sent once."""
    from otrs_mailgate.outbound import outbox

    _, pipeline, sender = _setup(db_url, sink.port)
    for i in range(30):
        pipeline.deliver_one(mail(f"Case {i}", sender=f"c{i}@customer.test"), HOT)
    real = db.transaction
    opened = []

    def counting(sessions):
        opened.append(1)
        return real(sessions)

    monkeypatch.setattr(outbox.db, "transaction", counting)
    assert sender.run_pass().sent == 30
    assert len(sink.received) == 30
    assert len(opened) <= 3  # the claim, the outcomes (and one more if a send took 0.2 s)
    assert sorted(r.status for r in _rows(pipeline)) == ["sent"] * 30
    assert sender.run_pass(now=utcnow() + dt.timedelta(hours=1)).sent == 0
    assert len(sink.received) == 30


def test_the_daemon_sends_over_several_connections_each_mail_once(db_url: str, sink: Sink) -> None:
    """Four senders in one daemon claim their own rows: 60 acknowledgements, each sent once."""
    config = make_config(db_url, smtp={"connections": 4})
    with running(config, mta=sink.port) as daemon:
        assert len(daemon.senders) == 4
        client = RawLMTP(config.lmtp.port)
        client.cmd("LHLO test")
        for i in range(60):
            _, replies = client.send(
                f"c{i}@customer.test", [HOT], mail(f"Case {i}", sender=f"c{i}@customer.test")
            )
            assert replies[0].startswith("250")
        client.close()
        deadline = dt.datetime.now() + dt.timedelta(seconds=60)
        while len(sink.received) < 60 and dt.datetime.now() < deadline:
            threading.Event().wait(0.1)
    assert sorted(rcpts[0] for _, rcpts, _ in sink.received) == sorted(
        f"c{i}@customer.test" for i in range(60)
    )
    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        assert [r.status for r in conn.execute(select(Outbox.status))] == ["sent"] * 60
    engine.dispose()


def test_mail_that_queues_no_answer_wakes_no_sender(db_url: str, sink: Sink, monkeypatch) -> None:
    """Four connections, 30 mails from one address: the loop limit lets 10 answers out.
    Only a commit that queued mail wakes a sender, and only one: every commit woke all
    four before (120 passes), a write transaction each on SQLite."""
    from otrs_mailgate import daemon as daemon_mod
    from otrs_mailgate.outbound.outbox import Sender

    passes = []
    real = Sender.run_pass

    def counted(self, *args, **kwargs):
        passes.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Sender, "run_pass", counted)
    config = make_config(db_url, smtp={"connections": 4})
    started = time.monotonic()
    with running(config, mta=sink.port):
        client = RawLMTP(config.lmtp.port)
        client.cmd("LHLO test")
        for i in range(30):
            _, replies = client.send(
                "c@customer.test", [HOT], mail(f"Case {i}", sender="c@customer.test")
            )
            assert replies[0].startswith("250")
        client.close()
        deadline = time.monotonic() + 30
        while len(sink.received) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - started
    assert len(sink.received) == 10  # each answer sent, once
    idle_looks = 4 * (2 + took / daemon_mod.OUTBOX_IDLE)  # at start, then every OUTBOX_IDLE
    assert len(passes) <= 10 + idle_looks, (len(passes), took)
