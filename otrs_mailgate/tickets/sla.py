"""Service level clocks: a ticket's three due instants, and when each may escalate.

- first response: from the ticket's creation until the first agent answer to the
  customer (a note does not count);
- update: from the customer's first article that no agent answer has followed yet
  (writing again does not push the deadline out); a pending ticket stops it, as
  OTRS does;
- solution: from creation until the ticket is closed (or merged).

Each due instant is `calendar.add(start, minutes)` of the SLA that names the
ticket's queue and priority; NULL when no SLA applies or the clock does not run.
Every clock has firing instants: the warning (level 0) at notify_before percent of
its time, level 1 at the deadline, each further level `after` working minutes
later.  The ticket keeps the earliest instant not yet handled in escalation_at,
so the scheduler reads only tickets whose time has come.

recompute() runs after every event that can move a clock (articles, state,
priority, queue).  It keeps this invariant: every firing instant earlier than
escalation_at has been handled, for the due instants the ticket holds.  A clock
whose due instant moved has had none of its levels handled (the fired key holds
the due instant), so all of them count again: that is how levels re-arm.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, or_, select

from otrs_mailgate.config.schema import CalendarConfig, Config, SLAConfig
from otrs_mailgate.store.models import Article, Company, Queue, Ticket
from otrs_mailgate.tickets import state
from otrs_mailgate.tickets.calendars import Calendar

DONE = ("closed", "merged")
CLOCKS = ("first_response", "update", "solution")


_CALENDARS: dict[str, Calendar] = {}


def calendar(config: Config, name: str) -> Calendar:
    """The named calendar, built once per distinct definition (a reload may change it;
    its index of working time is then built again, once)."""
    found: CalendarConfig = next(c for c in config.calendar if c.name == name)
    known = _BY_OBJECT.get(id(found))
    if known is not None and known[0] is found:
        return known[1]
    key = found.model_dump_json()
    if key not in _CALENDARS:
        _CALENDARS[key] = Calendar(found)
    _BY_OBJECT[id(found)] = (found, _CALENDARS[key])
    return _CALENDARS[key]


_BY_OBJECT: dict[int, tuple[CalendarConfig, Calendar]] = {}


@dataclass(frozen=True)
class Clock:
    name: str  # one of CLOCKS
    start: dt.datetime
    due: dt.datetime
    minutes: int


@dataclass(frozen=True)
class Firing:
    clock: Clock
    level: int  # 0: the warning before the deadline; 1, 2, ...: escalation levels
    at: dt.datetime


def running(conn: Connection, config: Config, t: Any) -> tuple[SLAConfig | None, list[Clock]]:
    """The SLA of a ticket row (from select_ticket) and its clocks that run now."""
    rule = config.sla_for(t.queue, t.priority, t.company or "")
    if rule is None or t.state in DONE:
        return rule, []
    cal = calendar(config, rule.calendar)
    starts: list[tuple[str, dt.datetime, int]] = []
    if rule.first_response and t.first_response_at is None:
        starts.append(("first_response", t.created_at, rule.first_response))
    if rule.update and t.state != "pending":
        waiting = conn.execute(_SEL_WAITING, {"id": t.id}).scalar()
        if waiting is not None:
            starts.append(("update", _aware(waiting), rule.update))
    if rule.solution:
        starts.append(("solution", t.created_at, rule.solution))
    return rule, [Clock(name, s, cal.add(s, minutes), minutes) for name, s, minutes in starts]


def firings(config: Config, rule: SLAConfig, clock: Clock) -> Iterator[Firing]:
    """The warning and every escalation level of one clock, in order of time, each
    computed only when asked for (most callers want the first that is due)."""
    cal = calendar(config, rule.calendar)
    if rule.notify_before:
        yield Firing(clock, 0, cal.add(clock.start, clock.minutes * rule.notify_before / 100))
    at = clock.due
    for number, level in enumerate(rule.escalation, 1):
        at = cal.add(at, level.after)
        yield Firing(clock, number, at)


def recompute(conn: Connection, config: Config, ticket_id: int) -> None:
    """Write a ticket's due instants and its next escalation instant after an event."""
    if not config.sla:
        return
    t = conn.execute(SEL_TICKET, {"id": ticket_id}).one()
    rule, clocks = running(conn, config, t)
    pending = []
    for clock in clocks:
        moved = clock.due != getattr(t, f"{clock.name}_due")
        assert rule is not None
        # a clock's firings come in order of time: its first one not yet handled is
        # the only one that can be the ticket's next
        first = next(
            (
                f.at
                for f in firings(config, rule, clock)
                if moved or (t.escalation_at is not None and f.at >= t.escalation_at)
            ),
            None,
        )
        if first is not None:
            pending.append(first)
    store(conn, ticket_id, clocks, min(pending, default=None))


def initial(
    config: Config, queue: str, priority: int, company: str, created: dt.datetime
) -> dict[str, dt.datetime | None]:
    """The clock columns of a ticket made from a customer's article of `created`: what
    recompute would find, from what the caller knows, so they go into the ticket's
    INSERT (issue 31: most mail makes a new ticket; no read, no UPDATE)."""
    rule = config.sla_for(queue, priority, company)
    if rule is None:
        return {}
    cal = calendar(config, rule.calendar)
    times = zip(CLOCKS, (rule.first_response, rule.update, rule.solution), strict=True)
    clocks = [Clock(name, created, cal.add(created, m), m) for name, m in times if m]
    first = [f.at for c in clocks for f in itertools.islice(firings(config, rule, c), 1)]
    values: dict[str, dt.datetime | None] = {f"{c.name}_due": c.due for c in clocks}
    values["escalation_at"] = min(first, default=None)
    return values


def store(
    conn: Connection, ticket_id: int, clocks: Iterable[Clock], next_at: dt.datetime | None
) -> None:
    values: dict[str, object] = {f"{name}_due": None for name in CLOCKS}
    for clock in clocks:
        values[f"{clock.name}_due"] = clock.due
    values["escalation_at"] = next_at
    state.set_clocks(conn, ticket_id, values)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


_T, _A = Ticket.__table__, Article.__table__
# Locked: on PostgreSQL a scheduler pass and an ingest transaction take the ticket's
# row in turn, so neither computes from instants the other is changing.
SEL_TICKET = (
    select(
        _T.c.id,
        _T.c.created_at,
        _T.c.state,
        _T.c.priority,
        _T.c.owner_id,
        _T.c.first_response_at,
        _T.c.first_response_due,
        _T.c.update_due,
        _T.c.solution_due,
        _T.c.escalation_at,
        Queue.__table__.c.name.label("queue"),
        Company.__table__.c.name.label("company"),
    )
    .join(Queue.__table__, Queue.__table__.c.id == _T.c.queue_id)
    .outerjoin(Company.__table__, Company.__table__.c.id == _T.c.company_id)
    .where(_T.c.id == bindparam("id"))
    .with_for_update(of=_T)
)
_ANSWERED = (
    select(func.max(_A.c.created_at))
    .where(
        _A.c.ticket_id == bindparam("id"),
        _A.c.sender_type == "agent",
        _A.c.internal.is_(False),
    )
    .scalar_subquery()
)
# The first customer article since the last agent answer: writing again does not push
# the deadline out (OTRS counts the update time the same way).
_SEL_WAITING = select(func.min(_A.c.created_at)).where(
    _A.c.ticket_id == bindparam("id"),
    _A.c.sender_type == "customer",
    or_(_ANSWERED.is_(None), _A.c.created_at > _ANSWERED),
)
