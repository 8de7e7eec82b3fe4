"""The one ingest pipeline: raw bytes to ticket, article, history and outbox rows.

LMTP, the pipe entry, `import` and phone tickets all call Pipeline.deliver_batch
(deliver_one is a batch of one); none of them touches the tables themselves.
Each (message, recipient) makes a Trip through STAGES, in this order:

    parse  route  dedup  classify  authenticate  commands  spam  customer  report  match
    article  respond  notify                    and then, for whatever was stored:  record  clocks

A stage that ends the trip (not a mail, unknown recipient, ignored by a filter,
a duplicate, an accepted command mail, a delivery report, mail kept raw) returns
its Result or Failed; the loop in `run` handles every end in one place.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Sequence

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import Config, QueueConfig
from otrs_mailgate.crypto import autocrypt, unwrap
from otrs_mailgate.ingest import auth, commands, customer, match, route, senderauth
from otrs_mailgate.ingest.outcome import (
    Conflict,
    Envelope,
    Failed,
    Item,
    Outcome,
    Result,
    UnknownRecipient,
)
from otrs_mailgate.ingest.trip import Stage, Stop, Trip
from otrs_mailgate.mail import spam, tokens, wire
from otrs_mailgate.mail.classify import AUTO, HUMAN, Classification, classify
from otrs_mailgate.mail.compose import Responder
from otrs_mailgate.mail.parse import NotAMail, ParsedMail, parse, spec, written_at
from otrs_mailgate.mail.subject import TagFormat
from otrs_mailgate.outbound import notify, outbox, replies
from otrs_mailgate.site import Site
from otrs_mailgate.store import db
from otrs_mailgate.store.models import utcnow
from otrs_mailgate.tickets import history, refs, sla
from otrs_mailgate.tickets.refs import TicketRef

log = logging.getLogger("otrs_mailgate.ingest")

__all__ = [
    "STAGES",
    "Conflict",
    "Envelope",
    "Failed",
    "Item",
    "Outcome",
    "Pipeline",
    "Result",
    "TicketRef",
    "UnknownRecipient",
]


# -- the small stages (the larger ones live in route, match, commands and customer) ------


def read(site: Site, item: Item) -> ParsedMail:
    """An item's mail as its reader sees it: parsed, then decrypted and its signature
    checked where it is OpenPGP or S/MIME (crypto/unwrap.py; the raw bytes stay as they
    came). Raises NotAMail."""
    mail = item.mail or parse(item.raw, site.config.lmtp.max_parts)
    if mail.protection is None and unwrap.looks_protected(mail):
        # A key the mail carries (Autocrypt, an attached key) first, so a signature by
        # it is known; only for protected mail: we answer encrypted only who wrote so,
        # and plain mail costs no gpg run.
        if autocrypt.offers(mail):
            autocrypt.learn(mail, site.keyring)
        mail = unwrap.unwrap(mail, site.keyring)
    return mail


def parse_stage(trip: Trip) -> Stop:
    """deliver_batch parses before its transaction opens (parsing holds no lock); a
    mail that came without that step is parsed here."""
    if trip.parsed is None:
        try:
            trip.parsed = read(trip.site, trip.item)
        except NotAMail as exc:
            trip.parsed = exc
    if isinstance(trip.parsed, NotAMail):
        return Failed(trip.recipient or "", trip.parsed, Outcome.NOT_A_MAIL)
    if trip.item.imported:  # an archive's mail is dated by itself, not by the import
        written, source = written_at(trip.parsed)
        if written is not None and written < trip.now:
            trip.now, trip.dated_by = written, source
    return None


def classify_stage(trip: Trip) -> Stop:
    """Human, automatic (RFC 3834 and friends, or a filter says so) or a delivery report;
    every mail passes here, command mail included."""
    site = trip.site
    kind = classify(trip.mail, trip.envelope.sender, site.own_domains, site.own_addresses)
    decision = trip.decision
    if decision is not None and decision.auto and kind.kind == HUMAN:
        kind = Classification(AUTO, f"filter {decision.name}")
    trip.kind = kind
    return None


def authenticate(trip: Trip) -> Stop:
    """A reply-token recipient: is this the agent's own command mail (token, From, DKIM)?"""
    token = tokens.token_of(trip.key)
    if token:
        trip.verdict = auth.verify(trip.conn, trip.site, trip.mail, token, trip.dns, trip.now)
    return None


