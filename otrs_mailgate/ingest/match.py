"""Stages dedup and match: is this a retry of a mail already taken, and which ticket
does it follow up (subject tag with a valid check digit, else In-Reply-To and
References), with the queue's policy for follow-ups to closed tickets."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from otrs_mailgate.ingest import senderauth
from otrs_mailgate.ingest.outcome import Outcome
from otrs_mailgate.ingest.trip import Stop, Trip
from otrs_mailgate.mail.classify import HUMAN
from otrs_mailgate.mail.parse import ParsedMail
from otrs_mailgate.mail.subject import TagFormat
from otrs_mailgate.outbound import replies
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Article, Customer, Delivery, MessageRef, RawMessage, Ticket
from otrs_mailgate.tickets import articles, history, refs, state
from otrs_mailgate.tickets.refs import TicketRef

log = logging.getLogger("otrs_mailgate.ingest")


# -- dedup ---------------------------------------------------------------------------


def dedup(trip: Trip) -> Stop:
    """A retry of a message already committed for this recipient: answered, not stored."""
    done = delivered(trip.session, trip.mail.dedup_key, trip.key)
    if done is None:
        return None
    [article_id] = done
    number = trip.conn.execute(_SEL_NUMBER_OF_ARTICLE, {"a": article_id}).scalar()
    trip.article_id = article_id
    return trip.result(Outcome.DUPLICATE, number=number or "")


def delivered(session: Session, dedup_key: str, recipient: str) -> tuple[int | None] | None:
    """(article id or None,) if this message was already taken for this recipient
    (a delivery report about no mail of ours has no article), else None."""
    for row in db.deferred(session, _D):  # earlier in this batch
        if row["dedup_key"] == dedup_key and row["recipient"] == recipient:
            return (row["article_id"],)
    known = session.info.get(PREFETCHED)
    if known is not None and dedup_key in known[0]:  # asked for the whole batch at once
        found = known[1].get((dedup_key, recipient), _NONE)
        return None if found is _NONE else (found,)
    taken = _SEL_DELIVERY.first(session.connection(), {"k": dedup_key, "r": recipient})
    return (taken[0],) if taken is not None else None


def prefetch(session: Session, dedup_keys: list[str]) -> None:
    """The deliveries of a whole batch's messages in one query (an IN lookup), so stage
    dedup asks the database once a batch, not once a mail.  Forgotten when a delivery
    collides with a concurrent one (forget), and with the session."""
    keys = sorted(set(dedup_keys))
    if not keys:
        return
    rows = session.connection().execute(_SEL_DELIVERIES, {"keys": keys})
    session.info[PREFETCHED] = (set(keys), {(r[0], r[1]): r[2] for r in rows})


def forget(session: Session) -> None:
    """Another process stored one of the batch's messages meanwhile: ask again."""
    session.info.pop(PREFETCHED, None)


def record(trip: Trip) -> None:
    """Remember the delivery, so a retry of it is recognised (stage dedup)."""
    db.defer_insert(
        trip.session,
        _D,
        {"dedup_key": trip.mail.dedup_key, "recipient": trip.key, "article_id": trip.article_id},
    )


# -- match ---------------------------------------------------------------------------


def match_id(
    conn: Connection, tags: TagFormat, mail: ParsedMail, pending: Iterable[dict[str, Any]] = ()
) -> int | None:
    """The ticket a mail follows up: its subject tag (valid check digit, ticket exists),
    else In-Reply-To/References, also those of mail written earlier in this batch."""
    ticket_id = None
    numbers = [tag.number for tag in tags.find(mail.subject)]
    if numbers:
        found = dict(conn.execute(_SEL_TICKETS_BY_NUMBER, {"n": numbers}).all())
        ticket_id = next((found[n] for n in numbers if n in found), None)
    if ticket_id is None:
        refs_ = list(reversed(mail.in_reply_to)) + list(reversed(mail.references))
        refs_ = [r for r in dict.fromkeys(refs_) if r][:50]
        if refs_:
            rows = dict(conn.execute(SEL_REFS, {"ids": refs_}).all())
            wanted = set(refs_)
            for row in pending:
                if row["message_id"] in wanted:
                    rows.setdefault(row["message_id"], row["ticket_id"])
            ticket_id = next((rows[r] for r in refs_ if r in rows), None)
    return ticket_id


def find(trip: Trip) -> TicketRef | None:
    """The ticket the mail follows up, locked, or None."""
    pending = db.deferred(trip.session, articles.MESSAGE_REFS)
    ticket_id = match_id(trip.conn, trip.site.tags, trip.mail, pending)
    return None if ticket_id is None else refs.load(trip.conn, ticket_id)


def is_customer(conn: Connection, mail: ParsedMail) -> bool:
    found = conn.execute(_SEL_CUSTOMER, {"a": (mail.from_addr or "")[:320]}).first()
    return found is not None


