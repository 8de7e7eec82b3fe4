"""What the milter checks while the sender is still connected, and what it answers.

Refusing at SMTP time what the daemon would refuse later means no backscatter:
the sender's own MTA tells the sender why.  Checks, in the order they can act:

- Every address is first put in the form Postfix delivers it (quoted local part,
  trailing dot, source route, user%domain: mail/addresses.py), so no form of one
  of our addresses passes as somebody else's.
- RCPT to one of our addresses: more than max_per_hour_* accepted mails this hour
  from the envelope sender or the client IP -> 451 4.7.1; a SIZE= over the
  queue's limit -> 552 5.3.4; an agent's reply address whose token is invalid,
  expired, foreign (no agent of ours) or whose agent is disabled -> 550 5.7.1 (one
  text for every reason; the reasons go to the log).  `hotline+anything@` that is
  no token is the queue address.
- The header block grows over lmtp.max_header_size -> 552 5.3.4; the body over the
  smallest limit of its queues -> 552 5.3.4.
- End of message: our own X-Loop -> 550 5.7.1 (mail loop); a command mail whose
  From is not the agent, whose DKIM fails under `dkim = required`, that is a
  replay, too old or has a second From/To/Cc/Subject/Date/Message-ID -> 550 5.7.1,
  the same text; a queue taking no new
  tickets, a sender who is no customer and no ticket followed up -> 550 5.7.1
  with the queue's reject_text.  Otherwise the mail goes on, with our
  Authentication-Results (any that claims our authserv-id, or cannot be read,
  removed) and
  X-OTRS-Mailgate-Ticket when it follows up a ticket (forged ones removed).

Mail to no address at our domains is waved through untouched.  Database and DKIM work
runs in worker threads, so the event loop serves every other connection meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import authres
import authres.dmarc

from otrs_mailgate.config.schema import Config, QueueConfig
from otrs_mailgate.crypto import unwrap
from otrs_mailgate.ingest import auth, senderauth
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.mail import addresses, tokens
from otrs_mailgate.mail.parse import parse
from otrs_mailgate.store.db import read_only
from otrs_mailgate.store.models import utcnow

log = logging.getLogger("otrs_mailgate.entry.milter")
AR = "Authentication-Results"
TICKET_HEADER = "X-OTRS-Mailgate-Ticket"
HOUR = 3600.0


@dataclass(frozen=True)
class Reply:
    """An SMTP answer the MTA gives the client instead of going on."""

    code: str
    status: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"


# One answer for every way a reply address or a command mail fails, so the answer does
# not tell an attacker which part was wrong; the log has the reasons (issue 19, item 3).
REFUSED_TOKEN = Reply("550", "5.7.1", "this reply address does not take this mail")


@dataclass
class Edits:
    """Header changes at the end of a message: inserted at the top, deleted by the
    name's 1-based occurrence, appended."""

    insert: list[tuple[str, str]] = field(default_factory=list)
    delete: list[tuple[str, int]] = field(default_factory=list)
    add: list[tuple[str, str]] = field(default_factory=list)


class RateLimit:
    """Mails accepted per key in the last hour (a sliding window, in this process); the
    limit is read from the config each time, so a SIGHUP changes it."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self.seen: dict[str, collections.deque[float]] = {}

    @property
    def limit(self) -> int:
        return self._limit()

    def _window(self, key: str, now: float) -> collections.deque[float]:
        times = self.seen.setdefault(key, collections.deque())
        while times and times[0] <= now - HOUR:
            times.popleft()
        return times

    def over(self, key: str) -> bool:
        if not self.limit or not key:
            return False
        return len(self._window(key, time.monotonic())) >= self.limit

    def count(self, key: str) -> None:
        if self.limit and key:
            self._window(key, time.monotonic()).append(time.monotonic())
            if len(self.seen) > 100_000:  # forget keys whose window is empty
                now = time.monotonic()
                for stale in [k for k, v in self.seen.items() if not self._window(k, now)]:
                    del self.seen[stale]


class Gate:
    """The checks of one milter server: shared rate limits, one Pipeline for config and
    database.  A Message is made for each transaction."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.senders = RateLimit(lambda: pipeline.config.milter.max_per_hour_sender)
        self.clients = RateLimit(lambda: pipeline.config.milter.max_per_hour_client)

    def message(self, client_ip: str, helo: str = "") -> Message:
        return Message(self, client_ip, helo)


