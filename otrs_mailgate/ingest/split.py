"""Split: an article becomes a ticket of its own (OTRS's Split; the customer wrote about
two things).  Asked by mail (`split` in a reply to the article's notification) or by
`otrs-mailgate ticket split N --article ID`.

The article is copied, not moved: the old ticket's history already names it, and a
chain that is append-only cannot take an article back; the copy shares the raw bytes
and attachment blobs, so nothing is stored twice.  Both tickets' histories point at
each other, a `split-from` link joins them, and the customer is told the new number.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from otrs_mailgate.outbound import notify
from otrs_mailgate.site import Site
from otrs_mailgate.store.models import Article, Customer, TicketLink
from otrs_mailgate.tickets import articles, history, refs, sla, state, watchers
from otrs_mailgate.tickets.refs import TicketRef


class SplitError(ValueError):
    """A split that cannot be done; the message says why."""


def article_of(session: Session, ticket: TicketRef, article_id: int) -> Article:
    row = session.get(Article, article_id)
    if row is None or row.ticket_id != ticket.id:
        raise SplitError(f"ticket {ticket.number} has no article {article_id}")
    return row


def article_replied_to(session: Session, ticket: TicketRef, message_ids: list[str]) -> int | None:
    """The ticket's newest article among the Message-IDs a reply names (In-Reply-To and
    References: a reply to a notification names the customer mail it was about)."""
    wanted = [m for m in message_ids if m][:50]
    if not wanted:
        return None
    found = session.connection().execute(_SEL_BY_MID, {"t": ticket.id, "ids": wanted}).first()
    return int(found.id) if found is not None else None


def split(
    site: Site,
    session: Session,
    ticket: TicketRef,
    article_id: int,
    actor: str,
    now: dt.datetime,
    *,
    tell: bool = True,
) -> TicketRef:
    """A new ticket in the same queue from one article of `ticket` (see module doc)."""
    article = article_of(session, ticket, article_id)
    conn = session.connection()
    customer_id = ticket.customer_id
    if article.sender_type == "customer" and article.from_addr:
        found = conn.execute(select(Customer.id).where(Customer.address == article.from_addr))
        customer_id = found.scalar() or customer_id
    company_id = conn.execute(
        select(Customer.company_id).where(Customer.id == customer_id)
    ).scalar()
    title = site.tags.remove(article.subject).strip() or ticket.title
    new = state.open_ticket(
        session,
        site.config,
        queue=ticket.queue,
        queue_id=ticket.queue_id,
        title=title,
        customer_id=customer_id,
        company_id=company_id,
        language=ticket.language,
        priority=ticket.priority,
        now=now,
        actor=actor,
        split_from=ticket.number,
        article=article_id,
    )
    copied = articles.copy(session, article_id, new)
    watchers.copy(session, ticket.id, new.id, actor=actor)  # who followed the old one follows
    conn.execute(
        TicketLink.__table__.insert(),
        {"source_id": new.id, "target_id": ticket.id, "kind": "split-from", "created_at": now},
    )
    history.append(
        session, ticket.id, "Split", actor, article=article_id, new_ticket=new.number,
        copied_as=copied,
    )  # fmt: skip
    history.append(session, new.id, "SplitFrom", actor, ticket=ticket.number, article=copied)
    sla.recompute(conn, site.config, new.id)
    if tell:
        notify.tell_customer(
            site, session, new, "customer_split", site.queue_of(ticket.queue),
            old_tag=site.tags.tag(ticket.number),
        )  # fmt: skip
    return new


def load(session: Session, number: str) -> TicketRef:
    ticket_id = refs.id_of(session.connection(), number.strip())
    if ticket_id is None:
        raise SplitError(f"no ticket {number}")
    return refs.load(session.connection(), ticket_id)


_A = Article.__table__
_SEL_BY_MID = (
    select(_A.c.id)
    .where(_A.c.ticket_id == bindparam("t"), _A.c.message_id.in_(bindparam("ids", expanding=True)))
    .order_by(_A.c.id.desc())
    .limit(1)
)
