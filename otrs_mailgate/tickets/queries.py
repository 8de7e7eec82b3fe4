"""Tickets for the CLI: queries shaped as plain dicts for text and JSON, and phone tickets."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import Config
from otrs_mailgate.store.models import Article, History, Outbox, Queue, Ticket, utcnow

if TYPE_CHECKING:
    from otrs_mailgate.ingest.pipeline import Result


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def summary(ticket: Ticket, articles: int | None = None) -> dict[str, Any]:
    out = {
        "number": ticket.number,
        "title": ticket.title,
        "queue": ticket.queue.name,
        "state": ticket.state,
        "priority": ticket.priority,
        "customer": ticket.customer.address if ticket.customer else None,
        "owner": ticket.owner.login if ticket.owner else None,
        "locked_until": _iso(ticket.lock_until),
        "pending_until": _iso(ticket.pending_until),
        "language": ticket.language,
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
        "closed_at": _iso(ticket.closed_at),
    }
    if articles is not None:
        out["articles"] = articles
    return out


def list_tickets(
    session: Session, *, state: str | None = None, queue: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    counts = (
        select(Article.ticket_id, func.count().label("n")).group_by(Article.ticket_id).subquery()
    )
    stmt = (
        select(Ticket, counts.c.n)
        .outerjoin(counts, counts.c.ticket_id == Ticket.id)
        .order_by(Ticket.id.desc())
        .limit(limit)
    )
    if state:
        stmt = stmt.where(Ticket.state == state)
    if queue:
        stmt = stmt.join(Queue, Queue.id == Ticket.queue_id).where(Queue.name == queue)
    return [summary(t, n or 0) for t, n in session.execute(stmt).all()]


def find(session: Session, number: str) -> Ticket | None:
    return session.execute(select(Ticket).where(Ticket.number == number)).scalar_one_or_none()


def show(session: Session, ticket: Ticket) -> dict[str, Any]:
    out = summary(ticket)
    if ticket.merged_into_id:
        out["merged_into"] = session.get(Ticket, ticket.merged_into_id).number  # type: ignore[union-attr]
    articles = session.execute(
        select(Article).where(Article.ticket_id == ticket.id).order_by(Article.id)
    ).scalars()
    out["articles"] = [
        {
            "id": a.id,
            "direction": a.direction,
            "sender_type": a.sender_type,
            "internal": a.internal,
            "message_id": a.message_id,
            "from": a.from_addr,
            "from_name": a.from_name,
            "to": a.to_addrs,
            "cc": a.cc_addrs,
            "subject": a.subject,
            "created_at": _iso(a.created_at),
            "unparsed": a.unparsed,
            "problem": a.problem,
            "body": a.body_text,
            "attachments": [
                {
                    "filename": f.filename,
                    "content_type": f.content_type,
                    "size": f.size,
                    "sha256": f.sha256,
                }
                for f in a.attachments
            ],
        }
        for a in articles
    ]
    out["history"] = [
        {"at": _iso(h.created_at), "type": h.type, "actor": h.actor, "detail": json.loads(h.detail)}
        for h in session.execute(
            select(History).where(History.ticket_id == ticket.id).order_by(History.id)
        ).scalars()
    ]
    out["outbox"] = [
        {
            "id": o.id,
            "kind": o.kind,
            "to": o.rcpt_to,
            "status": o.status,
            "message_id": o.message_id,
            "created_at": _iso(o.created_at),
        }
        for o in session.execute(
            select(Outbox).where(Outbox.ticket_id == ticket.id).order_by(Outbox.id)
        ).scalars()
    ]
    return out


def create(
    config: Config, customer: str, subject: str, queue: str, body: str, *, ack: bool
) -> Result:
    """A phone ticket: a mail as the customer would have written it, through the pipeline.

    Its Message-ID is in phone.<our domain>, which tells it from mail we sent
    (classify treats our own domain as automatic) and from the customer's own mail.
    """
    from email.headerregistry import Address
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid, parseaddr

    from otrs_mailgate.ingest.pipeline import Pipeline
    from otrs_mailgate.mail.parse import POLICY
    from otrs_mailgate.mail.subject import clean

    name, address = parseaddr(customer)
    if "@" not in address:
        raise ValueError(f"{customer!r} is not a mail address")
    queue_config = config.queue_by_name(queue)
    assert queue_config is not None
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(clean(name), addr_spec=address)
    msg["To"] = queue_config.addresses[0]
    msg["Subject"] = clean(subject)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid("phone", domain=f"phone.{config.system.domain}")
    msg["X-OTRS-Mailgate-Origin"] = "phone"
    msg.set_content(body or "(entered by phone)")
    pipeline = Pipeline(config, acknowledge=ack)
    try:
        return pipeline.deliver_one(msg.as_bytes(), queue_config.addresses[0], address, queue=queue)
    finally:
        pipeline.engine.dispose()
