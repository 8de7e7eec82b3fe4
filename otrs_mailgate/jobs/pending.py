"""Pending tickets whose time is up: remind the owner, or close and tell the customer.

`pending=3d` sets pending_until.  When it comes, the queue's `pending` policy
decides: "remind" opens the ticket again and mails the owner (or the queue's
agents while nobody owns it) with a reply address to act at once; "close" closes
it and tells the customer how to take it up again (OTRS: pending auto close).
A customer's answer before then opens the ticket and voids the reminder (ingest).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.orm import Session

from otrs_mailgate.outbound import notify
from otrs_mailgate.site import Site
from otrs_mailgate.store.models import Ticket
from otrs_mailgate.tickets import customers, refs, sla, state

SUBJECT = {"en": "Pending time up", "de": "Wartezeit abgelaufen"}


def due(session: Session, now: dt.datetime, limit: int) -> Sequence[Row[Any, Any, Any]]:
    """Up to `limit` tickets whose pending time is up, locked (SKIP LOCKED) for this pass."""
    return session.connection().execute(_SEL_DUE, {"now": now, "limit": limit}).all()


def handle(site: Site, session: Session, row: Row[Any, Any, Any], now: dt.datetime) -> str:
    """One ticket whose pending time is up: "reminded", "closed", or "" when it had left
    the pending state without its time being cleared (nothing to do but clear it)."""
    conn = session.connection()
    state.clear_pending(session, row.id)
    if row.state != "pending":
        return ""
    config = site.config
    ticket = refs.load(conn, row.id)
    queue = config.queue_by_name(ticket.queue) or config.queue[0]
    close = queue.pending == "close"
    reason = "pending time up, " + ("auto close" if close else "reminder")
    new = "closed" if close else "open"
    state.set_state(session, ticket, new, actor="system", reason=reason, now=now)
    if close:
        notify.tell_customer(site, session, ticket, "customer_autoclosed", queue)
    else:
        notify.to_agents(
            site,
            session,
            ticket,
            queue,
            notify.followers(session, ticket),
            template="pending_reminder",
            subject=f"{SUBJECT.get(config.system.language, SUBJECT['en'])}: {ticket.title}",
            vars={
                "until": row.pending_until.isoformat(timespec="minutes"),
                "customer": customers.label(conn, ticket.customer_id),
            },
            history_type="PendingReminder",
        )
    sla.recompute(conn, config, row.id)
    return new if close else "reminded"


_T = Ticket.__table__
_SEL_DUE = (
    select(_T.c.id, _T.c.state, _T.c.pending_until)
    .where(_T.c.pending_until.is_not(None), _T.c.pending_until <= bindparam("now"))
    .order_by(_T.c.pending_until)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
