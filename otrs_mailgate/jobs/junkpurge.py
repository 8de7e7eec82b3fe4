"""Junk keeps spam `[spam] keep_days` days (a false positive can be recovered with
`ham` meanwhile); after that what the mail said is purged: its text, raw bytes and
attachments. The ticket, its addresses and subject and its history stay, with a
"Purged" entry, so the audit chain still tells what came and what was done.

Run daily by the daemon and by `otrs-mailgate spam purge` (cron)."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session, sessionmaker

from otrs_mailgate.site import Site
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Article, Queue, Ticket, utcnow
from otrs_mailgate.tickets import articles, history, refs, state

log = logging.getLogger("otrs_mailgate.jobs.junkpurge")
BATCH = 200  # tickets a transaction


def purge(site: Site, sessions: sessionmaker[Session], now: dt.datetime | None = None) -> int:
    """Purge the Junk tickets untouched for keep_days; how many tickets."""
    names = [q.name for q in site.config.queue if q.junk]
    if not names:
        return 0
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=site.config.spam.keep_days)
    a = Article.__table__
    unpurged = exists().where(
        a.c.ticket_id == Ticket.id,
        or_(a.c.raw_id.is_not(None), a.c.body_text != "", a.c.body_html != ""),
    )
    due = (
        select(Ticket.id)
        .join(Queue, Queue.id == Ticket.queue_id)
        .where(Queue.name.in_(names), Ticket.updated_at < cutoff, unpurged)
        .order_by(Ticket.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    done = 0
    while True:
        with db.transaction(sessions) as session:
            ids = list(session.execute(due).scalars())
            for ticket_id in ids:
                conn = session.connection()
                n = articles.purge(conn, ticket_id)
                ticket = refs.load(conn, ticket_id)
                history.append(
                    session, ticket_id, "Purged", "system",
                    articles=n, days=site.config.spam.keep_days,
                )  # fmt: skip
                state.set_state(session, ticket, "closed", actor="system", reason="purged", now=now)
        done += len(ids)
        if len(ids) < BATCH:
            break
    if done:
        log.info("junk: %d ticket(s) older than %d days purged", done, site.config.spam.keep_days)
    return done
