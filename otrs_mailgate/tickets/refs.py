"""TicketRef: what the pipeline, the commands and the jobs need of a ticket, without an
ORM object, and the one way to load it (locked, following merges)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select

from otrs_mailgate.store.models import Queue, Ticket

OPEN_STATES = ("new", "open", "pending")
MAX_MERGE_HOPS = 20


@dataclass
class TicketRef:
    """A ticket row as the transaction that locked it sees it; state.py keeps it current."""

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

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


def load(conn: Connection, ticket_id: int) -> TicketRef:
    """A ticket locked FOR UPDATE, following merges to the ticket that lives on."""
    ticket = None
    for _ in range(MAX_MERGE_HOPS):
        ticket = TicketRef(*conn.execute(_SEL_TICKET_FOR_UPDATE, {"id": ticket_id}).one())
        if ticket.merged_into_id is None:
            return ticket
        ticket_id = ticket.merged_into_id
    assert ticket is not None
    return ticket


def number_of(conn: Connection, ticket_id: int) -> str | None:
    return conn.execute(_SEL_NUMBER, {"id": ticket_id}).scalar()


def id_of(conn: Connection, number: str) -> int | None:
    return conn.execute(_SEL_ID_BY_NUMBER, {"n": number}).scalar()


_T, _Q = Ticket.__table__, Queue.__table__
_SEL_NUMBER = select(_T.c.number).where(_T.c.id == bindparam("id"))
_SEL_ID_BY_NUMBER = select(_T.c.id).where(_T.c.number == bindparam("n"))
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
