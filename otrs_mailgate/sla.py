"""Service level clocks: a ticket's three due instants, recomputed from what happened.

- first response: from the ticket's creation until the first agent answer to the
  customer (a note does not count);
- update: from the customer's latest article that no agent answer has followed yet;
  a pending ticket stops this clock, as OTRS does;
- solution: from creation until the ticket is closed (or merged).

Each is `calendar.add(start, minutes)` of the SLA that names the ticket's queue and
priority; NULL when no SLA applies or the clock does not run.  recompute() is
called after every event that can move one (articles, state, priority, queue).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, bindparam, func, select, update

from .calendars import Calendar
from .config import CalendarConfig, Config
from .models import Article, Queue, Ticket

DONE = ("closed", "merged")


_CALENDARS: dict[str, Calendar] = {}


def calendar(config: Config, name: str) -> Calendar:
    """The named calendar, built once per distinct definition (a reload may change it)."""
    found: CalendarConfig = next(c for c in config.calendar if c.name == name)
    key = found.model_dump_json()
    if key not in _CALENDARS:
        _CALENDARS[key] = Calendar(found)
    return _CALENDARS[key]


def recompute(conn: Connection, config: Config, ticket_id: int) -> None:
    if not config.sla:
        return
    t = conn.execute(_SEL_TICKET, {"id": ticket_id}).one()
    rule = config.sla_for(t.queue, t.priority)
    due: dict[str, dt.datetime | None] = {
        "first_response_due": None,
        "update_due": None,
        "solution_due": None,
    }
    if rule is not None and t.state not in DONE:
        cal = calendar(config, rule.calendar)
        if rule.first_response and t.first_response_at is None:
            due["first_response_due"] = cal.add(t.created_at, rule.first_response)
        if rule.solution:
            due["solution_due"] = cal.add(t.created_at, rule.solution)
        if rule.update and t.state != "pending":
            customer, agent = conn.execute(_SEL_LAST, {"id": ticket_id}).one()
            if customer is not None and (agent is None or agent < customer):
                due["update_due"] = cal.add(_aware(customer), rule.update)
    conn.execute(update(Ticket).where(Ticket.id == ticket_id).values(**due))


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


_T, _A = Ticket.__table__, Article.__table__
_SEL_TICKET = (
    select(
        _T.c.created_at,
        _T.c.state,
        _T.c.priority,
        _T.c.first_response_at,
        Queue.__table__.c.name.label("queue"),
    )
    .join(Queue.__table__, Queue.__table__.c.id == _T.c.queue_id)
    .where(_T.c.id == bindparam("id"))
)
_SEL_LAST = select(
    select(func.max(_A.c.created_at))
    .where(_A.c.ticket_id == bindparam("id"), _A.c.sender_type == "customer")
    .scalar_subquery(),
    select(func.max(_A.c.created_at))
    .where(
        _A.c.ticket_id == bindparam("id"),
        _A.c.sender_type == "agent",
        _A.c.internal.is_(False),
    )
    .scalar_subquery(),
)
