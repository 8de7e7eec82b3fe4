"""What the status page shows, read from the database as plain dicts (no HTML here).

A customer sees one ticket: its state and the articles that went between them
and us, never internal notes, and agents only under the queue's name (the
customer got their answers from the queue's address).  An agent sees the queues
they hold a grant for (ro or rw, directly or through a group) and nothing else.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from otrs_mailgate.config.schema import Config
from otrs_mailgate.mail.parse import Protection
from otrs_mailgate.store.models import (
    Agent,
    Article,
    Company,
    Customer,
    GroupMember,
    History,
    Queue,
    QueueGrant,
    Ticket,
    TicketWatcher,
)
from otrs_mailgate.tickets import articles as articles_mod
from otrs_mailgate.tickets import watchers
from otrs_mailgate.tickets.agents import AgentRef
from otrs_mailgate.tickets.sla import CLOCKS

OPEN = ("new", "open", "pending")
_T, _A, _Q = Ticket.__table__, Article.__table__, Queue.__table__
_W = TicketWatcher.__table__


def visible_queues(conn: Connection, agent: AgentRef) -> dict[int, str]:
    """Queue id -> name of the queues the agent may look at."""
    g, m = QueueGrant.__table__, GroupMember.__table__
    mine = (g.c.agent_id == agent.id) | g.c.group_id.in_(
        select(m.c.group_id).where(m.c.agent_id == agent.id)
    )
    rows = conn.execute(
        select(_Q.c.id, _Q.c.name).where(_Q.c.id.in_(select(g.c.queue_id).where(mine)))
    )
    return dict(sorted(rows.all(), key=lambda r: r[1]))


def _ticket_row(conn: Connection, where: Any) -> Any:
    c, o, co = Customer.__table__, Agent.__table__, Company.__table__
    return conn.execute(
        select(
            _T,
            _Q.c.name.label("queue"),
            c.c.address.label("customer"),
            o.c.login.label("owner"),
            co.c.name.label("company"),
        )
        .join(_Q, _Q.c.id == _T.c.queue_id)
        .outerjoin(c, c.c.id == _T.c.customer_id)
        .outerjoin(o, o.c.id == _T.c.owner_id)
        .outerjoin(co, co.c.id == _T.c.company_id)
        .where(where)
    ).first()


def _number_of(conn: Connection, ticket_id: int | None) -> str | None:
    if ticket_id is None:
        return None
    return conn.execute(select(_T.c.number).where(_T.c.id == ticket_id)).scalar()


def customer_ticket(conn: Connection, config: Config, ticket_id: int) -> dict[str, Any] | None:
    t = _ticket_row(conn, _T.c.id == ticket_id)
    if t is None:
        return None
    queue = config.queue_by_name(t.queue)
    queue_name = (queue.display_name or queue.name) if queue else t.queue
    files = _files_by_article(articles_mod.files(conn, ticket_id, public=True))
    rows = conn.execute(
        select(_A.c.id, _A.c.created_at, _A.c.sender_type, _A.c.from_name, _A.c.from_addr)
        .add_columns(_A.c.subject, _A.c.body_text, _A.c.direction, _A.c.protection)
        .where(
            _A.c.ticket_id == ticket_id,
            _A.c.internal.is_(False),
            _A.c.sender_type.in_(("customer", "agent")),
        )
        .order_by(_A.c.id)
    )
    articles = [
        {
            "created_at": a.created_at,
            "from_us": a.sender_type == "agent",
            "who": queue_name if a.sender_type == "agent" else (a.from_name or a.from_addr),
            "subject": a.subject,
            # what came encrypted is not put on a page a link opens (issue 29)
            "text": "(sent encrypted: not shown here)" if _encrypted(a.protection) else a.body_text,
            "files": files.get(a.id, []),
        }
        for a in rows
    ]
    return {
        "number": t.number,
        "title": t.title,
        "state": t.state,
        "queue": queue_name,
        "address": queue.addresses[0] if queue else "",
        "created_at": t.created_at,
        "closed_at": t.closed_at,
        "merged_into": _number_of(conn, t.merged_into_id),
        "articles": articles,
    }


def overview(
    conn: Connection,
    agent: AgentRef,
    queues: dict[int, str],
    now: dt.datetime,
    soonest: int = 15,
    raw: str = "",
) -> dict[str, Any]:
    """Open tickets per queue and state, how many are past a due instant, the tickets
    due soonest, the agent's locked tickets, and the open tickets of the raw queue
    (`raw`, system.catch_all) waiting to be dispatched, if the agent may see it.

    Every read follows one index and the queues are picked in Python: the open states
    through ix_ticket_state, the due instants through each clock's partial index (a
    clock's column is set only while it runs), so the page costs the same with a
    million closed tickets behind it and no planner is tempted by ix_ticket_queue_id.
    """
    counts = {qid: {"new": 0, "open": 0, "pending": 0, "overdue": 0} for qid in queues}
    rows = conn.execute(
        select(_T.c.queue_id, _T.c.state, func.count())
        .where(_T.c.state.in_(OPEN))
        .group_by(_T.c.queue_id, _T.c.state)
    )
    for qid, state, n in rows:
        if qid in counts:
            counts[qid][state] = n
    overdue: dict[int, int] = {}  # ticket id -> queue id (a ticket late on two clocks once)
    candidates: dict[str, dict[str, Any]] = {}
    for clock in CLOCKS:
        column = getattr(_T.c, f"{clock}_due")
        late = select(_T.c.id, _T.c.queue_id, _T.c.state).where(column < now)
        overdue.update(
            (r.id, r.queue_id)
            for r in conn.execute(late)
            if r.queue_id in queues and r.state in OPEN
        )
        for r in _soonest(conn, column, queues, soonest):
            seen = candidates.get(r.number)
            if seen is None or r.due < seen["due"]:
                candidates[r.number] = _listed(r) | {"due": r.due, "clock": clock}
    for qid in overdue.values():
        counts[qid]["overdue"] += 1
    escalating = sorted(candidates.values(), key=lambda c: c["due"])[:soonest]
    for item in escalating:
        item["overdue"] = item["due"] < now
    locked = [
        _listed(r) | {"lock_until": r.lock_until}
        for r in conn.execute(
            _listing()
            .add_columns(_T.c.lock_until)
            .where(_T.c.owner_id == agent.id, _T.c.lock_until > now, _T.c.state.in_(OPEN))
            .order_by(_T.c.lock_until)
        )
    ]
    # tickets the agent watches, open ones, in the queues it may still see
    watched = [
        _listed(r)
        for r in conn.execute(
            _listing()
            .add_columns(_T.c.queue_id)
            .join(_W, _W.c.ticket_id == _T.c.id)
            .where(_W.c.agent_id == agent.id, _T.c.state.in_(OPEN))
            .order_by(_T.c.updated_at.desc())
            .limit(100)
        )
        if r.queue_id in queues
    ]
    raw_id = next((qid for qid, name in queues.items() if name == raw), None) if raw else None
    waiting = []
    if raw_id is not None:
        waiting = [
            _listed(r)
            for r in conn.execute(
                _listing()
                .where(_T.c.queue_id == raw_id, _T.c.state.in_(OPEN))
                .order_by(_T.c.id.desc())
                .limit(50)
            )
        ]
    return {
        "queues": [
            {"id": qid, "name": name, "raw": qid == raw_id, **counts[qid]}
            for qid, name in queues.items()
        ],
        "escalating": escalating,
        "locked": locked,
        "watched": watched,
        "raw": raw if raw_id is not None else "",
        "undispatched": waiting,
    }


def _soonest(conn: Connection, column: Any, queues: dict[int, str], wanted: int) -> list[Any]:
    """The open tickets of the queues whose column comes soonest, read in the order of
    the column's partial index a page at a time (keyset on the column and the id)."""
    out: list[Any] = []
    last: tuple[Any, int] | None = None
    page = 4 * wanted
    while len(out) < wanted:
        stmt = (
            _listing()
            .add_columns(column.label("due"), _T.c.queue_id, _T.c.id)
            .where(column.is_not(None))
            .order_by(column, _T.c.id)
            .limit(page)
        )
        if last is not None:
            due, ticket_id = last
            stmt = stmt.where(or_(column > due, and_(column == due, _T.c.id > ticket_id)))
        rows = conn.execute(stmt).all()
        out += [r for r in rows if r.queue_id in queues and r.state in OPEN]
        if len(rows) < page:
            break
        last = (rows[-1].due, rows[-1].id)
        page = min(page * 4, 10_000)
    return out[:wanted]