def customer_stage(trip: Trip) -> Stop:
    """Who the customer is when From names nobody (missing, empty, unreadable): Reply-To,
    then Sender, then the envelope sender; the history says which. After the commands
    stage on purpose: an agent's identity comes from From alone, never from these."""
    mail = trip.mail
    if mail.from_addr:
        return None
    envelope = trip.envelope.sender or ""
    candidates = [*mail.other_senders, ("envelope sender", "", spec(envelope))]
    for source, name, address in candidates:
        if "@" in address:
            trip.parsed = dataclasses.replace(mail, from_addr=address, from_name=name)
            trip.customer_from = source
            trip.notes.append(f"no usable From: the customer is {address} ({source})")
            return None
    return None


def spam_stage(trip: Trip) -> Stop:
    """What the mail server's filter says, if our MTA wrote it (mail/spam.py): spam goes
    to the Junk queue as a new ticket of its own, never onto a customer's ticket, and
    nothing is sent or started for it. Agents' command mail has passed already."""
    cfg = trip.site.config.spam
    if not cfg.filter:
        return None
    reading = spam.read(trip.mail, cfg.filter, cfg.mta_hostnames, cfg.score)
    trip.spam = reading
    if reading.ignored:
        trip.notes.append(reading.ignored)
    verdict = reading.verdict
    junk = trip.site.config.queue_by_name(cfg.junk_queue) if cfg.junk_queue else None
    if verdict is not None and verdict.spam and junk is not None:
        trip.queue, trip.junk = junk, True
        trip.notes.append(f"spam: {verdict.detail}, filed in {junk.name}")
    return None


def respond(trip: Trip) -> Stop:
    """The customer's automatic answer: acknowledgement, or a word on a follow-up."""
    ticket, kind = trip.ticket, trip.kind
    assert ticket is not None and kind is not None and trip.queue is not None
    if trip.junk:
        return None  # spam: nothing goes out
    queue = trip.site.config.queue_by_name(ticket.queue) or trip.queue
    if trip.new and queue.acknowledge and not trip.customer_ack:
        trip.notes.append("no acknowledgement (asked for none)")
        return None
    if trip.new and queue.acknowledge:
        template = "acknowledgement"
    elif trip.rejected:
        template = "followup_rejected"
    elif not trip.new and queue.answer_follow_ups and trip.verdict is None:
        template = "followup_received"
    else:
        return None
    replies.respond(
        trip.session, trip.site, ticket, trip.mail, queue, kind, template, trip.notes,
        enabled=trip.acknowledge, vouched=lambda: senderauth.for_trip(trip),
    )  # fmt: skip
    return None


def notify_stage(trip: Trip) -> Stop:
    """The agents: notified of customer mail; a refused command mail's agent is told why."""
    ticket, verdict = trip.ticket, trip.verdict
    assert ticket is not None and trip.queue is not None
    if verdict is not None:
        assert trip.kind is not None
        commands.refused(trip.site, trip.session, ticket, trip.mail, verdict, trip.kind)
        trip.notes.append("not processed as commands: " + "; ".join(verdict.reasons))
    elif trip.acknowledge and not trip.junk:  # spam: the agents are not told
        queue = trip.site.config.queue_by_name(ticket.queue) or trip.queue
        files = trip.article_id if trip.mail.attachments else None  # ask only if any
        notify.notify(
            trip.site, trip.session, ticket, trip.mail, queue, new=trip.new, article_id=files
        )
    return None


def clocks(trip: Trip) -> None:
    """The ticket's SLA due instants and next escalation, after whatever changed it (none
    for spam: the Junk queue has no clock)."""
    if trip.junk:
        return
    config = trip.site.config
    made = trip.new and trip.article_id is not None  # its clocks came with its INSERT
    if trip.clocks and trip.ticket is not None and trip.ticket.number and config.sla and not made:
        sla.recompute(trip.conn, config, trip.ticket.id)


STAGES: tuple[Stage, ...] = (
    Stage("parse", parse_stage),
    Stage("route", route.route),
    Stage("dedup", match.dedup),
    Stage("classify", classify_stage),
    Stage("authenticate", authenticate),
    Stage("commands", commands.apply),
    Stage("spam", spam_stage),
    Stage("customer", customer_stage),
    Stage("report", customer.report),
    Stage("match", match.match),
    Stage("article", customer.article),
    Stage("respond", respond),
    Stage("notify", notify_stage),
)


