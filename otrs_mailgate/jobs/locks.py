"""Locks lapse after agents.lock_minutes without activity; this writes that down.

A lapsed lock already counts as no lock for commands (agentmail checks the
time); the sweep (from the daemon every minute, or `otrs-mailgate locks expire`)
clears it and records the unlock in each ticket's history.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from otrs_mailgate.store.models import Ticket, utcnow
from otrs_mailgate.tickets import state


def expire(session: Session, now: dt.datetime | None = None, limit: int = 500) -> int:
    now = now or utcnow()
    rows = session.execute(
        select(Ticket.id, Ticket.lock_until)
        .where(Ticket.lock_until.is_not(None), Ticket.lock_until <= now)
        .order_by(Ticket.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for ticket_id, until in rows:
        state.unlock(session, ticket_id, actor="system", reason="lock timed out", was_until=until)
    return len(rows)
