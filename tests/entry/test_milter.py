"""The milter, driven by miltertest (Debian's libmilter test driver) with the Lua scripts in
tests/milter/: every check with the reply the SMTP client would see."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from otrs_mailgate.config.schema import load
from otrs_mailgate.entry import smtpchecks
from otrs_mailgate.entry.milter import MilterServer
from otrs_mailgate.entry.smtpchecks import REFUSED_TOKEN
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.mail import tokens
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Ticket
from otrs_mailgate.tickets import agents

from agent_helpers import SigningDomain, agent_mail
from cli_helpers import cli_process, write_config
from helpers import mail, need
from lmtp_helpers import free_port

SCRIPTS = Path(__file__).resolve().parent / "milter"
UNSIGNED = "not DKIM-signed by your domain, or the signature leaves part of it out"
AUTHSERV = "mx.mailgate.test"
REJECT_TEXT = "Sales takes no new requests by mail; please call us."
QUEUES = f"""
[agents]
authserv_id = "{AUTHSERV}"
dkim_keys = "agent-keys"

[milter]
port = PORT
max_per_hour_sender = 3

[[queue]]
name = "Sales"
addresses = ["sales@example.com"]
new_tickets = "reject"
reject_text = "{REJECT_TEXT}"
"""


class Milter:
    """The milter of a test: its server in a thread of its own, data to talk about."""

    def __init__(self, tmp_path: Path, db_url: str) -> None:
        need(shutil.which("miltertest") is not None, "miltertest is not installed")
        self.tmp = tmp_path
        self.port = free_port()
        self.signer = SigningDomain()
        (tmp_path / "agent-keys").write_text(
            f"desk._domainkey.agents.test {self.signer.txt.decode()}\n"
        )
        self.cfg = write_config(
            tmp_path / "otrs-mailgate.toml", db_url, QUEUES.replace("PORT", str(self.port))
        )
        text = self.cfg.read_text().replace(
            'addresses = ["hotline@example.com"]',
            'addresses = ["hotline@example.com"]\nmax_message_size = 4096',
        )
        self.cfg.write_text(text)
        self.pipeline = Pipeline(load(self.cfg))
        self.pipeline.ensure_queues()
        with db.transaction(self.pipeline.sessions) as s:
            alice = agents.add(s, "alice", "alice@agents.test", "Alice", [])
            agents.grant(s, self.pipeline.queue_id("Hotline"), "alice", "rw")
        self.number = self.pipeline.deliver_one(
            mail("Printer", sender="cus@customer.test"), "hotline@example.com"
        ).ticket_number
        with self.pipeline.sessions() as s:
            ticket_id = s.execute(select(Ticket.id).where(Ticket.number == self.number)).scalar()
        expires = dt.date.today() + dt.timedelta(days=30)
        token = tokens.make(alice.secret, alice.id, ticket_id, "command", expires)
        self.token_address = tokens.address("hotline@example.com", token)

    def file(self, name: str, raw: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(raw)
        return str(path)

    def run(self, script: str, **params: str) -> str:
        args = ["miltertest", "-D", f"port={self.port}", "-D", f"lib={SCRIPTS / 'lib.lua'}"]
        for name, value in params.items():
            args += ["-D", f"{name}={value}"]
        proc = subprocess.run(
            [*args, "-s", str(SCRIPTS / script)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"{script}: {proc.stdout}{proc.stderr}"
        return proc.stdout


@pytest.fixture
def milter(tmp_path: Path, db_url: str) -> Iterator[Milter]:
    """The milter server in a thread with its own event loop, as `serve` runs it."""
    m = Milter(tmp_path, db_url)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = MilterServer(m.pipeline)
    asyncio.run_coroutine_threadsafe(server.start("127.0.0.1", m.port), loop).result(10)
    yield m
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    m.pipeline.engine.dispose()


def signed(m: Milter, sender: str, to: str, subject: str, body: str = "Fixed.\n") -> bytes:
    return m.signer.sign(agent_mail(sender, to, subject, body))


def test_dkim_results_replace_forged_ones(milter: Milter) -> None:
    forged = {"Authentication-Results": f"{AUTHSERV}; dkim=pass header.d=agents.test"}
    good = milter.signer.sign(
        agent_mail("alice@agents.test", "hotline@example.com", "Hello", "Hi.\n", headers=forged)
    )
    milter.run(
        "dkim.lua",
        authserv=AUTHSERV,
        signed=milter.file("signed.eml", good),
        tampered=milter.file("tampered.eml", good.replace(b"Hi.", b"Hi!")),
        unsigned=milter.file("unsigned.eml", mail("Hello", sender="alice@agents.test")),
    )


def test_command_mail_to_a_reply_address(milter: Milter) -> None:
    subject = f"Re: [Ticket#{milter.number} note] Printer"
    milter.run(
        "token.lua",
        token_address=milter.token_address,
        forged=milter.file("forged.eml", agent_mail("bob@agents.test", "x", subject, "Mine.\n")),
        good=milter.file("good.eml", signed(milter, "alice@agents.test", "x", subject)),
        reason=REFUSED_TOKEN.text,  # one text whatever failed; the reasons are logged
    )


def test_issue_19_address_forms_plus_addresses_glued_results_doubled_headers(
    milter: Milter, caplog: pytest.LogCaptureFixture
) -> None:
    subject = f"Re: [Ticket#{milter.number} note] Printer"
    good = signed(milter, "alice@agents.test", "x", subject)
    doubled = f"Subject: Re: [Ticket#{milter.number} close] Printer\r\n".encode() + good
    glued = {"Authentication-Results": f"{AUTHSERV}(x); dkim=pass header.d=agents.test"}
    caplog.set_level("INFO", "otrs_mailgate.entry.milter")
    milter.run(
        "forms.lua",
        token_address=milter.token_address,
        unsigned=milter.file("unsigned.eml", agent_mail("bob@agents.test", "x", subject, "x")),
        glued=milter.file("glued.eml", mail("Hello", sender="cus@customer.test", headers=glued)),
        doubled=milter.file("doubled.eml", doubled),
    )
    logged = caplog.text
    assert "From is bob@agents.test, not the agent's address" in logged  # told the log only
    assert "the mail has 2 Subject headers" in logged


def test_our_own_x_loop_is_refused(milter: Milter) -> None:
    milter.run("loop.lua")


def test_size_limit_of_the_queue(milter: Milter) -> None:
    milter.run("size.lua")


def test_too_many_mails_from_one_sender_tempfail(milter: Milter) -> None:
    milter.run(
        "rate.lua", plain=milter.file("plain.eml", mail("Again", sender="busy@customer.test"))
    )


def test_queue_without_new_tickets_refuses_strangers(milter: Milter) -> None:
    followup = mail(
        f"Re: [Ticket#{milter.number}] Printer",
        sender="stranger@else.test",
        to="sales@example.com",
        headers={"X-OTRS-Mailgate-Ticket": "2026010110000019"},
    )
    milter.run(
        "newtickets.lua",
        reject_text=REJECT_TEXT,
        number=milter.number,
        stranger=milter.file("s.eml", mail("Offer", sender="stranger@else.test")),
        customer=milter.file("c.eml", mail("Offer", sender="cus@customer.test")),
        followup=milter.file("f.eml", followup),
    )


def test_a_crashing_check_tempfails_only_that_message(milter: Milter, monkeypatch) -> None:
    real = smtpchecks.Message._end
    calls = []

    def end(self):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in a check")
        return real(self)

    monkeypatch.setattr(smtpchecks.Message, "_end", end)
    milter.run("crash.lua", plain=milter.file("plain.eml", mail("Hello")))
    assert len(calls) == 2


def test_many_connections_at_once(milter: Milter) -> None:
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        runs = [pool.submit(milter.run, "loop.lua") for _ in range(40)]
        for run in runs:
            run.result()  # every one got its own, right answers


def test_otrs_mailgate_milter_runs_alone_and_stops_on_sigterm(tmp_path: Path, db_url: str) -> None:
    m = Milter(tmp_path, db_url)
    proc = cli_process(m.cfg, "milter")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", m.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        m.run("loop.lua")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert b"milter listening" in proc.stderr.read()  # type: ignore[union-attr]


def test_client_limit_and_a_switched_off_check(tmp_path: Path, db_url: str) -> None:
    """The per-client limit counts across senders; `loops = false` lets X-Loop through."""
    m = Milter(tmp_path, db_url)
    m.pipeline.config.milter.max_per_hour_client = 2
    m.pipeline.config.milter.loops = False
    gate = smtpchecks.Gate(m.pipeline)

    async def one(sender: str) -> smtpchecks.Reply | smtpchecks.Edits:
        message = gate.message("192.0.2.9")
        message.mail_from(f"<{sender}>", [])
        refused = await message.rcpt("<hotline@example.com>")
        if refused:
            return refused
        message.header("From", f" {sender}".encode())
        message.header("X-Loop", b" hotline@example.com")
        return await message.end()

    async def three() -> list[smtpchecks.Reply | smtpchecks.Edits]:
        return [await one(f"s{i}@customer.test") for i in range(3)]

    first, second, third = asyncio.run(three())
    assert isinstance(first, smtpchecks.Edits) and isinstance(second, smtpchecks.Edits)
    assert str(third) == "451 4.7.1 too many mails from 192.0.2.9, try again later"
    m.pipeline.engine.dispose()


def test_the_daemon_believes_the_results_the_milter_writes() -> None:
    from otrs_mailgate.ingest import auth
    from otrs_mailgate.mail.parse import parse

    found = [auth.Signature("agents.test", "desk", "pass")]
    value = smtpchecks._results(AUTHSERV, found)
    assert value == f"{AUTHSERV}; dkim=pass header.d=agents.test header.s=desk"
    raw = agent_mail("alice@agents.test", "x@example.com", "s", "b", headers={smtpchecks.AR: value})
    assert auth.trusted_results(parse(raw), AUTHSERV, "agents.test")[0]
    assert not auth.trusted_results(parse(raw), "other.example", "agents.test")[0]
    failed = smtpchecks._results(AUTHSERV, [auth.Signature("agents.test", "desk", "fail", "bad")])
    raw = agent_mail(
        "alice@agents.test", "x@example.com", "s", "b", headers={smtpchecks.AR: failed}
    )
    assert not auth.trusted_results(parse(raw), AUTHSERV, "agents.test")[0]


def test_smtputf8_sender_and_odd_client_names_keep_the_connection(milter: Milter) -> None:
    idn = (
        "From: Jörg <jörg@exämple.de>\r\nTo: hotline@example.com\r\nSubject: Grüße\r\n\r\nHallo\r\n"
    )
    milter.run("utf8.lua", idn=milter.file("idn.eml", idn.encode()))


def test_command_mail_signed_over_too_little_is_refused(milter: Milter) -> None:
    subject = f"Re: [Ticket#{milter.number} close] Printer"
    raw = agent_mail("alice@agents.test", "x", subject, "Fixed.\n")
    signed = milter.signer.sign(raw, length=True)
    milter.run(
        "coverage.lua",
        token_address=milter.token_address,
        reason=f"{REFUSED_TOKEN.text}: {UNSIGNED}",
        narrow=milter.file("narrow.eml", milter.signer.sign(raw, headers=[b"from"])),
        partial=milter.file("partial.eml", signed + b"Pay to IBAN DE00 first.\r\n"),
        added=milter.file("added.eml", b"Cc: eve@evil.test\r\n" + milter.signer.sign(raw)),
        good=milter.file("good.eml", signed),
    )


def test_an_agents_unsigned_reply_is_refused_naming_the_class(milter: Milter) -> None:
    """Issue 27: an agent's first reply without DKIM read "this reply address does not take
    this mail", like a wrong address; the refusal now says what kind of mistake it was
    (bob, who is not the agent, still learns nothing: see forms.lua)."""
    subject = f"Re: [Ticket#{milter.number} note] Printer"
    milter.run(
        "token.lua",
        token_address=milter.token_address,
        forged=milter.file("forged.eml", agent_mail("alice@agents.test", "x", subject, "Hi.\n")),
        good=milter.file("good.eml", signed(milter, "alice@agents.test", "x", subject)),
        reason=f"{REFUSED_TOKEN.text}: {UNSIGNED}",
    )
