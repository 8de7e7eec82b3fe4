"""Escalations: warn before a service level time passes, escalate level by level after.

visit() handles one ticket whose escalation_at has come: every firing instant up
to now fires once.  "Once" is the unique (ticket, clock, due, level) row written
in the same transaction as the mails, so two daemons and a cron job may visit the
same ticket and only the first to commit sends anything; the others find the
row and stay quiet.  A warning whose deadline has already passed by the time it
is handled (the daemon was down) is recorded but not sent: level 1 says more.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import EscalationLevel, SLAConfig
from otrs_mailgate.outbound import notify
from otrs_mailgate.site import Site
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Escalation
from otrs_mailgate.tickets import agents, customers, history, refs, sla
from otrs_mailgate.tickets.agents import AgentRef
from otrs_mailgate.tickets.refs import TicketRef

log = logging.getLogger("otrs_mailgate.jobs.escalations")

LABELS = {
    "en": {
        "first_response": "first response",
        "update": "update",
        "solution": "solution",
        "warning": "Escalates soon ({clock})",
        "level": "Escalation {level} ({clock})",
    },
    "de": {
        "first_response": "Erstreaktion",
        "update": "Aktualisierung",
        "solution": "Lösung",
        "warning": "Eskaliert bald ({clock})",
        "level": "Eskalation {level} ({clock})",
    },
}


def duration(delta: dt.timedelta) -> str:
    """Working time as people say it: 45 min, 2 h 05 min."""
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def visit(site: Site, session: Session, ticket_id: int, now: dt.datetime) -> int:
    """Fire what is due for one ticket (locked by the caller's select) and store its next
    instant; the number of levels that fired here."""
    conn = session.connection()
    config = site.config
    t = conn.execute(sla.SEL_TICKET, {"id": ticket_id}).one()
    rule, clocks = sla.running(conn, config, t)
    fired = 0
    later: list[dt.datetime] = []
    ticket: TicketRef | None = None
    for clock in clocks:
        assert rule is not None
        for firing in sla.firings(config, rule, clock):
            if firing.at > now:
                later.append(firing.at)
                continue
            ticket = ticket or refs.load(conn, ticket_id)
            if _fire(site, session, ticket, rule, firing, now):
                fired += 1
    sla.store(conn, ticket_id, clocks, min(later, default=None))
    return fired


def _fire(
    site: Site,
    session: Session,
    ticket: TicketRef,
    rule: SLAConfig,
    firing: sla.Firing,
    now: dt.datetime,
) -> bool:
    """One level of one clock: its row, its mails, its history lines; False when another
    pass fired it already."""
    clock = firing.clock
    warning = firing.level == 0
    stale = warning and now >= clock.due
    level: EscalationLevel | None = None if warning else rule.escalation[firing.level - 1]
    who = rule.warn_to if warning else level.to  # type: ignore[union-attr]
    recipients, missing = ([], []) if stale else _recipients(session, ticket, who)
    new = db.insert_ignore(
        session,
        Escalation,
        ticket_id=ticket.id,
        clock=clock.name,
        due=clock.due,
        level=firing.level,
        fired_at=now,
        recipients=", ".join(r.address if isinstance(r, AgentRef) else r for r in recipients),
    )
    if not new:
        return False
    for login, reason in missing:
        history.append(
            session, ticket.id, "EscalationNotSent", "system", agent=login, reason=reason
        )
    history.append(
        session,
        ticket.id,
        "EscalationWarning" if warning else "Escalation",
        "system",
        clock=clock.name,
        level=firing.level,
        due=clock.due.isoformat(),
        sla=rule.name,
        told=len(recipients),
        **({"skipped": "the deadline had passed already"} if stale else {}),
    )
    if not recipients:
        return True
    language = site.config.system.language
    words = LABELS.get(language, LABELS["en"])
    label = words[clock.name]
    cal = sla.calendar(site.config, rule.calendar)
    owner = agents.by_id(session.connection(), ticket.owner_id) if ticket.owner_id else None
    queue = site.config.queue_by_name(ticket.queue) or site.config.queue[0]
    subject = words["warning" if warning else "level"].format(level=firing.level, clock=label)
    notify.to_agents(
        site,
        session,
        ticket,
        queue,
        recipients,
        template=rule.warn_template if warning else level.template,  # type: ignore[union-attr]
        subject=f"{subject}: {ticket.title}",
        vars={
            "level": firing.level,
            "clock": clock.name,
            "clock_label": label,
            "sla": rule.name,
            "limit": duration(dt.timedelta(minutes=clock.minutes)),
            "due": clock.due.astimezone(cal.zone).strftime("%Y-%m-%d %H:%M %Z"),
            "overdue": duration(cal.working_time(clock.due, now)),
            "remaining": duration(cal.working_time(now, clock.due)),
            "priority": ticket.priority,
            "owner": owner.display if owner else "",
            "customer": customers.label(session.connection(), ticket.customer_id),
        },
        history_type="EscalationNotified",
    )
    return True


def _recipients(
    session: Session, ticket: TicketRef, who: list[str]
) -> tuple[list[AgentRef | str], list[tuple[str, str]]]:
    """The recipients of a level, each once, and the named agents that cannot be told
    (unknown or disabled), for the history rather than silently dropped."""
    out: list[AgentRef | str] = []
    missing: list[tuple[str, str]] = []
    for entry in who:
        if entry == "queue":
            out.extend(notify.queue_workers(session, ticket.queue_id))
        elif entry == "owner":
            out.extend(notify.followers(session, ticket))
        elif "@" in entry:
            out.append(entry)
        else:
            agent = agents.by_login(session.connection(), entry)
            if agent is None or not agent.enabled:
                missing.append((entry, "no such agent" if agent is None else "agent disabled"))
            else:
                out.append(agent)
    unique: dict[str, AgentRef | str] = {}
    for r in out:
        unique.setdefault((r.address if isinstance(r, AgentRef) else r).lower(), r)
    return list(unique.values()), missing