def _listing() -> Any:
    return select(
        _T.c.number, _T.c.title, _T.c.state, _T.c.priority, _Q.c.name.label("queue")
    ).join(_Q, _Q.c.id == _T.c.queue_id)


def _listed(row: Any) -> dict[str, Any]:
    return {
        "number": row.number,
        "title": row.title,
        "state": row.state,
        "priority": row.priority,
        "queue": row.queue,
    }


def visible_ticket(conn: Connection, queues: dict[int, str], number: str) -> int | None:
    """The id of the ticket with this number if it lies in one of these queues."""
    row = conn.execute(select(_T.c.id, _T.c.queue_id).where(_T.c.number == number)).first()
    return row.id if row is not None and row.queue_id in queues else None


def agent_ticket(conn: Connection, queues: dict[int, str], number: str) -> dict[str, Any] | None:
    """One ticket with every article and its history, if it lies in a visible queue."""
    t = _ticket_row(conn, _T.c.number == number)
    if t is None or t.queue_id not in queues:
        return None
    ag = Agent.__table__
    files = _files_by_article(articles_mod.files(conn, t.id))
    articles = [
        dict(a._mapping) | {"files": files.get(a.id, []), "shield": _shield(a.protection)}
        for a in conn.execute(
            select(
                _A.c.id,
                _A.c.created_at,
                _A.c.direction,
                _A.c.sender_type,
                _A.c.internal,
                _A.c.from_name,
                _A.c.from_addr,
                _A.c.to_addrs,
                _A.c.cc_addrs,
                _A.c.subject,
                _A.c.body_text,
                _A.c.protection,
                ag.c.login.label("agent"),
            )
            .outerjoin(ag, ag.c.id == _A.c.agent_id)
            .where(_A.c.ticket_id == t.id)
            .order_by(_A.c.id)
        )
    ]
    h = History.__table__
    history = [
        {"created_at": r.created_at, "actor": r.actor, "type": r.type, "detail": _detail(r.detail)}
        for r in conn.execute(
            select(h.c.created_at, h.c.actor, h.c.type, h.c.detail)
            .where(h.c.ticket_id == t.id)
            .order_by(h.c.id)
        )
    ]
    return {
        "number": t.number,
        "title": t.title,
        "state": t.state,
        "priority": t.priority,
        "queue": t.queue,
        "customer": t.customer,
        "company": t.company,
        "watchers": [a.login for a in watchers.of(conn, t.id)],
        "owner": t.owner,
        "lock_until": t.lock_until,
        "pending_until": t.pending_until,
        "created_at": t.created_at,
        "closed_at": t.closed_at,
        "due": {c: getattr(t, f"{c}_due") for c in CLOCKS},
        "merged_into": _number_of(conn, t.merged_into_id),
        "articles": articles,
        "history": history,
    }


def _encrypted(text: str) -> bool:
    found = Protection.from_json(text)
    return found is not None and found.encrypted


def _shield(text: str) -> dict[str, Any] | None:
    """An article's OpenPGP / S/MIME marker for the page: its line and how to show it."""
    found = Protection.from_json(text)
    if found is None:
        return None
    good = (not found.encrypted or found.decrypted) and found.signature in ("", "valid")
    return {
        "line": found.line(),
        "encrypted": found.encrypted,
        "signature": found.signature,
        "good": good and found.signer_is_sender,
    }


def _files_by_article(found: list[articles_mod.FileRef]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for f in found:
        out.setdefault(f.article_id, []).append({"id": f.id, "name": f.filename, "size": f.size})
    return out


def _detail(raw: str) -> str:
    """A history row's JSON detail as key=value pairs."""
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        return raw
    if not isinstance(data, dict):
        return raw
    return ", ".join(f"{k}={v}" for k, v in data.items() if v not in (None, ""))
