"""Agents who follow a ticket they do not own (OTRS's ticket watch).

A watcher gets the notifications the owner gets (follow-ups, changes by others,
escalations, pending reminders) while it holds a grant on the ticket's queue: the
grant is checked when each mail is decided (outbound/notify.to_agents), so a watcher
who loses the grant stops hearing at once and hears again if it comes back.
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.orm import Session

from otrs_mailgate.store import db
from otrs_mailgate.store.models import Ticket, TicketWatcher, utcnow
from otrs_mailgate.tickets import agents, history
from otrs_mailgate.tickets.agents import AgentRef

_W = TicketWatcher.__table__


def watch(session: Session, ticket_id: int, agent: AgentRef, *, actor: str) -> bool:
    """Add the agent; False when it watched already."""
    added = db.insert_ignore(
        session, TicketWatcher, ticket_id=ticket_id, agent_id=agent.id, created_at=utcnow()
    )
    if added:
        history.append(session, ticket_id, "WatcherAdded", actor, agent=agent.login)
    return bool(added)


def unwatch(session: Session, ticket_id: int, agent: AgentRef, *, actor: str) -> bool:
    """Remove the agent; False when it did not watch."""
    gone = session.connection().execute(
        delete(TicketWatcher).where(_W.c.ticket_id == ticket_id, _W.c.agent_id == agent.id)
    )
    if gone.rowcount:
        history.append(session, ticket_id, "WatcherRemoved", actor, agent=agent.login)
    return bool(gone.rowcount)


_SEL_OF = (
    select(_W.c.agent_id)
    .where(_W.c.ticket_id == bindparam("t"))
    .order_by(_W.c.created_at, _W.c.agent_id)
)


def of(conn: Connection, ticket_id: int) -> list[AgentRef]:
    """The ticket's watchers, enabled or not (the page lists them all)."""
    ids = conn.execute(_SEL_OF, {"t": ticket_id}).scalars().all()
    found = [agents.by_id(conn, i) for i in ids]
    return [a for a in found if a is not None]


def watched_by(conn: Connection, agent_id: int) -> list[int]:
    """The ids of the tickets an agent watches, newest first."""
    rows = conn.execute(
        select(_W.c.ticket_id)
        .join(Ticket, Ticket.id == _W.c.ticket_id)
        .where(_W.c.agent_id == agent_id)
        .order_by(Ticket.updated_at.desc())
    )
    return list(rows.scalars())


def copy(session: Session, source_id: int, target_id: int, *, actor: str) -> list[str]:
    """The source's watchers also watch the target (a merge, a split); their logins."""
    added = []
    for agent in of(session.connection(), source_id):
        if agent.enabled and watch(session, target_id, agent, actor=actor):
            added.append(agent.login)
    return added
