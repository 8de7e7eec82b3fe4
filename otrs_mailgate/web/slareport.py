"""`otrs-mailgate sla report`: per queue, how many tickets kept each service level time.

For the tickets created in [start, end), judged by the SLA that applies to them
now (config), in working time of its calendar:

- first response: met when the first agent answer came within the time; missed
  when it came later, or when none came and the deadline has passed; running
  while none came and the deadline lies ahead (a ticket closed unanswered counts
  in none of these);
- solution: the same with the close;
- update: missed when an update deadline passed without an agent answer (the
  scheduler records each such level-1 escalation), met otherwise.

Medians and 90th percentiles are of the working minutes to the first response
and to the close, over the tickets that have them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from otrs_mailgate.config.schema import Config
from otrs_mailgate.store.models import Company, Escalation, Queue, Ticket
from otrs_mailgate.tickets import sla
from otrs_mailgate.tickets.calendars import Calendar
from otrs_mailgate.web.stats import median_p90

CLOCK_COLUMNS = ("met", "missed", "running", "share")


@dataclass
class _Clock:
    met: int = 0
    missed: int = 0
    running: int = 0

    def judge(self, taken: dt.timedelta | None, limit: int, overdue: bool) -> None:
        if taken is not None:
            if taken <= dt.timedelta(minutes=limit):
                self.met += 1
            else:
                self.missed += 1
        elif overdue:
            self.missed += 1
        else:
            self.running += 1

    @property
    def share(self) -> float | None:
        judged = self.met + self.missed
        return round(self.met / judged, 4) if judged else None


@dataclass
class _Queue:
    tickets: int = 0
    clocks: dict[str, _Clock] = field(default_factory=lambda: {c: _Clock() for c in sla.CLOCKS})
    minutes: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in sla.CLOCKS})

    def judge(
        self,
        clock: str,
        cal: Calendar,
        start: dt.datetime,
        done: dt.datetime | None,
        limit: int,
        now: dt.datetime,
    ) -> None:
        """A clock that ran from start until done (None: still runs), against its limit."""
        taken = cal.working_time(start, done) if done is not None else None
        if taken is not None:
            self.minutes[clock].append(taken.total_seconds() / 60)
        self.clocks[clock].judge(taken, limit, now > cal.add(start, limit))


def build(
    conn: Connection,
    config: Config,
    start: dt.datetime,
    end: dt.datetime,
    queue: str | None = None,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """One row per queue (sorted by name), flat, ready for JSON or CSV."""
    now = now or dt.datetime.now(dt.UTC)
    where = [Ticket.created_at >= start, Ticket.created_at < end]
    if queue is not None:
        where.append(Queue.name == queue)
    tickets = conn.execute(
        select(
            Ticket.id,
            Ticket.created_at,
            Ticket.state,
            Ticket.priority,
            Ticket.first_response_at,
            Ticket.closed_at,
            Queue.name.label("queue"),
            Company.name.label("company"),
        )
        .join(Queue, Queue.id == Ticket.queue_id)
        .outerjoin(Company, Company.id == Ticket.company_id)
        .where(*where)
    ).all()
    missed_update = set(
        conn.execute(
            select(Escalation.ticket_id)
            .join(Ticket, Ticket.id == Escalation.ticket_id)
            .join(Queue, Queue.id == Ticket.queue_id)
            .where(*where, Escalation.clock == "update", Escalation.level >= 1)
        ).scalars()
    )
    queues: dict[str, _Queue] = {}
    for t in tickets:
        q = queues.setdefault(t.queue, _Queue())
        q.tickets += 1
        rule = config.sla_for(t.queue, t.priority, t.company or "")
        if rule is None:
            continue
        cal = sla.calendar(config, rule.calendar)
        if rule.first_response and (t.first_response_at or t.state not in sla.DONE):
            q.judge(
                "first_response", cal, t.created_at, t.first_response_at, rule.first_response, now
            )
        if rule.solution and t.state != "merged":
            closed = t.closed_at if t.state == "closed" else None
            q.judge("solution", cal, t.created_at, closed, rule.solution, now)
        if rule.update:
            if t.id in missed_update:
                q.clocks["update"].missed += 1
            else:
                q.clocks["update"].met += 1
    return [_row(name, q) for name, q in sorted(queues.items())]


def _row(name: str, q: _Queue) -> dict[str, Any]:
    row: dict[str, Any] = {"queue": name, "tickets": q.tickets}
    for clock, counts in q.clocks.items():
        for column in CLOCK_COLUMNS:
            row[f"{clock}_{column}"] = getattr(counts, column)
    for what in ("first_response", "solution"):
        median, p90 = median_p90(q.minutes[what])
        row[f"{what}_median_minutes"], row[f"{what}_p90_minutes"] = median, p90
    return row


def text(rows: list[dict[str, Any]]) -> str:
    """The report as a person reads it: one block per queue."""
    if not rows:
        return "no tickets in this period"
    out = []
    for row in rows:
        out.append(f"{row['queue']}: {row['tickets']} ticket(s)")
        for clock in sla.CLOCKS:
            share = row[f"{clock}_share"]
            pct = "-" if share is None else f"{share * 100:.1f}%"
            out.append(
                f"  {clock.replace('_', ' '):15} within: {pct:>6}  met {row[f'{clock}_met']}, "
                f"missed {row[f'{clock}_missed']}, running {row[f'{clock}_running']}"
            )
        for what in ("first_response", "solution"):
            median, p90 = row[f"{what}_median_minutes"], row[f"{what}_p90_minutes"]
            if median is not None:
                out.append(
                    f"  {what.replace('_', ' '):15} median {median} min, 90th percentile {p90} min"
                )
    return "\n".join(out)
