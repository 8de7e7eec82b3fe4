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
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.orm import Session

from otrs_mailgate.outbound import notify
from otrs_mailgate.store.models import Ticket
from otrs_mailgate.tickets import customers, history, sla

if TYPE_CHECKING:
    from otrs_mailgate.ingest.pipeline import Pipeline

SUBJECT = {"en": "Pending time up", "de": "Wartezeit abgelaufen"}


def due(session: Session, now: dt.datetime, limit: int) -> Sequence[Row[Any]]:
    """Up to `limit` tickets whose pending time is up, locked (SKIP LOCKED) for this pass."""
    return session.connection().execute(_SEL_DUE, {"now": now, "limit": limit}).all()


def handle(pipeline: Pipeline, session: Session, row: Row[Any], now: dt.datetime) -> str:
    """One ticket whose pending time is up: "reminded", "closed", or "" when it had left
    the pending state without its time being cleared (nothing to do but clear it)."""
    conn = session.connection()
    conn.execute(_UPD, {"_id": row.id, "pending_until": None})
    if row.state != "pending":
        return ""
    config = pipeline.config
    ticket = pipeline.load_ticket(conn, row.id)
    queue = config.queue_by_name(ticket.queue) or config.queue[0]
    close = queue.pending == "close"
    state = "closed" if close else "open"
    conn.execute(
        _UPD,
        {"_id": row.id, "state": state, "closed_at": now if close else None, "updated_at": now},
    )
    history.append(
        session, row.id, "StateUpdate", "system", old="pending", new=state,
        reason="pending time up, " + ("auto close" if close else "reminder"),
    )  # fmt: skip
    ticket.state = state
    if close:
        notify.tell_customer(pipeline, session, ticket, "customer_autoclosed", queue)
    else:
        notify.to_agents(
            pipeline,
            session,
            ticket,
            queue,
            notify.owner_or_queue(session, ticket.owner_id, ticket.queue_id),
            template="pending_reminder",
            subject=f"{SUBJECT.get(config.system.language, SUBJECT['en'])}: {ticket.title}",
            vars={
                "until": row.pending_until.isoformat(timespec="minutes"),
                "customer": customers.label(conn, ticket.customer_id),
            },
            history_type="PendingReminder",
        )
    sla.recompute(conn, config, row.id)
    return state if close else "reminded"


_T = Ticket.__table__
_SEL_DUE = (
    select(_T.c.id, _T.c.state, _T.c.pending_until)
    .where(_T.c.pending_until.is_not(None), _T.c.pending_until <= bindparam("now"))
    .order_by(_T.c.pending_until)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_UPD = update(_T).where(_T.c.id == bindparam("_id"))
