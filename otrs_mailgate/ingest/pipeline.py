"""The one ingest pipeline: raw bytes to ticket, article, history and outbox rows.

    bytes --parse--> ParsedMail --classify--> --route--> queue
          --match--> existing ticket or a new number
          --apply--> rows, ONE transaction --commit--> only then "delivered"

LMTP, the pipe entry and `import` all call Pipeline.deliver_batch (deliver_one is
a batch of one); none of them touches the tables themselves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import Config, QueueConfig
from otrs_mailgate.ingest import agentmail, auth, filters
from otrs_mailgate.ingest.agentmail import CommandMail
from otrs_mailgate.mail import bounces, tokens
from otrs_mailgate.mail.classify import AUTO, HUMAN, REPORT, Classification, classify
from otrs_mailgate.mail.compose import Responder, Response, new_message_id
from otrs_mailgate.mail.parse import NotAMail, ParsedMail, parse
from otrs_mailgate.mail.subject import TagFormat
from otrs_mailgate.mail.ticketnumber import generate
from otrs_mailgate.outbound import outbox
from otrs_mailgate.outbound.notify import notify
from otrs_mailgate.store import db, search
from otrs_mailgate.store.models import (
    Article,
    Attachment,
    Blob,
    Customer,
    Delivery,
    MessageRef,
    Outbox,
    Queue,
    RawMessage,
    Ticket,
    TicketLink,
    utcnow,
)
from otrs_mailgate.tickets import faq, history, links, sla

log = logging.getLogger(__name__)

OPEN_STATES = ("new", "open", "pending")
MAX_MERGE_HOPS = 20


class UnknownRecipient(LookupError):
    """No queue has this address: refuse it, store nothing."""


class Conflict(RuntimeError):
    """Concurrent writers collided on a unique key twice: nothing stored, try again later."""


@dataclass
class Item:
    """One message as an entry point received it, for one or more recipients.

    A recipient None means "route by the headers" (import); queue forces a queue.
    """

    raw: bytes
    recipients: list[str | None]
    sender: str | None = None
    queue: str | None = None
    mail: ParsedMail | None = None


@dataclass
class Failed:
    """A recipient of an item that was not stored, and why (NotAMail, UnknownRecipient,
    Conflict, or an unexpected exception that was logged)."""

    recipient: str
    error: Exception


@dataclass
class Envelope:
    """What the MTA told us. sender None: unknown (an import); "": the null return path."""

    sender: str | None = None
    recipients: list[str] = field(default_factory=list)


@dataclass
class Result:
    recipient: str
    status: str  # stored | duplicate
    ticket_number: str
    article_id: int | None
    queue: str
    new_ticket: bool = False
    notes: list[str] = field(default_factory=list)


def _split_plus(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


class Pipeline:
    """Holds what is expensive to make (engine, templates, queue ids); one per process."""

    def __init__(
        self, config: Config, engine: Engine | None = None, *, acknowledge: bool = True
    ) -> None:
        self.engine = engine or db.make_engine(config.database.url, config.database.busy_timeout_ms)
        self.sessions = db.sessionmaker_for(self.engine)
        self.acknowledge = acknowledge
        self._queue_ids: dict[str, int] = {}
        self._site_secret = ""
        # DNS for DKIM keys not pinned in agents.dkim_keys; None: the resolver (tests
        # answer through this hook instead of the network).
        self.dns: auth.DNSFunc | None = None
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Take a new config (SIGHUP): queues, tags, templates; the engine stays."""
        self.config = config
        self.tags = TagFormat(config.ticket.hook, config.ticket.divider)
        self.responder = Responder(config)
        self._addresses = {a: q for q in config.queue for a in q.addresses}
        self._pinned_keys = auth.pinned_keys(config.agents.dkim_keys)
        self.own_addresses = set(self._addresses)
        self.own_domains = {config.system.domain.lower()}

    # -- routing ------------------------------------------------------------------------

    def queue_for(self, recipient: str) -> QueueConfig | None:
        """Exact address, else the address without its +extension (token addresses)."""
        address = recipient.strip().strip("<>").lower()
        return self._addresses.get(address) or self._addresses.get(_split_plus(address))

    def route(self, recipient: str | None, mail: ParsedMail) -> QueueConfig:
        if recipient:
            queue = self.queue_for(recipient)
            if queue is None:
                raise UnknownRecipient(recipient)
            return queue
        candidates = list(mail.to) + list(mail.cc)
        for name in ("Delivered-To", "X-Original-To", "Envelope-To"):
            candidates.append(mail.header(name))
        for candidate in candidates:
            queue = self.queue_for(candidate) if candidate else None
            if queue is not None:
                return queue
        raise UnknownRecipient(", ".join(c for c in candidates if c) or "(no recipient)")

    def ensure_queues(self) -> None:
        """Queue rows for the configured queues, in a transaction of their own.

        Called before an ingest transaction opens (never inside one: on SQLite a
        second writer would wait for the first), and cached only once committed, so
        a rolled-back delivery cannot leave an id behind that does not exist.
        """
        wanted = [q.name for q in self.config.queue]
        if all(name in self._queue_ids for name in wanted):
            return
        with db.transaction(self.sessions) as session:
            for name in wanted:
                db.insert_ignore(session, Queue, name=name, created_at=utcnow())
            rows = session.execute(select(Queue.name, Queue.id).where(Queue.name.in_(wanted)))
            ids = {name: id_ for name, id_ in rows}
        self._queue_ids.update(ids)

    def queue_id(self, name: str) -> int:
        return self._queue_ids[name]

    # -- entry ---------------------------------------------------------------------------

    def deliver_batch(self, items: Sequence[Item]) -> list[list[Result | Failed]]:
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
        parsed: list[ParsedMail | NotAMail] = []
        for item in items:  # before the transaction: parsing holds no lock
            try:
                parsed.append(item.mail or parse(item.raw))
            except NotAMail as exc:
                parsed.append(exc)
        self.ensure_queues()
        try:
            return self._batch(items, parsed, careful=False)
        except db.TemporaryFailure:
            raise
        except Exception:
            return self._batch(items, parsed, careful=True)

    def _batch(
        self, items: Sequence[Item], parsed: list[ParsedMail | NotAMail], *, careful: bool
    ) -> list[list[Result | Failed]]:
        out: list[list[Result | Failed]] = []
        with db.transaction(self.sessions) as session:
            for item, mail in zip(items, parsed, strict=True):
                if isinstance(mail, NotAMail):
                    out.append([Failed(r or "", mail) for r in item.recipients])
                    continue
                out.append(
                    [self._deliver_in(session, item, mail, r, careful) for r in item.recipients]
                )
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
        [[outcome]] = self.deliver_batch([Item(raw, [recipient], sender, queue, mail)])
        if isinstance(outcome, Failed):
            raise outcome.error
        return outcome

    def _deliver_in(
        self,
        session: Session,
        item: Item,
        mail: ParsedMail,
        recipient: str | None,
        careful: bool,
    ) -> Result | Failed:
        try:
            target = self.config.queue_by_name(item.queue) if item.queue else None
            if item.queue and target is None:
                raise UnknownRecipient(f"queue {item.queue!r}")
            target = target or self.route(recipient, mail)
        except UnknownRecipient as exc:
            return Failed(recipient or "", exc)
        key = recipient.lower() if recipient else f"queue:{target.name}"
        decision = self.filtered(mail)
        if decision is not None and decision.ignore:
            log.info("ignored by filter %r: <%s>", decision.name, mail.message_id)
            note = f"ignored by filter {decision.name}"
            return Result(key, "ignored", "", None, target.name, notes=[note])
        if decision is not None and decision.queue:
            target = self.config.queue_by_name(decision.queue) or target
        envelope = Envelope(item.sender, [recipient] if recipient else [])
        if not careful:  # any exception rolls back the batch, which is then done carefully
            return self.apply(session, mail, target, key, envelope)
        for _attempt in range(2):
            savepoint = session.begin_nested()
            try:
                result = self.apply(session, mail, target, key, envelope)
                savepoint.commit()
                return result
            except IntegrityError:
                # A concurrent delivery of the same message won the race (or two new
                # rows collided on a random ticket number): look again from the start.
                savepoint.rollback()
            except Exception as exc:
                savepoint.rollback()
                if isinstance(exc, db.TemporaryFailure) or db.is_temporary(exc):
                    raise
                log.exception("ingest failed for %s", recipient)
                return Failed(recipient or "", exc)
        return Failed(recipient or "", Conflict("concurrent deliveries collided twice"))

    # -- the transaction -----------------------------------------------------------------

    def apply(
        self,
        session: Session,
        mail: ParsedMail,
        queue: QueueConfig,
        recipient_key: str,
        envelope: Envelope,
    ) -> Result:
        """All rows for one (message, recipient), inside the caller's transaction.

        Core statements built once at import time: the ORM's unit of work cost
        more than everything else on this path together.
        """
        conn = session.connection()
        done = _delivered(session, mail.dedup_key, recipient_key)
        if done is not None:
            [article_id] = done
            number = conn.execute(_SEL_NUMBER_OF_ARTICLE, {"a": article_id}).scalar()
            return Result(recipient_key, "duplicate", number or "", article_id, queue.name)

        token = tokens.token_of(recipient_key)
        verdict = self._authenticate(conn, mail, token) if token else None
        if verdict is not None and verdict.ok:
            ticket = self.load_ticket(conn, verdict.ticket_id)
            assert verdict.agent is not None
            result = CommandMail(self, session, mail, verdict.agent, ticket).run(
                envelope, recipient_key
            )
        else:
            result = self._customer_mail(session, mail, queue, recipient_key, envelope, verdict)
        db.defer_insert(
            session,
            _D,
            {
                "dedup_key": mail.dedup_key,
                "recipient": recipient_key,
                "article_id": result.article_id,
            },
        )
        if result.ticket_number and self.config.sla:
            ticket_id = conn.execute(_SEL_ID_BY_NUMBER, {"n": result.ticket_number}).scalar_one()
            sla.recompute(conn, self.config, ticket_id)
        return result

    def filtered(self, mail: ParsedMail) -> filters.Decision | None:
        """What the configured filters (or a trusted relay's X-OTRS headers) decide."""
        if not self.config.filter and not self.config.system.trusted_relay:
            return None
        return filters.decide(self.config, mail)

    def dkim_dns(self) -> auth.DNSFunc:
        """DKIM key lookups: the pinned keys first, then DNS (or the tests' stand-in)."""
        return auth.dns_with_pins(self._pinned_keys, self.dns)

    def _authenticate(self, conn: Connection, mail: ParsedMail, token: str) -> auth.Verdict:
        """auth.check, plus: the ticket the token names is the one the subject names."""
        verdict = auth.check(conn, self.config.agents, mail, token, utcnow(), self.dkim_dns())
        if verdict.token is None:
            return verdict
        number = conn.execute(_SEL_NUMBER, {"id": verdict.token.ticket_id}).scalar()
        if number is None:
            verdict.reasons.append("the ticket of this reply address does not exist")
            return verdict
        verdict.ticket_id = verdict.token.ticket_id
        named = [tag.number for tag in self.tags.find(mail.subject)]
        if named and number not in named:
            verdict.reasons.append(
                f"the reply address is for ticket {number}, the subject names {named[0]}"
            )
        return verdict

    def _customer_mail(
        self,
        session: Session,
        mail: ParsedMail,
        queue: QueueConfig,
        recipient_key: str,
        envelope: Envelope,
        refused: auth.Verdict | None,
    ) -> Result:
        """Everything but an accepted command mail: a new ticket or a follow-up."""
        conn = session.connection()
        kind = classify(mail, envelope.sender, self.own_domains, self.own_addresses)
        decision = self.filtered(mail)
        if decision is not None and decision.auto and kind.kind == HUMAN:
            kind = Classification(AUTO, f"filter {decision.name}")
        if kind.kind == REPORT:
            return self._report(session, mail, queue, recipient_key, envelope)
        notes: list[str] = []
        ticket = self._match(session, mail)
        if ticket is None and refused is not None and refused.ticket_id is not None:
            ticket = self.load_ticket(conn, refused.ticket_id)
        followed: TicketRef | None = None
        rejected = False
        if ticket is not None and ticket.state not in OPEN_STATES:
            ticket, followed, rejected = self._closed_followup(session, ticket, kind, notes)
        new = ticket is None
        if new and kind.kind != HUMAN and not queue.auto_tickets:
            return _keep_raw(conn, mail, queue, recipient_key, f"machine mail ({kind.reason})")
        if new and queue.new_tickets == "reject" and not self.is_customer(conn, mail):
            self._reject_new(session, mail, queue, kind, notes)
            result = _keep_raw(conn, mail, queue, recipient_key, "mail from a new sender")
            result.notes[:0] = notes
            return result
        if ticket is None:
            ticket = self._new_ticket(session, mail, queue, followed, decision)
        article_id = self.store_article(session, ticket, mail, envelope, recipient_key)
        history.append(
            session,
            ticket.id,
            "EmailCustomer" if new else "FollowUp",
            mail.from_addr or "unknown",
            article_id=article_id,
            message_id=mail.message_id,
            classification=kind.kind,
            reason=kind.reason,
            unparsed=mail.unparsed,
        )
        if not new:
            conn.execute(_UPD_TICKET_TOUCH, {"_id": ticket.id, "updated_at": utcnow()})
        if ticket.state == "pending" and kind.kind == HUMAN:  # an auto-reply leaves it waiting
            self._open_again(session, ticket, "the customer wrote")
            notes.append("pending ticket opened again")
        ticket_queue = self.config.queue_by_name(ticket.queue) or queue
        if new and ticket_queue.acknowledge:
            self._respond(session, ticket, mail, ticket_queue, kind, "acknowledgement", notes)
        elif rejected:
            self._respond(session, ticket, mail, ticket_queue, kind, "followup_rejected", notes)
        elif not new and ticket_queue.answer_follow_ups and refused is None:
            self._respond(session, ticket, mail, ticket_queue, kind, "followup_received", notes)
        if refused is not None:
            agentmail.refused(self, session, ticket, mail, refused)
            notes.append("not processed as commands: " + "; ".join(refused.reasons))
        elif self.acknowledge:
            notify(self, session, ticket, mail, ticket_queue, new=new)
        return Result(recipient_key, "stored", ticket.number, article_id, ticket.queue, new, notes)

    def _report(
        self,
        session: Session,
        mail: ParsedMail,
        queue: QueueConfig,
        recipient_key: str,
        envelope: Envelope,
    ) -> Result:
        """A delivery report: a note on the ticket whose mail bounced, never a ticket of its
        own, never answered; the ticket's agents are told once."""
        conn = session.connection()
        report = bounces.read(mail)
        ticket = None
        if report.original_message_id:
            found = conn.execute(_SEL_REFS, {"ids": [report.original_message_id]}).first()
            ticket = self.load_ticket(conn, found.ticket_id) if found else None
        ticket = ticket or self._match(session, mail)
        if ticket is None:  # not about mail of ours we know: keep the bytes, make nothing
            return _keep_raw(
                conn, mail, queue, recipient_key, "delivery report about no mail of ours"
            )
        article_id = self.store_article(
            session, ticket, mail, envelope, recipient_key, sender_type="system", internal=True
        )
        failures = [
            {
                "recipient": f.recipient,
                "action": f.action,
                "status": f.status,
                "diagnostic": f.diagnostic,
            }
            for f in report.failures
        ]
        history.append(
            session,
            ticket.id,
            "Bounce",
            mail.from_addr or "MAILER-DAEMON",
            article_id=article_id,
            original=report.original_message_id,
            failures=failures,
        )
        if report.original_message_id:
            reason = "; ".join(
                f"{f.recipient}: {f.status} {f.diagnostic}".strip() for f in report.failures
            )
            conn.execute(
                update(Outbox.__table__)
                .where(Outbox.__table__.c.message_id == report.original_message_id)
                .values(status="bounced", last_error=reason[:2000] or "bounced")
            )
        ticket_queue = self.config.queue_by_name(ticket.queue) or queue
        if self.acknowledge:
            notify(self, session, ticket, mail, ticket_queue, new=False, bounce=report)
        return Result(
            recipient_key,
            "stored",
            ticket.number,
            article_id,
            ticket.queue,
            notes=["delivery report"],
        )

    def _match(self, session: Session, mail: ParsedMail) -> TicketRef | None:
        conn = session.connection()
        ticket_id = self.match_id(conn, mail, db.deferred(session, _M))
        return None if ticket_id is None else self.load_ticket(conn, ticket_id)

    def match_id(
        self, conn: Connection, mail: ParsedMail, pending: Iterable[dict[str, Any]] = ()
    ) -> int | None:
        """The ticket a mail follows up: its subject tag (valid check digit, ticket exists),
        else In-Reply-To/References, also those of mail written earlier in this batch."""
        ticket_id = None
        numbers = [tag.number for tag in self.tags.find(mail.subject)]
        if numbers:
            found = dict(conn.execute(_SEL_TICKETS_BY_NUMBER, {"n": numbers}).all())
            ticket_id = next((found[n] for n in numbers if n in found), None)
        if ticket_id is None:
            refs = list(reversed(mail.in_reply_to)) + list(reversed(mail.references))
            refs = [r for r in dict.fromkeys(refs) if r][:50]
            if refs:
                rows = dict(conn.execute(_SEL_REFS, {"ids": refs}).all())
                wanted = set(refs)
                for row in pending:
                    if row["message_id"] in wanted:
                        rows.setdefault(row["message_id"], row["ticket_id"])
                ticket_id = next((rows[r] for r in refs if r in rows), None)
        return ticket_id

    def number_of(self, conn: Connection, ticket_id: int) -> str | None:
        return conn.execute(_SEL_NUMBER, {"id": ticket_id}).scalar()

    def load_ticket(self, conn: Connection, ticket_id: int) -> TicketRef:
        """A ticket locked FOR UPDATE, following merges to the ticket that lives on."""
        ticket = None
        for _ in range(MAX_MERGE_HOPS):
            ticket = TicketRef(*conn.execute(_SEL_TICKET_FOR_UPDATE, {"id": ticket_id}).one())
            if ticket.merged_into_id is None:
                return ticket
            ticket_id = ticket.merged_into_id
        assert ticket is not None
        return ticket

    def _closed_followup(
        self, session: Session, ticket: TicketRef, kind: Classification, notes: list[str]
    ) -> tuple[TicketRef | None, TicketRef | None, bool]:
        """Apply the queue's policy: (ticket to file on, or None for a new one; the closed
        ticket a new one follows up; rejected)."""
        policy = self.config.queue_by_name(ticket.queue)
        action = policy.follow_up_closed if policy else "reopen"
        closed_at = ticket.closed_at
        if policy and policy.reopen_days and closed_at is not None:
            too_old = utcnow() - closed_at > dt.timedelta(days=policy.reopen_days)
            action = "new" if too_old else action  # too old to take up again
        if kind.kind != HUMAN:
            notes.append(f"closed ticket not reopened: {kind.reason}")
            return ticket, None, False
        if action == "reopen":
            self._open_again(session, ticket, "customer follow-up")
            notes.append("reopened")
            return ticket, None, False
        if action == "new":
            notes.append(f"new ticket for follow-up to closed {ticket.number}")
            return None, ticket, False
        notes.append("follow-up to closed ticket rejected")
        history.append(session, ticket.id, "FollowUpRejected", "system", policy="reject")
        return ticket, None, True

    def _open_again(self, session: Session, ticket: TicketRef, reason: str) -> None:
        """A closed ticket the customer took up again, or a pending one the customer
        answered (OTRS's PostmasterFollowUpState): open, with no reminder left."""
        session.connection().execute(
            _UPD_TICKET_STATE,
            {
                "_id": ticket.id,
                "state": "open",
                "closed_at": None,
                "pending_until": None,
                "updated_at": utcnow(),
            },
        )
        history.append(
            session, ticket.id, "StateUpdate", "system", old=ticket.state, new="open", reason=reason
        )
        ticket.state = "open"

    def _new_ticket(
        self,
        session: Session,
        mail: ParsedMail,
        queue: QueueConfig,
        follows: TicketRef | None,
        decision: filters.Decision | None = None,
    ) -> TicketRef:
        conn = session.connection()
        today = dt.datetime.now().date()  # the local date, as people read the number
        number = generate(
            self.config.system.ticket_number,
            self.config.system.id,
            lambda name: db.next_counter(session, name),
            today,
        )
        customer_id, customer_language = self._customer(conn, mail)
        language = self.responder.pick_language(
            decision.language if decision else None,
            mail.content_language,
            customer_language,
            queue.language,
            self.config.system.language,
        )
        title = self.tags.remove(mail.subject) if mail.subject else "(no subject)"
        now = utcnow()
        ticket_id = conn.execute(
            _INS_TICKET,
            {
                "number": number,
                "title": title,
                "queue_id": self.queue_id(queue.name),
                "customer_id": customer_id,
                "state": "new",
                "priority": decision.priority if decision and decision.priority else 3,
                "language": language,
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()
        history.start_chain(session, ticket_id)
        history.append(
            session,
            ticket_id,
            "NewTicket",
            mail.from_addr or "unknown",
            number=number,
            queue=queue.name,
            **({"filter": decision.name} if decision else {}),
        )
        if follows is not None:
            conn.execute(
                _INS_LINK, {"source_id": ticket_id, "target_id": follows.id, "kind": "follow-up-of"}
            )
            history.append(session, ticket_id, "Link", "system", follow_up_of=follows.number)
            history.append(session, follows.id, "Link", "system", followed_by=number)
        return TicketRef(
            ticket_id, number, "new", queue.name, language, title, None, self.queue_id(queue.name)
        )

    def _customer(self, conn: Connection, mail: ParsedMail) -> tuple[int | None, str | None]:
        """(id, stored language) of the sender, created on first contact."""
        if not mail.from_addr:
            return None, None
        row = conn.execute(
            db.upsert_stmt(conn.dialect.name, Customer.__table__, "address", ("id", "language")),
            {
                "address": mail.from_addr[:320],
                "name": mail.from_name[:200],
                "language": mail.content_language,
                "created_at": utcnow(),
            },
        ).one()
        return row.id, row.language

    def store_article(
        self,
        session: Session,
        ticket: TicketRef,
        mail: ParsedMail,
        envelope: Envelope,
        recipient: str,
        *,
        sender_type: str = "customer",
        direction: str = "in",
        internal: bool = False,
        agent_id: int | None = None,
        body_text: str | None = None,
    ) -> int:
        """The article of a received mail (an agent's mail: what of it the customer sees)."""
        conn = session.connection()
        raw_id = _blob_id(conn, RawMessage.__table__, mail.raw)
        subject = mail.subject or ("(unparsed message)" if mail.unparsed else "")
        text = mail.body_text if body_text is None else body_text
        article_id = conn.execute(
            _INS_ARTICLE,
            {
                "ticket_id": ticket.id,
                "raw_id": raw_id,
                "direction": direction,
                "sender_type": sender_type,
                "internal": internal,
                "agent_id": agent_id,
                "message_id": mail.message_id[:998],
                "from_addr": mail.from_addr[:320],
                "from_name": mail.from_name[:200],
                "to_addrs": ", ".join(mail.to),
                "cc_addrs": ", ".join(mail.cc),
                "subject": subject,
                "body_text": text,
                "body_html": mail.body_html if body_text is None else "",
                "content_language": mail.content_language,
                "envelope_sender": (envelope.sender or "")[:320],
                "envelope_recipient": recipient[:320],
                "unparsed": mail.unparsed,
                "problem": mail.problem,
                "created_at": utcnow(),
            },
        ).scalar_one()
        if mail.attachments:
            conn.execute(
                _INS_ATTACHMENT,
                [
                    {
                        "article_id": article_id,
                        "blob_id": _blob_id(conn, Blob.__table__, part.data),
                        "filename": part.filename,
                        "content_type": part.content_type[:255],
                        "content_id": part.content_id[:998],
                        "inline": part.inline,
                        "size": len(part.data),
                        "sha256": part.sha256,
                    }
                    for part in mail.attachments
                ],
            )
        addresses = (mail.from_addr, mail.from_name, *mail.to, *mail.cc)
        names = (part.filename for part in mail.attachments)
        search.index(session, article_id, search.document(subject, text, names, addresses))
        if mail.message_id:
            db.defer_insert(
                session,
                _M,
                {"message_id": mail.message_id[:998], "ticket_id": ticket.id, "direction": "in"},
            )
        return article_id

    def _respond(
        self,
        session: Session,
        ticket: TicketRef,
        mail: ParsedMail,
        queue: QueueConfig,
        kind: Classification,
        template: str,
        notes: list[str],
    ) -> None:
        """An automatic answer to the customer, unless the mail came from a machine."""
        if not self.acknowledge:
            notes.append("no auto response (disabled for this run)")
            return
        to = mail.from_addr
        reason = self._why_no_response(session, kind, to)
        if reason:
            history.append(session, ticket.id, "AutoResponseSuppressed", "system", reason=reason)
            notes.append(f"no auto response: {reason}")
            return
        language = ticket.language or "en"
        suggestions = []
        if template == "acknowledgement" and queue.suggest_faq:
            found = faq.suggest(
                session.connection(), queue.name, language, mail.subject, mail.body_text
            )
            suggestions = [{"id": e.id, "title": e.title, "text": e.text} for e in found]
        response = Response(
            template=template,
            language=language,
            from_addr=queue.addresses[0],
            from_name=queue.display_name or queue.name,
            to=to,
            to_name=mail.from_name,
            subject=self.tags.build(ticket.number, mail.subject or ticket.title),
            vars={
                "number": ticket.number,
                "title": ticket.title,
                "tag": self.tags.tag(ticket.number),
                "customer_name": mail.from_name,
                "queue_name": queue.display_name or queue.name,
                "status_url": self.status_url(session.connection(), ticket.id),
                "link_days": self.config.web.customer_link_days,
                "faq": suggestions,
            },
            in_reply_to=mail.message_id,
            references=tuple(mail.references),
        )
        self.send(session, ticket.id, template, response, "AutoResponseQueued")

    def status_url(self, conn: Connection, ticket_id: int) -> str:
        """The customer's signed link to the ticket's status page, or "" without a page."""
        if not self.config.web.enabled:
            return ""
        if not self._site_secret:
            self._site_secret = links.site_secret(conn)
        return links.customer_url(self.config, self._site_secret, ticket_id)

    def _why_no_response(self, session: Session, kind: Classification, to: str) -> str:
        """Why an automatic answer to this sender must not go out, or ""."""
        if kind.kind != HUMAN:
            return kind.reason
        if not to:
            return "no customer address"
        if to in self.own_addresses or _split_plus(to) in self.own_addresses:
            return "sender is our own address"
        limit = self.config.system.auto_response_limit
        since = utcnow() - dt.timedelta(hours=24)
        if outbox.responses_since(session, to, since, limit) >= limit:
            return f"loop limit: {limit} automatic answers to {to} in the last 24 hours"
        return ""

    def is_customer(self, conn: Connection, mail: ParsedMail) -> bool:
        found = conn.execute(_SEL_CUSTOMER, {"a": (mail.from_addr or "")[:320]}).first()
        return found is not None

    def _reject_new(
        self,
        session: Session,
        mail: ParsedMail,
        queue: QueueConfig,
        kind: Classification,
        notes: list[str],
    ) -> None:
        """A queue that takes no new tickets answers a new sender once (if the classifier
        and the loop limit let it), from its own address; there is no ticket to file on."""
        to = mail.from_addr
        reason = "" if self.acknowledge else "auto responses disabled for this run"
        reason = reason or self._why_no_response(session, kind, to)
        if reason:
            notes.append(f"no rejection sent: {reason}")
            log.info("rejection to <%s> not sent: %s", to, reason)
            return
        response = Response(
            template="new_ticket_rejected",
            language=self.responder.pick_language(
                mail.content_language, queue.language, self.config.system.language
            ),
            from_addr=queue.addresses[0],
            from_name=queue.display_name or queue.name,
            to=to,
            to_name=mail.from_name,
            subject="Re: " + (mail.subject or "(no subject)"),
            vars={
                "customer_name": mail.from_name,
                "subject": mail.subject,
                "queue_name": queue.display_name or queue.name,
            },
            in_reply_to=mail.message_id,
            references=tuple(mail.references),
            auto_submitted="auto-replied",
        )
        outbox.enqueue(
            session,
            None,
            "new_ticket_rejected",
            response,
            new_message_id(self.config.system.domain),
        )
        notes.append("new tickets rejected: the sender was told")

    def send(
        self,
        session: Session,
        ticket_id: int,
        kind: str,
        response: Response,
        history_type: str,
        actor: str = "system",
    ) -> str:
        """Put a mail into the outbox and say so in the ticket's history; its Message-ID."""
        message_id = new_message_id(self.config.system.domain)
        outbox.enqueue(session, ticket_id, kind, response, message_id)
        history.append(
            session,
            ticket_id,
            history_type,
            actor,
            template=response.template,
            to=", ".join(response.recipients),
            message_id=message_id,
        )
        return message_id


@dataclass
class TicketRef:
    """What the pipeline needs of a ticket, without an ORM object."""

    id: int
    number: str
    state: str
    queue: str
    language: str
    title: str
    merged_into_id: int | None
    queue_id: int = 0
    customer_id: int | None = None
    owner_id: int | None = None
    lock_until: dt.datetime | None = None
    priority: int = 3
    closed_at: dt.datetime | None = None


_T, _A, _D, _M = Ticket.__table__, Article.__table__, Delivery.__table__, MessageRef.__table__
_Q = Queue.__table__
_SEL_DELIVERY = select(_D.c.article_id).where(
    _D.c.dedup_key == bindparam("k"), _D.c.recipient == bindparam("r")
)
_SEL_NUMBER = select(_T.c.number).where(_T.c.id == bindparam("id"))
_SEL_ID_BY_NUMBER = select(_T.c.id).where(_T.c.number == bindparam("n"))
_SEL_CUSTOMER = select(Customer.__table__.c.id).where(
    Customer.__table__.c.address == bindparam("a")
)
_SEL_NUMBER_OF_ARTICLE = (
    select(_T.c.number).join(_A, _A.c.ticket_id == _T.c.id).where(_A.c.id == bindparam("a"))
)
_SEL_TICKETS_BY_NUMBER = select(_T.c.number, _T.c.id).where(
    _T.c.number.in_(bindparam("n", expanding=True))
)
_SEL_REFS = (
    select(_M.c.message_id, _M.c.ticket_id)
    .where(_M.c.message_id.in_(bindparam("ids", expanding=True)))
    .order_by(_M.c.id)
)
_SEL_TICKET_FOR_UPDATE = (
    select(
        _T.c.id,
        _T.c.number,
        _T.c.state,
        _Q.c.name,
        _T.c.language,
        _T.c.title,
        _T.c.merged_into_id,
        _T.c.queue_id,
        _T.c.customer_id,
        _T.c.owner_id,
        _T.c.lock_until,
        _T.c.priority,
        _T.c.closed_at,
    )
    .join(_Q, _Q.c.id == _T.c.queue_id)
    .where(_T.c.id == bindparam("id"))
    .with_for_update(of=_T)
)
_INS_TICKET = insert(_T).returning(_T.c.id)
_INS_ARTICLE = insert(_A).returning(_A.c.id)
_INS_ATTACHMENT = insert(Attachment.__table__)
_INS_LINK = insert(TicketLink.__table__)
_UPD_TICKET_TOUCH = update(_T).where(_T.c.id == bindparam("_id"))
_UPD_TICKET_STATE = update(_T).where(_T.c.id == bindparam("_id"))


def _keep_raw(
    conn: Connection, mail: ParsedMail, queue: QueueConfig, recipient_key: str, what: str
) -> Result:
    """Mail that must not make a ticket and belongs to none: its bytes are kept (and the
    delivery recorded, so a retry is recognised), nothing else happens."""
    _blob_id(conn, RawMessage.__table__, mail.raw)
    log.info("%s matching no ticket kept raw: <%s>", what, mail.message_id)
    note = f"{what} matching no ticket: kept raw, no ticket made"
    return Result(recipient_key, "stored", "", None, queue.name, notes=[note])


def _delivered(session: Session, dedup_key: str, recipient: str) -> tuple[int | None] | None:
    """(article id or None,) if this message was already taken for this recipient
    (a delivery report about no mail of ours has no article), else None."""
    for row in db.deferred(session, _D):  # earlier in this batch
        if row["dedup_key"] == dedup_key and row["recipient"] == recipient:
            return (row["article_id"],)
    found = session.connection().execute(_SEL_DELIVERY, {"k": dedup_key, "r": recipient})
    row = found.first()
    return (row.article_id,) if row is not None else None


def _blob_id(conn: Connection, table: Table, data: bytes) -> int:
    """Store bytes once per SHA-256 and return the row id."""
    digest = hashlib.sha256(data).hexdigest()
    stmt = db.upsert_stmt(conn.dialect.name, table, "sha256", ("id",))
    return int(conn.execute(stmt, {"sha256": digest, "size": len(data), "data": data}).scalar_one())
