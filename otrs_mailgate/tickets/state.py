"""The one place that writes ticket rows: state, owner, lock, queue, priority, pending,
merge and the clocks' instants. Every change that a person would ask about also goes
into the ticket's history here, so no caller can change a ticket without a trace.

Callers hold the ticket (new, or loaded FOR UPDATE by refs.load); the TicketRef they
pass is kept current, so later steps of the same transaction see the new values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, bindparam, insert, update
from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import Config
from otrs_mailgate.mail.compose import MAX_SUBJECT, bounded
from otrs_mailgate.mail.ticketnumber import generate
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Ticket
from otrs_mailgate.tickets import history, watchers
from otrs_mailgate.tickets.refs import OPEN_STATES, TicketRef


def create(session: Session, values: Mapping[str, Any]) -> int:
    """A new ticket row; its history chain starts here."""
    ticket_id = int(db.prepared(_INS).scalar(session.connection(), dict(values)))
    history.start_chain(session, ticket_id)
    return ticket_id


def open_ticket(
    session: Session,
    config: Config,
    *,
    queue: str,
    queue_id: int,
    title: str,
    customer_id: int | None,
    language: str,
    priority: int,
    now: dt.datetime,
    actor: str,
    company_id: int | None = None,
    clocks: Mapping[str, Any] | None = None,
    **detail: Any,
) -> TicketRef:
    """A new ticket with a new number (config.system.ticket_number), its NewTicket
    history first: for mail, phone tickets and splits alike.  The title is cut to what
    a subject line of ours carries (the whole subject stays in the raw mail, issue 25)."""
    title = bounded(title, MAX_SUBJECT)
    today = dt.datetime.now().date()  # the local date, as people read the number
    number = generate(
        config.system.ticket_number,
        config.system.id,
        lambda name: db.next_counter(session, name),
        today,
    )
    ticket_id = create(
        session,
        {
            "number": number,
            "title": title,
            "queue_id": queue_id,
            "customer_id": customer_id,
            "company_id": company_id,
            "state": "new",
            "priority": priority,
            "language": language,
            "created_at": now,
            "updated_at": now,
            **(clocks or {}),  # due instants known from the start (sla.initial)
        },
    )
    history.append(session, ticket_id, "NewTicket", actor, number=number, queue=queue, **detail)
    return TicketRef(ticket_id, number, "new", queue, language, title, None, queue_id, customer_id)


def touch(session: Session, ticket_id: int, now: dt.datetime) -> None:
    session.connection().execute(_UPD, {"_id": ticket_id, "updated_at": now})


def set_state(
    session: Session,
    ticket: TicketRef,
    state: str,
    *,
    actor: str,
    reason: str,
    now: dt.datetime,
    pending_until: dt.datetime | None = None,
) -> str:
    """Move a ticket to `state` (idempotent); returns what the customer may be told of
    it ("closed", "pending", "reopened") or ""."""
    if ticket.state == state and pending_until is None:
        return ""
    values: dict[str, Any] = {
        "_id": ticket.id,
        "state": state,
        "updated_at": now,
        "closed_at": now if state == "closed" else None,
        "pending_until": pending_until,
    }
    session.connection().execute(_UPD, values)
    history.append(
        session, ticket.id, "StateUpdate", actor, old=ticket.state, new=state, reason=reason
    )
    event = state if state in ("closed", "pending") else ""
    if ticket.state in ("closed", "merged") and state in OPEN_STATES:
        event = "reopened"
    ticket.state = state
    ticket.closed_at = values["closed_at"]
    return event


def clear_pending(session: Session, ticket_id: int) -> None:
    """The pending time is dealt with (the state may have moved on without it)."""
    session.connection().execute(_UPD, {"_id": ticket_id, "pending_until": None})


def set_priority(
    session: Session, ticket: TicketRef, level: int, *, actor: str, now: dt.datetime
) -> None:
    session.connection().execute(_UPD, {"_id": ticket.id, "priority": level, "updated_at": now})
    history.append(session, ticket.id, "PriorityUpdate", actor, new=level)
    ticket.priority = level


def move(
    session: Session, ticket: TicketRef, queue: str, queue_id: int, *, actor: str, now: dt.datetime
) -> None:
    session.connection().execute(_UPD, {"_id": ticket.id, "queue_id": queue_id, "updated_at": now})
    history.append(session, ticket.id, "QueueMove", actor, old=ticket.queue, new=queue)
    ticket.queue, ticket.queue_id = queue, queue_id


def merge(
    session: Session, ticket: TicketRef, into: TicketRef, *, actor: str, now: dt.datetime
) -> None:
    """The ticket lives on in `into`; the target is a column, never text in history."""
    values = {"_id": ticket.id, "merged_into_id": into.id, "state": "merged", "closed_at": now}
    session.connection().execute(_UPD, {**values, "updated_at": now})
    history.append(session, ticket.id, "Merged", actor, into=into.number)
    history.append(session, into.id, "Merged", actor, merged=ticket.number)
    watchers.copy(session, ticket.id, into.id, actor=actor)  # OTRS: watchers follow the merge
    ticket.merged_into_id, ticket.state, ticket.closed_at = into.id, "merged", now


def lock(
    session: Session,
    ticket: TicketRef,
    owner_id: int,
    owner_login: str,
    until: dt.datetime,
    *,
    actor: str,
) -> None:
    """Owner and lock; the history says when the owner changed and how long it holds."""
    changed = owner_id != ticket.owner_id
    session.connection().execute(
        _UPD, {"_id": ticket.id, "owner_id": owner_id, "lock_until": until}
    )
    if changed:
        history.append(session, ticket.id, "OwnerUpdate", actor, owner=owner_login)
    history.append(session, ticket.id, "Lock", actor, owner=owner_login, until=until.isoformat())
    ticket.owner_id, ticket.lock_until = owner_id, until


def extend_lock(session: Session, ticket: TicketRef, until: dt.datetime) -> None:
    """Activity by the holder keeps its lock alive (no history line: nothing changed hands)."""
    session.connection().execute(_UPD, {"_id": ticket.id, "lock_until": until})
    ticket.lock_until = until


def unlock(session: Session, ticket_id: int, *, actor: str, **detail: Any) -> None:
    session.connection().execute(_UPD, {"_id": ticket_id, "lock_until": None})
    history.append(session, ticket_id, "Unlock", actor, **detail)


def first_response(session: Session, ticket_id: int, now: dt.datetime) -> None:
    """The first answer stops the first-response clock (later answers leave it)."""
    session.connection().execute(
        update(_T)
        .where(_T.c.id == ticket_id, _T.c.first_response_at.is_(None))
        .values(first_response_at=now)
    )


def set_clocks(session_or_conn: Any, ticket_id: int, values: Mapping[str, Any]) -> None:
    """The SLA clocks' due instants and the next escalation instant (sla.recompute)."""
    session_or_conn.execute(_UPD, {**values, "_id": ticket_id})


def retry_later(session: Session, ticket_id: int, column: Column[Any], at: dt.datetime) -> None:
    """A ticket a job failed on waits until `at` for its next try (pending or escalation)."""
    session.execute(update(_T).where(_T.c.id == ticket_id).values({column: at}))


_T = Ticket.__table__
_INS = insert(_T).returning(_T.c.id)
_UPD = update(_T).where(_T.c.id == bindparam("_id"))
