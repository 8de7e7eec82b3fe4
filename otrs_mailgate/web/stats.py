"""`otrs-mailgate stats` and the status page's reports: how many tickets came and went,
how long they took, who answered, who wrote most.

Periods are days, ISO weeks (starting Monday) or months of system.timezone.  Per
period: tickets created, closed (their last close lies in it; merged tickets count
as closed) and open at its end (created before the end and not closed by then;
a ticket reopened later counts as open since it was made, as only its last close
is kept on the ticket).  Times are wall-clock minutes: to the first agent answer,
for tickets created in the period; to the close, for tickets closed in it (the
SLA report measures working time instead).  Agents: replies to customers and
accounted time (time=) in the whole range; top senders: the customers with the
most new tickets in it.
"""

from __future__ import annotations

import bisect
import datetime as dt
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, or_, select

from otrs_mailgate.config.schema import Config
from otrs_mailgate.store.models import Agent, Article, Company, Customer, Queue, Ticket, TimeEntry

Period = Literal["day", "week", "month"]
PERIOD_COLUMNS = (
    "period",
    "start",
    "created",
    "closed",
    "open_at_end",
    "first_response_median_minutes",
    "first_response_p90_minutes",
    "close_median_minutes",
    "close_p90_minutes",
)
TOP_SENDERS = 10


def median_p90(values: list[float]) -> tuple[float | None, float | None]:
    """Median and 90th percentile (inclusive method), rounded to 0.1; None when empty."""
    if not values:
        return None, None
    p90 = (
        values[0] if len(values) == 1 else statistics.quantiles(values, n=10, method="inclusive")[8]
    )
    return round(statistics.median(values), 1), round(p90, 1)


def period_start(day: dt.date, by: Period) -> dt.date:
    if by == "week":
        return day - dt.timedelta(days=day.weekday())
    if by == "month":
        return day.replace(day=1)
    return day


def next_period(day: dt.date, by: Period) -> dt.date:
    if by == "day":
        return day + dt.timedelta(days=1)
    if by == "week":
        return day + dt.timedelta(days=7)
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def label(day: dt.date, by: Period) -> str:
    if by == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if by == "month":
        return day.strftime("%Y-%m")
    return day.isoformat()


@dataclass
class _Bucket:
    start: dt.date
    created: int = 0
    closed: int = 0
    open_at_end: int = 0

    def __post_init__(self) -> None:
        self.first_response: list[float] = []
        self.close: list[float] = []


def _minutes(later: dt.datetime, earlier: dt.datetime) -> float:
    return (later - earlier).total_seconds() / 60