class Message:
    """One SMTP transaction as the milter sees it."""

    def __init__(self, gate: Gate, client_ip: str, helo: str = "") -> None:
        self.gate = gate
        self.client_ip = client_ip
        self.helo = helo
        self.sender = ""
        self.size_claim = 0
        self.queues: list[QueueConfig] = []
        self.tokens: list[str] = []
        self.headers: list[tuple[str, bytes]] = []
        self.header_bytes = 0
        self.body = bytearray()

    @property
    def config(self) -> Config:
        return self.gate.pipeline.config

    @property
    def ours(self) -> bool:
        """Some recipient is one of our addresses (or the raw queue's domain): the checks
        apply (never accepted unchecked at DATA)."""
        return bool(self.queues)

    def mail_from(self, sender: str, arguments: list[str]) -> None:
        self.sender = addresses.normalize(sender)
        for arg in arguments:
            name, _, value = arg.partition("=")
            if name.upper() == "SIZE" and value.isdigit():
                self.size_claim = int(value)

    async def rcpt(self, recipient: str) -> Reply | None:
        site = self.gate.pipeline.site
        address = addresses.normalize(recipient)  # the form Postfix delivers (item 1)
        queue = site.accepts(address)  # a queue's address, or the raw queue's domain
        if queue is None:
            # not ours, even at a queue's domain (a server that also carries the company's
            # own mail): Postfix decides, and the milter accepts at DATA without a look,
            # so that mail never waits on us (issue 32)
            return None
        milter = self.config.milter
        if self.gate.senders.over(self.sender):
            return Reply("451", "4.7.1", f"too many mails from {self.sender}, try again later")
        if self.gate.clients.over(self.client_ip):
            return Reply("451", "4.7.1", f"too many mails from {self.client_ip}, try again later")
        limit = self.config.size_limit(queue)
        if milter.size and self.size_claim > limit:
            return Reply("552", "5.3.4", f"message too big for {queue.name} ({limit} bytes)")
        token = tokens.token_of(address)
        if token and milter.tokens:
            verdict = await asyncio.to_thread(self._token, token)
            if verdict.reasons:
                log.info("refused rcpt %s from %s: %s", address, self.sender, verdict.reasons)
                return REFUSED_TOKEN
            self.tokens.append(token)
        self.queues.append(queue)
        return None

    def _token(self, token: str) -> auth.Verdict:
        with read_only(self.gate.pipeline.engine) as conn:
            return auth.check_token(conn, token, utcnow())

    def header(self, name: str, value: bytes) -> Reply | None:
        """Keep a header; refuse a header block over lmtp.max_header_size (the daemon
        would refuse it after DATA, this says so while the sender is connected)."""
        self.headers.append((name, value))
        self.header_bytes += len(name) + len(value) + 3
        limit = self.config.lmtp.max_header_size
        if self.queues and self.header_bytes > limit:
            return Reply("552", "5.3.4", f"message header too big (over {limit} bytes)")
        return None

    def body_chunk(self, chunk: bytes) -> Reply | None:
        self.body += chunk
        if not self.config.milter.size or not self.queues:
            return None
        limit = min(self.config.size_limit(q) for q in self.queues)
        if len(self.body) > limit:
            return Reply("552", "5.3.4", f"message too big ({limit} bytes at most)")
        return None

    def raw(self) -> bytes:
        """The message as it arrived (header values are passed with their leading space)."""
        head = b"".join(
            name.encode("ascii") + b":" + value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            + b"\r\n"
            for name, value in self.headers
        )  # fmt: skip
        return head + b"\r\n" + bytes(self.body)

    async def end(self) -> Reply | Edits:
        decision = await asyncio.to_thread(self._end)
        if isinstance(decision, Edits):
            self.gate.senders.count(self.sender)
            self.gate.clients.count(self.client_ip)
        return decision

    def _end(self) -> Reply | Edits:
        config, pipeline = self.config, self.gate.pipeline
        milter = config.milter
        raw = self.raw()
        mail = parse(raw, config.lmtp.max_parts)
        if self.tokens and unwrap.looks_protected(mail):
            # an agent's command mail may be proven by its OpenPGP / S/MIME signature
            mail = unwrap.unwrap(mail, pipeline.site.keyring)
        if milter.loops and any(
            _text(v).strip().lower() in pipeline.own_addresses for v in self._values("X-Loop")
        ):
            return Reply("550", "5.7.1", "mail loop: this mail carries our own X-Loop")
        edits = Edits()
        found: list[auth.Signature] | None = None
        dns = pipeline.dkim_dns()
        if milter.dkim:
            found = auth.signatures(raw, dns)
            sender = senderauth.check(
                self.client_ip, self.sender, self.helo,
                (mail.from_addr or "").rpartition("@")[2], found,
            )  # fmt: skip
            edits.delete += self._ours(AR, lambda v: auth.claims_ours(v, config.authserv_id))
            edits.insert.append((AR, _results(config.authserv_id, found, sender)))
        now = utcnow()
        with read_only(pipeline.engine) as conn:
            for token in self.tokens:
                verdict = auth.check(conn, config.agents, mail, token, now, dns, found)
                if verdict.reasons:  # logged; told only as a class, never the details
                    log.info("refused mail from %s: %s", self.sender, verdict.reasons)
                    why = auth.reason_class(verdict.reasons)
                    if why:  # the agent's own mistake: say which kind (issue 27)
                        return Reply("550", "5.7.1", f"{REFUSED_TOKEN.text}: {why}")
                    return REFUSED_TOKEN
            ticket_id = pipeline.match_id(conn, mail)
            if not self.queues:  # only at our domains: stripped, nothing more to decide
                return edits
            closed = [q for q in self.queues if q.new_tickets == "reject"]
            new = milter.new_tickets and closed and ticket_id is None and not self.tokens
            if new and not pipeline.is_customer(conn, mail):
                return Reply("550", "5.7.1", closed[0].reject_text)
            number = pipeline.number_of(conn, ticket_id) if ticket_id else None
        if milter.ticket_header:
            edits.delete += self._ours(TICKET_HEADER, lambda v: True)
            if number:
                edits.add.append((TICKET_HEADER, number))
        return edits

    def _values(self, name: str) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def _ours(self, name: str, wanted: Callable[[str], bool]) -> list[tuple[str, int]]:
        """(name, occurrence) of the headers called name whose value `wanted` picks."""
        values = enumerate(self._values(name), 1)
        return [(name, index) for index, value in values if wanted(_text(value))]


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _results(
    authserv_id: str, found: list[auth.Signature], sender: senderauth.SenderAuth | None = None
) -> str:
    """The value of our Authentication-Results header (RFC 8601): every DKIM signature
    first (as before issue 28), then SPF and DMARC."""
    results: list[Any] = []
    for sig in found:
        result = authres.DKIMAuthenticationResult(
            result=sig.result,
            header_d=sig.domain or None,
            header_s=sig.selector or None,
            reason=sig.reason[:100] or None,
        )
        if len(sig.b) >= 8:  # which signature (RFC 6008); last: authres drops it when first
            result.properties.append(
                authres.AuthenticationResultProperty("header", "b", sig.b[:16])
            )
        results.append(result)
    if not any(isinstance(r, authres.DKIMAuthenticationResult) for r in results):
        results.append(authres.DKIMAuthenticationResult(result="none"))
    if sender is not None:
        results.append(
            authres.SPFAuthenticationResult(
                result=sender.spf, smtp_mailfrom=sender.spf_domain or None
            )
        )
        results.append(
            authres.dmarc.DMARCAuthenticationResult(
                result=sender.dmarc,
                header_from=sender.from_domain or None,
                policy=sender.policy or None,
            )
        )
    header = authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results)
    return str(header).split(":", 1)[1].strip()