def run(trip: Trip) -> Result | Failed:
    """The stages in order, until one ends the trip; what was stored is then recorded
    (so a retry is known) and the ticket's clocks are set."""
    end: Stop = None
    for stage in STAGES:
        end = stage.run(trip)
        if end is not None:
            break
    done = end if end is not None else trip.result()
    if isinstance(done, Result) and done.status is Outcome.STORED:
        match.record(trip)
        clocks(trip)
    return done


def _canonical(item: Item) -> Item:
    """The item with its bytes in the canonical form (mail/wire.py), whichever entry
    it came by; a mail parsed from other bytes is parsed again."""
    raw = wire.canonical(item.raw)
    if raw is item.raw and (item.mail is None or item.mail.raw is raw):
        return item
    mail = item.mail if item.mail is not None and item.mail.raw == raw else None
    return dataclasses.replace(item, raw=raw, mail=mail)


class Delivered(list[list[Result | Failed]]):
    """deliver_batch's answer: per item, one Result or Failed per recipient; `queued`
    says how many outbox rows the batch's transaction wrote (to wake a sender)."""

    queued: int = 0


class Pipeline:
    """Holds what is expensive to make (engine, Site); one per process."""

    def __init__(
        self,
        config: Config,
        engine: Engine | None = None,
        *,
        acknowledge: bool = True,
        import_clocks: bool = False,
        customer_ack: bool = True,
    ) -> None:
        self.engine = engine or db.make_engine(config.database.url, config.database.busy_timeout_ms)
        self.sessions = db.sessionmaker_for(self.engine, {history.INFO: self._audit_keys(config)})
        self.acknowledge = acknowledge
        # False: new tickets get no acknowledgement (`ticket create --no-ack`), while the
        # agents are still notified; `acknowledge` False silences every automatic mail.
        self.customer_ack = customer_ack
        self.import_clocks = import_clocks  # imported mail starts SLA clocks (import --sla)
        # DNS for DKIM keys not pinned in agents.dkim_keys; None: the resolver (tests
        # answer through this hook instead of the network).
        self.dns: auth.DNSFunc | None = None
        self.site = Site.build(config)
        senderauth.configure(config.system.dns_servers)

    def _audit_keys(self, config: Config) -> history.AuditKeys:
        """The history's keys; the key file learns from the database from which row on
        the history is keyed, when it does not say yet (history.keys_for)."""
        return history.keys_for(config, rows=lambda: history.bounds(self.engine))

    def reconfigure(self, config: Config) -> None:
        """Take a new config (SIGHUP): a new Site, swapped whole; the engine stays, the
        audit keys are read again (`audit rotate-key`)."""
        self.site = Site.build(config)
        self.sessions.configure(info={history.INFO: self._audit_keys(config)})
        senderauth.configure(config.system.dns_servers)

    # Views of the Site in force, for the entry points and the tests.

    @property
    def config(self) -> Config:
        return self.site.config

    @property
    def tags(self) -> TagFormat:
        return self.site.tags

    @property
    def responder(self) -> Responder:
        return self.site.responder

    @property
    def own_addresses(self) -> frozenset[str]:
        return self.site.own_addresses

    def queue_for(self, recipient: str) -> QueueConfig | None:
        return self.site.queue_for(recipient)

    def ensure_queues(self) -> None:
        self.site.ensure_queues(self.sessions)

    def queue_id(self, name: str) -> int:
        return self.site.queue_id(name)

    def dkim_dns(self) -> auth.DNSFunc:
        """DKIM key lookups: the pinned keys first, then DNS (or the tests' stand-in)."""
        return auth.dns_with_pins(self.site.dkim_keys, self.dns)

    def match_id(self, conn: Connection, mail: ParsedMail) -> int | None:
        return match.match_id(conn, self.site.tags, mail)

    def is_customer(self, conn: Connection, mail: ParsedMail) -> bool:
        return match.is_customer(conn, mail)

    def number_of(self, conn: Connection, ticket_id: int) -> str | None:
        return refs.number_of(conn, ticket_id)

    def load_ticket(self, conn: Connection, ticket_id: int) -> TicketRef:
        return refs.load(conn, ticket_id)

    # -- entry ---------------------------------------------------------------------------

    def deliver_batch(self, items: Sequence[Item]) -> Delivered:
        """Store many messages in ONE transaction: group commit.

        The daemon hands over whatever arrived together and `import` goes in
        batches, so one fsync serves many mails.  Returns, per item, one Result or
        Failed per recipient, all committed; raises db.TemporaryFailure (the whole
        batch rolled back, nothing stored).

        The batch is first tried without savepoints (they cost as much as the rest
        of a delivery); if anything in it fails, it is rolled back and done again
        with a savepoint per (message, recipient), so one bad message cannot spoil
        the others.
        """
        site = self.site  # one configuration for the whole batch, whatever SIGHUP does
        items = [_canonical(item) for item in items]
        parsed: list[ParsedMail | NotAMail] = []
        for item in items:  # before the transaction: parsing (and gpg) holds no lock
            try:
                parsed.append(read(site, item))
            except NotAMail as exc:
                parsed.append(exc)
        site.ensure_queues(self.sessions)
        try:
            return self._batch(site, items, parsed, careful=False)
        except db.TemporaryFailure:
            raise
        except Exception:
            return self._batch(site, items, parsed, careful=True)

    def _batch(
        self,
        site: Site,
        items: Sequence[Item],
        parsed: list[ParsedMail | NotAMail],
        *,
        careful: bool,
    ) -> Delivered:
        out = Delivered()
        with db.transaction(self.sessions) as session:
            mails = [m for m in parsed if isinstance(m, ParsedMail)]
            if len(mails) > 1:  # one query a batch for what each mail would ask alone
                match.prefetch(session, [m.dedup_key for m in mails])
                since = utcnow() - dt.timedelta(hours=24)
                outbox.prefetch_responses(session, [m.from_addr for m in mails], since)
            for item, mail in zip(items, parsed, strict=True):
                out.append(
                    [
                        self._deliver_in(site, session, item, mail, r, careful)
                        for r in item.recipients
                    ]
                )
            out.queued = outbox.queued(session)
        return out

    def deliver_one(
        self,
        raw: bytes,
        recipient: str | None,
        sender: str | None = None,
        *,
        queue: str | None = None,
        mail: ParsedMail | None = None,
    ) -> Result:
        """Store one message for one recipient in its own transaction.

        Raises parse.NotAMail, UnknownRecipient (nothing stored), Conflict or
        db.TemporaryFailure (nothing stored; retry later).
        """
        outcome = self.deliver(raw, recipient, sender, queue=queue, mail=mail)
        if isinstance(outcome, Failed):
            raise outcome.error
        return outcome

    def deliver(
        self,
        raw: bytes,
        recipient: str | None,
        sender: str | None = None,
        *,
        queue: str | None = None,
        mail: ParsedMail | None = None,
    ) -> Result | Failed:
        """deliver_one that answers with a Failed instead of raising (the entry points)."""
        try:
            [[outcome]] = self.deliver_batch([Item(raw, [recipient], sender, queue, mail)])
        except db.TemporaryFailure as exc:
            return Failed(recipient or "", exc, Outcome.UNAVAILABLE)
        return outcome

    def _deliver_in(
        self,
        site: Site,
        session: Session,
        item: Item,
        mail: ParsedMail | NotAMail,
        recipient: str | None,
        careful: bool,
    ) -> Result | Failed:
        clocks = not item.imported or self.import_clocks

        def trip() -> Trip:
            envelope = Envelope(item.sender, [recipient] if recipient else [])
            return Trip(
                site, session, item, recipient, envelope, mail, self.acknowledge, self.dns, clocks,
                customer_ack=self.customer_ack,
            )  # fmt: skip

        if not careful:  # any exception rolls back the batch, which is then done carefully
            return run(trip())
        for _attempt in range(2):
            savepoint = session.begin_nested()
            try:
                result = run(trip())
                savepoint.commit()
                return result
            except IntegrityError:
                # A concurrent delivery of the same message won the race (or two new
                # rows collided on a random ticket number): look again from the start.
                savepoint.rollback()
                match.forget(session)
            except Exception as exc:
                savepoint.rollback()
                if isinstance(exc, db.TemporaryFailure) or db.is_temporary(exc):
                    raise
                log.exception("ingest failed for %s", recipient)
                return Failed(recipient or "", exc)
        collided = Conflict("concurrent deliveries collided twice")
        return Failed(recipient or "", collided, Outcome.CONFLICT)
