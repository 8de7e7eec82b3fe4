"""Agents for tests: a DKIM-signing mail domain, and a desk that reads its outbox."""

from __future__ import annotations

import datetime as dt
import uuid
from email.message import EmailMessage
from email.utils import format_datetime

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from otrs_mailgate.ingest.pipeline import Pipeline, Result
from otrs_mailgate.jobs.scheduler import Scheduler
from otrs_mailgate.outbound.outbox import dkim_txt
from otrs_mailgate.store import db
from otrs_mailgate.tickets import agents

from helpers import outbox_mails

AGENT_DOMAIN = "agents.test"
SELECTOR = "desk"


class SigningDomain:
    """A domain with a DKIM key; dns() answers for its selector like a resolver would."""

    def __init__(self, domain: str = AGENT_DOMAIN, selector: str = SELECTOR) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.domain, self.selector = domain, selector
        self.txt = dkim_txt(public).encode()

    def dns(self, name: bytes | str, timeout: int = 5) -> bytes | None:
        name = name.decode() if isinstance(name, bytes) else name
        return self.txt if name.rstrip(".") == f"{self.selector}._domainkey.{self.domain}" else None

    def sign(self, raw: bytes, headers: list[bytes] | None = None, length: bool = False) -> bytes:
        """A signature as mail clients' servers make it: dkimpy's default set of headers
        (From signed twice, everything a command mail's must cover) unless `headers`
        names others; `length` adds l= (the body's length at signing)."""
        return (
            dkim.sign(
                raw,
                self.selector.encode(),
                self.domain.encode(),
                self.private,
                include_headers=headers,
                length=length,
            )
            + raw
        )


def agent_mail(
    sender: str,
    to: str,
    subject: str,
    body: str,
    *,
    message_id: str | None = None,
    date: dt.datetime | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
    msg["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@{sender.rpartition('@')[2].strip('>')}>"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


class Desk:
    """A pipeline with agents: alice and bob (rw on Hotline), carol (ro)."""

    def __init__(self, pipeline: Pipeline, domain: SigningDomain) -> None:
        self.p = pipeline
        self.domain = domain
        pipeline.dns = domain.dns
        pipeline.ensure_queues()
        hot = pipeline.queue_id("Hotline")
        with db.transaction(pipeline.sessions) as s:
            for login, access in (("alice", "rw"), ("bob", "rw"), ("carol", "ro")):
                agents.add(s, login, f"{login}@{domain.domain}", login.title(), [])
                agents.grant(s, hot, login, access)

    def mails(self) -> list[EmailMessage]:
        return outbox_mails(self.p)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mails() if m["To"].addresses[0].addr_spec == address]

    def reply_address(self, login: str, number: str) -> str:
        """The Reply-To of the newest notification to this agent about this ticket."""
        notes = [
            m
            for m in self.to(f"{login}@{self.domain.domain}")
            if m["Reply-To"] and number in str(m["Subject"]).strip()
        ]
        return str(notes[-1]["Reply-To"])

    def command(
        self,
        login: str,
        number: str,
        subject_extra: str = "",
        body: str = "Thanks, fixed.",
        *,
        sign: bool = True,
        sender: str | None = None,
        to: str | None = None,
        **kwargs: object,
    ) -> tuple[bytes, Result]:
        to = to or self.reply_address(login, number)
        tag = f"[Ticket#{number}{(' ' + subject_extra) if subject_extra else ''}]"
        raw = agent_mail(
            sender or f"{login}@{self.domain.domain}", to, f"Re: {tag} Printer", body, **kwargs
        )  # type: ignore[arg-type]
        if sign:
            raw = self.domain.sign(raw)
        return raw, self.p.deliver_one(raw, to, sender or f"{login}@{self.domain.domain}")


def scheduler(p: Pipeline) -> Scheduler:
    """The jobs as the daemon runs them, with the pipeline's Site and sessions."""
    return Scheduler(lambda: p.site, p.sessions)