def match(trip: Trip) -> Stop:
    """The ticket to file on, or a new one; machine mail and, where the queue says so,
    mail from new senders make no ticket (their bytes are kept)."""
    kind, queue, verdict = trip.kind, trip.queue, trip.verdict
    assert kind is not None and queue is not None
    if verdict is not None:
        return _refused(trip, verdict.ticket_id)
    ticket = None if trip.junk else find(trip)  # spam never lands on a customer's ticket
    if ticket is not None and not ticket.is_open:
        ticket = _closed_followup(trip, ticket)
    trip.ticket = ticket
    trip.new = ticket is None
    if trip.junk:
        return None  # kept in Junk whatever it is, to be recovered if it was no spam
    if trip.new and kind.kind != HUMAN and not queue.auto_tickets:
        return keep_raw(trip, f"machine mail ({kind.reason})")
    if trip.new and queue.new_tickets == "reject" and not is_customer(trip.conn, trip.mail):
        replies.reject_new(
            trip.session, trip.site, trip.mail, queue, kind, trip.notes,
            enabled=trip.acknowledge, vouched=lambda: senderauth.for_trip(trip),
        )  # fmt: skip
        return keep_raw(trip, "mail from a new sender")
    return None


def _refused(trip: Trip, token_ticket: int | None) -> Stop:
    """Mail to a reply address that was refused (issue 19, items 3, 6, 8): an internal
    article, for agents only, on the ticket the subject or References name, else on the
    one the token names once its MAC holds; never a new ticket, never reopened, never
    shown or answered to anyone.  Matching nothing, its bytes are kept."""
    ticket = find(trip)
    if ticket is None and token_ticket is not None:
        ticket = refs.load(trip.conn, token_ticket)
    if ticket is None:
        return keep_raw(trip, "mail to a refused reply address")
    trip.ticket, trip.new, trip.internal = ticket, False, True
    return None


def _closed_followup(trip: Trip, ticket: TicketRef) -> TicketRef | None:
    """Apply the queue's policy: the ticket to file on, or None for a new one (which
    then follows up the closed one); trip.rejected when the queue refuses."""
    kind = trip.kind
    assert kind is not None
    policy = trip.site.config.queue_by_name(ticket.queue)
    action = policy.follow_up_closed if policy else "reopen"
    closed_at = ticket.closed_at
    if policy and policy.reopen_days and closed_at is not None:
        too_old = trip.now - closed_at > dt.timedelta(days=policy.reopen_days)
        action = "new" if too_old else action  # too old to take up again
    if kind.kind != HUMAN:
        trip.notes.append(f"closed ticket not reopened: {kind.reason}")
        return ticket
    if action == "reopen":
        state.set_state(
            trip.session, ticket, "open", actor="system", reason="customer follow-up", now=trip.now
        )
        trip.notes.append("reopened")
        return ticket
    if action == "new":
        trip.notes.append(f"new ticket for follow-up to closed {ticket.number}")
        trip.followed = ticket
        return None
    trip.notes.append("follow-up to closed ticket rejected")
    history.append(trip.session, ticket.id, "FollowUpRejected", "system", policy="reject")
    trip.rejected = True
    return ticket


def keep_raw(trip: Trip, what: str) -> Stop:
    """Mail that must not make a ticket and belongs to none: its bytes are kept (and the
    delivery recorded, so a retry is recognised), nothing else happens."""
    articles.blob_id(trip.conn, RawMessage.__table__, trip.mail.raw)
    log.info("%s matching no ticket kept raw: <%s>", what, trip.mail.message_id)
    trip.ticket, trip.article_id, trip.new = None, None, False
    trip.notes.append(f"{what} matching no ticket: kept raw, no ticket made")
    return trip.result()


_T, _A, _D, _M = Ticket.__table__, Article.__table__, Delivery.__table__, MessageRef.__table__
PREFETCHED = "deliveries"
_NONE = object()
_SEL_DELIVERIES = select(_D.c.dedup_key, _D.c.recipient, _D.c.article_id).where(
    _D.c.dedup_key.in_(bindparam("keys", expanding=True))
)
_SEL_DELIVERY = db.Prepared(
    select(_D.c.article_id).where(
        _D.c.dedup_key == bindparam("k"), _D.c.recipient == bindparam("r")
    )
)
_SEL_CUSTOMER = select(Customer.__table__.c.id).where(
    Customer.__table__.c.address == bindparam("a")
)
_SEL_NUMBER_OF_ARTICLE = (
    select(_T.c.number).join(_A, _A.c.ticket_id == _T.c.id).where(_A.c.id == bindparam("a"))
)
_SEL_TICKETS_BY_NUMBER = select(_T.c.number, _T.c.id).where(
    _T.c.number.in_(bindparam("n", expanding=True))
)
SEL_REFS = (
    select(_M.c.message_id, _M.c.ticket_id)
    .where(_M.c.message_id.in_(bindparam("ids", expanding=True)))
    .order_by(_M.c.id)
)
