"""Tickets for the CLI: queries shaped as plain dicts for text and JSON, and phone tickets."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import Config
from otrs_mailgate.store import search, searchquery
from otrs_mailgate.store.models import Article, History, Outbox, Queue, Ticket
from otrs_mailgate.tickets import watchers


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
        "company": ticket.company.name if ticket.company else None,
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
    out["watchers"] = [a.login for a in watchers.of(session.connection(), ticket.id)]
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
            "protection": json.loads(a.protection) if a.protection else None,
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
            "to": o.rcpt_to.replace("\n", ", "),
            "status": o.status,
            "message_id": o.message_id,
            "created_at": _iso(o.created_at),
        }
        for o in session.execute(
            select(Outbox).where(Outbox.ticket_id == ticket.id).order_by(Outbox.id)
        ).scalars()
    ]
    return out


def results(
    session: Session,
    config: Config,
    source: str,
    limit: int = 50,
    queue_ids: Collection[int] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Search as the CLI and the status page do: the tickets (newest match first) with
    the matching article's subject and a snippet, and whether there are more."""
    query = searchquery.parse(source)
    search.check_queues(query, config, source)
    found = search.hits(session.connection(), config, query, limit, queue_ids)
    more = len(found) > limit
    found = found[:limit]
    tickets = {
        t.id: t
        for t in session.scalars(select(Ticket).where(Ticket.id.in_([h.ticket_id for h in found])))
    }
    a = Article.__table__
    article_ids = [h.article_id for h in found if h.article_id is not None]
    articles = {
        row.id: row
        for row in session.execute(
            select(a.c.id, a.c.subject, a.c.body_text, a.c.created_at, a.c.internal).where(
                a.c.id.in_(article_ids)
            )
        )
    }
    out = []
    for h in found:
        row = summary(tickets[h.ticket_id])
        article = articles.get(h.article_id) if h.article_id is not None else None
        if article is not None:
            row["article"] = {
                "id": article.id,
                "subject": article.subject,
                "created_at": article.created_at.isoformat(),
                "internal": article.internal,
                "snippet": search.snippet(article.body_text or article.subject, query.text),
            }
        out.append(row)
    return out, more
