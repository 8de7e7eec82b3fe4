"""Everything that happens because time passed: lapsed locks, pending times, escalations.

Each job's tickets carry the instant it is due in an indexed column (lock_until,
pending_until, escalation_at), so a pass first asks for the earliest of the three
(three index lookups, read-only, no write lock) and does nothing more when that
lies ahead.  The daemon sleeps until that instant; `otrs-mailgate escalations
check` runs one pass from cron.  Both call run_pass().

Due tickets are taken in batches, each its own transaction, with FOR UPDATE SKIP
LOCKED on PostgreSQL, so several daemons and a cron job share the work; the
unique rows of escalations.py make each level fire once whoever gets there.
A ticket whose handling fails is logged and put back by RETRY_LATER, so one bad
ticket does not stop the others.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Column, Engine, ScalarSelect, bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from otrs_mailgate.jobs import escalations, locks, pending
from otrs_mailgate.outbound import outbox
from otrs_mailgate.site import Site
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Ticket, utcnow
from otrs_mailgate.tickets import state

log = logging.getLogger("otrs_mailgate.jobs.scheduler")
BATCH = 200  # tickets per transaction: short write locks, bounded memory
RETRY_LATER = dt.timedelta(minutes=5)
T = TypeVar("T")


@dataclass
class PassResult:
    unlocked: int = 0
    reminded: int = 0
    closed: int = 0
    escalated: int = 0  # warnings and levels that fired in this pass
    failed: int = 0
    queued: int = 0  # outbox rows the pass committed (the daemon wakes a sender)
    next_at: dt.datetime | None = None  # the earliest instant still ahead

    def __iadd__(self, other: PassResult) -> PassResult:
        for name in ("unlocked", "reminded", "closed", "escalated", "failed", "queued"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    @property
    def busy(self) -> bool:
        return bool(self.unlocked + self.reminded + self.closed + self.escalated + self.failed)

    def summary(self) -> str:
        text = (
            f"{self.escalated} escalation(s) fired, {self.reminded} pending reminder(s), "
            f"{self.closed} pending ticket(s) closed, {self.unlocked} lock(s) released"
        )
        if self.failed:
            text += f", {self.failed} ticket(s) failed (see the log)"
        nxt = self.next_at.isoformat(timespec="seconds") if self.next_at else "nothing"
        return f"{text}; next due: {nxt}"


class Scheduler:
    """Runs the jobs; `sites` gives the Site in force (the daemon swaps it on SIGHUP),
    read once per pass so a pass works with one configuration throughout."""

    def __init__(self, sites: Callable[[], Site], sessions: sessionmaker[Session]) -> None:
        self.sites = sites
        self.sessions = sessions
        self.engine: Engine = sessions.kw["bind"]

    def next_due(self) -> dt.datetime | None:
        """The earliest instant at which some job has work; None when none has any."""
        with db.read_only(self.engine) as conn:
            found = conn.execute(_SEL_NEXT).one()
        return min((t for t in found if t is not None), default=None)

    def run_pass(self, now: dt.datetime | None = None) -> PassResult:
        now = now or utcnow()
        result = PassResult()
        first = self.next_due()
        if first is None or first > now:
            result.next_at = first
            return result
        site = self.sites()
        for job in (self._locks, self._pending, self._escalations):
            self._batches(partial(job, site=site, now=now), result)
        result.next_at = self.next_due()
        return result

    def _batches(self, job: Callable[..., tuple[int, PassResult]], result: PassResult) -> None:
        """A job's batches, each its own transaction, until one comes back short.

        A batch runs without savepoints first (one per ticket costs more than the
        ticket's own work); if it fails for anything but the database, it is rolled
        back and run again with one savepoint per ticket, so the bad ticket alone
        is put aside.  Counts are added only for batches that committed.
        """
        while True:
            try:
                with db.transaction(self.sessions) as session:
                    seen, done = job(session, careful=False)
                    done.queued = outbox.queued(session)
            except Exception as exc:
                if isinstance(exc, db.TemporaryFailure):
                    raise
                log.warning("a scheduler batch failed (%s); again, one ticket at a time", exc)
                with db.transaction(self.sessions) as session:
                    seen, done = job(session, careful=True)
                    done.queued = outbox.queued(session)
            result += done
            if seen < BATCH:
                return

    def _locks(
        self, session: Session, *, site: Site, now: dt.datetime, careful: bool
    ) -> tuple[int, PassResult]:
        released = locks.expire(session, now, BATCH)
        return released, PassResult(unlocked=released)

    def _pending(
        self, session: Session, *, site: Site, now: dt.datetime, careful: bool
    ) -> tuple[int, PassResult]:
        done = PassResult()
        rows = pending.due(session, now, BATCH)
        for row in rows:
            handle = partial(pending.handle, site, session, row, now)
            outcome = _each(session, row.id, _T.c.pending_until, now, careful, done, handle)
            done.reminded += outcome == "reminded"
            done.closed += outcome == "closed"
        return len(rows), done

    def _escalations(
        self, session: Session, *, site: Site, now: dt.datetime, careful: bool
    ) -> tuple[int, PassResult]:
        done = PassResult()
        ids = session.execute(_SEL_ESCALATING, {"now": now, "limit": BATCH}).scalars().all()
        for ticket_id in ids:
            handle = partial(escalations.visit, site, session, ticket_id, now)
            done.escalated += (
                _each(session, ticket_id, _T.c.escalation_at, now, careful, done, handle) or 0
            )
        return len(ids), done


def _each(
    session: Session,
    ticket_id: int,
    column: Column[dt.datetime],
    now: dt.datetime,
    careful: bool,
    done: PassResult,
    handle: Callable[[], T],
) -> T | None:
    """One ticket.  Careful: in a savepoint, and a bug it triggers is logged and the
    ticket put back by RETRY_LATER instead of failing every ticket after it."""
    if not careful:
        return handle()
    try:
        with session.begin_nested():
            return handle()
    except Exception as exc:
        if db.is_temporary(exc):
            raise  # the database, not this ticket: the whole pass tries again later
        log.exception("ticket id %d: %s failed; trying again later", ticket_id, column.name)
        done.failed += 1
        state.retry_later(session, ticket_id, column, now + RETRY_LATER)
        return None


_T = Ticket.__table__


def _earliest(column: Column[Any]) -> ScalarSelect[Any]:
    return select(column).where(column.is_not(None)).order_by(column).limit(1).scalar_subquery()


_SEL_NEXT = select(
    _earliest(_T.c.escalation_at), _earliest(_T.c.pending_until), _earliest(_T.c.lock_until)
)
_SEL_ESCALATING = (
    select(_T.c.id)
    .where(_T.c.escalation_at.is_not(None), _T.c.escalation_at <= bindparam("now"))
    .order_by(_T.c.escalation_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