def build(
    conn: Connection,
    config: Config,
    first: dt.date,
    last: dt.date,
    by: Period = "day",
    queues: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The report for the days first..last (inclusive) of system.timezone, over the
    named queues (None: all)."""
    zone = ZoneInfo(config.system.timezone)
    days: list[dt.date] = []
    day = period_start(first, by)
    while day <= last:
        days.append(day)
        day = next_period(day, by)
    bounds = [_instant(d, zone) for d in days] + [_instant(day, zone)]
    start, end = _instant(first, zone), _instant(last + dt.timedelta(days=1), zone)
    buckets = [_Bucket(d) for d in days]

    t = Ticket.__table__
    in_queue = []
    if queues is not None:
        in_queue.append(t.c.queue_id.in_(select(Queue.id).where(Queue.name.in_(queues))))
    junk = [q.name for q in config.queue if q.junk]
    if junk:  # spam is nobody's request: not in the figures, not among the top senders
        in_queue.append(t.c.queue_id.not_in(select(Queue.id).where(Queue.name.in_(junk))))
    closed_at = t.c.closed_at

    def bucket(instant: dt.datetime) -> _Bucket:
        return buckets[bisect.bisect_right(bounds, instant) - 1]

    created = conn.execute(
        select(t.c.created_at, t.c.first_response_at, t.c.customer_id).where(
            t.c.created_at >= bounds[0], t.c.created_at < bounds[-1], *in_queue
        )
    ).all()
    senders: Counter[int] = Counter()
    for row in created:
        b = bucket(row.created_at)
        b.created += 1
        if row.first_response_at is not None:
            b.first_response.append(_minutes(row.first_response_at, row.created_at))
        if row.customer_id is not None and start <= row.created_at < end:
            senders[row.customer_id] += 1
    closed = conn.execute(
        select(t.c.created_at, closed_at).where(
            closed_at >= bounds[0], closed_at < bounds[-1], *in_queue
        )
    ).all()
    for shut in closed:
        b = bucket(shut.closed_at)
        b.closed += 1
        b.close.append(_minutes(shut.closed_at, shut.created_at))
    open_now = conn.execute(
        select(func.count())
        .select_from(t)
        .where(t.c.created_at < bounds[0], or_(closed_at.is_(None), closed_at >= bounds[0]))
        .where(*in_queue)
    ).scalar_one()
    for b in buckets:
        open_now += b.created - b.closed
        b.open_at_end = open_now

    periods = [_row(b, by) for b in buckets]
    whole = _Bucket(first)
    for b in buckets:
        whole.created += b.created
        whole.closed += b.closed
        whole.first_response += b.first_response
        whole.close += b.close
    whole.open_at_end = open_now
    total = _row(whole, by)
    total["period"], total["start"] = "total", bounds[0].isoformat()
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "by": by,
        "queues": list(queues) if queues is not None else None,
        "timezone": config.system.timezone,
        "periods": periods,
        "total": total,
        "agents": _agents(conn, start, end, in_queue),
        "top_senders": _senders(conn, senders),
        "companies": _companies(conn, start, end, in_queue),
        "first_response_distribution": _distribution(whole.first_response),
    }


DISTRIBUTION = ((15, "< 15m"), (60, "15m-1h"), (240, "1h-4h"), (1440, "4h-1d"), (4320, "1d-3d"))


def _distribution(minutes: list[float]) -> list[dict[str, Any]]:
    """How many first responses came within each band (for the page's chart)."""
    edges = [edge for edge, _ in DISTRIBUTION]
    counts = [0] * (len(edges) + 1)
    for value in minutes:
        counts[bisect.bisect_right(edges, value)] += 1
    names = [name for _, name in DISTRIBUTION] + ["> 3d"]
    return [{"band": name, "tickets": n} for name, n in zip(names, counts, strict=True)]


def _instant(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


def _row(b: _Bucket, by: Period) -> dict[str, Any]:
    fr_median, fr_p90 = median_p90(b.first_response)
    close_median, close_p90 = median_p90(b.close)
    return {
        "period": label(b.start, by),
        "start": b.start.isoformat(),
        "created": b.created,
        "closed": b.closed,
        "open_at_end": b.open_at_end,
        "first_response_median_minutes": fr_median,
        "first_response_p90_minutes": fr_p90,
        "close_median_minutes": close_median,
        "close_p90_minutes": close_p90,
    }


def _agents(
    conn: Connection, start: dt.datetime, end: dt.datetime, in_queue: list[Any]
) -> list[dict[str, Any]]:
    a, ag, te, t = Article.__table__, Agent.__table__, TimeEntry.__table__, Ticket.__table__
    replies: dict[int, int] = dict(
        conn.execute(
            select(a.c.agent_id, func.count())
            .join(t, t.c.id == a.c.ticket_id)
            .where(
                a.c.agent_id.is_not(None),
                a.c.internal.is_(False),
                a.c.created_at >= start,
                a.c.created_at < end,
                *in_queue,
            )
            .group_by(a.c.agent_id)
        ).all()
    )
    minutes = dict(
        conn.execute(
            select(te.c.agent_id, func.sum(te.c.minutes))
            .join(t, t.c.id == te.c.ticket_id)
            .where(te.c.created_at >= start, te.c.created_at < end, *in_queue)
            .group_by(te.c.agent_id)
        ).all()
    )
    ids = set(replies) | set(minutes)
    logins = dict(conn.execute(select(ag.c.id, ag.c.login).where(ag.c.id.in_(ids))).all())
    rows = [
        {"agent": logins[i], "replies": replies.get(i, 0), "time_minutes": int(minutes.get(i, 0))}
        for i in ids
    ]
    return sorted(rows, key=lambda r: (-r["replies"], -r["time_minutes"], r["agent"]))


def _companies(
    conn: Connection, start: dt.datetime, end: dt.datetime, in_queue: list[Any]
) -> list[dict[str, Any]]:
    """The whole range by customer company (tickets without one as "(none)"): created,
    closed, open at its end, and the times to first response and to close."""
    t, co = Ticket.__table__, Company.__table__
    names = dict(conn.execute(select(co.c.id, co.c.name)).all())
    rows: dict[int | None, _Bucket] = {}

    def row(company_id: int | None) -> _Bucket:
        return rows.setdefault(company_id, _Bucket(start.date()))

    for created_at, answered, company_id in conn.execute(
        select(t.c.created_at, t.c.first_response_at, t.c.company_id).where(
            t.c.created_at >= start, t.c.created_at < end, *in_queue
        )
    ):
        b = row(company_id)
        b.created += 1
        if answered is not None:
            b.first_response.append(_minutes(answered, created_at))
    for created_at, closed_at, company_id in conn.execute(
        select(t.c.created_at, t.c.closed_at, t.c.company_id).where(
            t.c.closed_at >= start, t.c.closed_at < end, *in_queue
        )
    ):
        b = row(company_id)
        b.closed += 1
        b.close.append(_minutes(closed_at, created_at))
    for company_id, count in conn.execute(
        select(t.c.company_id, func.count())
        .where(t.c.created_at < end, or_(t.c.closed_at.is_(None), t.c.closed_at >= end), *in_queue)
        .group_by(t.c.company_id)
    ):
        row(company_id).open_at_end = count
    out = []
    for company_id, b in rows.items():
        data = _row(b, "day")
        del data["period"], data["start"]
        out.append({"company": names.get(company_id, "(none)") if company_id else "(none)", **data})
    return sorted(out, key=lambda r: (r["company"] == "(none)", -r["created"], r["company"]))


def _senders(conn: Connection, senders: Counter[int]) -> list[dict[str, Any]]:
    top = sorted(senders.items(), key=lambda item: (-item[1], item[0]))[:TOP_SENDERS]
    c = Customer.__table__
    addresses = dict(
        conn.execute(select(c.c.id, c.c.address).where(c.c.id.in_([i for i, _ in top]))).all()
    )
    return [{"address": addresses[i], "tickets": n} for i, n in top]


def text(report: dict[str, Any]) -> str:
    """The report as a person reads it."""
    head = f"{report['from']} .. {report['to']} by {report['by']}"
    if report["queues"] is not None:
        head += f", queues {', '.join(report['queues'])}"
    out = [head + f" ({report['timezone']})", ""]
    out.append(f"{'period':<12} {'created':>7} {'closed':>7} {'open':>6}  first response  close")
    for row in [*report["periods"], report["total"]]:
        out.append(
            f"{row['period']:<12} {row['created']:>7} {row['closed']:>7} {row['open_at_end']:>6}"
            f"  {_pair(row, 'first_response'):<14}  {_pair(row, 'close')}"
        )
    out.append("(times: median / 90th percentile, wall-clock)")
    if report["agents"]:
        out += ["", f"{'agent':<20} {'replies':>7} {'time':>8}"]
        for a in report["agents"]:
            out.append(f"{a['agent']:<20} {a['replies']:>7} {duration(a['time_minutes']):>8}")
    if report.get("by") == "company":
        out = [head + f" ({report['timezone']})", ""]
        out.append(
            f"{'company':<24} {'created':>7} {'closed':>7} {'open':>6}  first response  close"
        )
        for row in report["companies"]:
            out.append(
                f"{row['company'][:24]:<24} {row['created']:>7} {row['closed']:>7} "
                f"{row['open_at_end']:>6}  {_pair(row, 'first_response'):<14}  "
                f"{_pair(row, 'close')}"
            )
        out.append("(times: median / 90th percentile, wall-clock)")
        return "\n".join(out)
    if report["top_senders"]:
        out += ["", "top senders"]
        out += [f"  {s['tickets']:>5}  {s['address']}" for s in report["top_senders"]]
    return "\n".join(out)


def _pair(row: dict[str, Any], what: str) -> str:
    median, p90 = row[f"{what}_median_minutes"], row[f"{what}_p90_minutes"]
    if median is None:
        return "-"
    return f"{duration(median)} / {duration(p90)}"


def duration(minutes: float) -> str:
    """Minutes as 45m, 3h20m or 2d4h."""
    m = round(minutes)
    if m < 60:
        return f"{m}m"
    if m < 24 * 60:
        return f"{m // 60}h{m % 60:02d}m"
    return f"{m // 1440}d{(m % 1440) // 60}h"
