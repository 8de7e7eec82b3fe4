"""The outbox: mail we decided to send, stored in the same transaction as the decision.

Nothing is sent from inside an ingest transaction; a sender task delivers the
rows afterwards.  The Message-ID of every row is remembered, so a reply to our
mail finds its ticket through In-Reply-To/References.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import logging
import os
import smtplib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from otrs_mailgate.config.schema import Config
from otrs_mailgate.crypto import wrap
from otrs_mailgate.crypto.keyring import Keyring
from otrs_mailgate.mail.compose import Responder, Response, new_message_id, wire
from otrs_mailgate.mail.parse import POLICY, Attachment
from otrs_mailgate.outbound import learn, protect
from otrs_mailgate.site import Site
from otrs_mailgate.store import db
from otrs_mailgate.store.models import MessageRef, Outbox, Ticket, utcnow
from otrs_mailgate.tickets import agents, history

log = logging.getLogger("otrs_mailgate.outbound.outbox")


QUEUED = "outbox_queued"  # session.info: rows this transaction queued (see queued())


def queued(session: Session) -> int:
    """Rows this transaction put into the outbox (rolled-back savepoints' too): the
    committer tells the daemon after the commit, which wakes a sender only then."""
    return int(session.info.get(QUEUED, 0))


def join_recipients(recipients: list[str]) -> str:
    """Envelope recipients, one a line: a quoted local part may hold a comma
    (`"victim@third.example,x"@evil.example` is one address, issue 19 item 5), a line
    end it cannot; an address with one (or a NUL) is dropped, never split."""
    return "\n".join(r for r in recipients if r and not any(c in r for c in "\r\n\0"))


def split_recipients(rcpt_to: str) -> list[str]:
    return [r for r in rcpt_to.split("\n") if r]


def enqueue(
    session: Session,
    ticket_id: int | None,
    kind: str,
    response: Response,
    message_id: str,
    data: bytes | None = None,
    error: str = "",
    held: str = "",
) -> None:
    """An outbox row and the Message-ID it will carry, written with the transaction;
    `data`: the mail composed up front (one with attachments), else rendered when sent;
    `error`: why it could not be composed (the row is written `failed`, to be seen)."""
    session.info[QUEUED] = session.info.get(QUEUED, 0) + 1
    db.defer_insert(
        session,
        _O,
        {
            "ticket_id": ticket_id,
            "kind": kind,
            "mail_from": response.from_addr,
            "rcpt_to": join_recipients(response.recipients),
            "message_id": message_id,
            "spec": response.to_json(),
            "data": data,
            "status": "failed" if error else ("held" if held else "queued"),
            "attempts": 0,
            "next_attempt_at": utcnow(),
            "last_error": error or held,
            "created_at": utcnow(),
        },
    )
    if ticket_id is not None:
        db.defer_insert(
            session,
            MessageRef.__table__,
            {"message_id": message_id, "ticket_id": ticket_id, "direction": "out"},
        )


def send(
    session: Session,
    site: Site,
    ticket_id: int,
    kind: str,
    response: Response,
    history_type: str,
    actor: str = "system",
    files: Sequence[Attachment] = (),
    held: str = "",
    encrypted: bool | None = None,
) -> str:
    """Put a mail about a ticket into the outbox and say so in the ticket's history;
    its Message-ID.  A mail with files (an agent's answer carrying its attachments)
    is composed now, as the bytes of its row; any other is rendered when it is sent.
    `encrypted`: whether the customer's latest mail came encrypted, when the caller
    knows (the mail being answered); else the ticket's articles say."""
    message_id = new_message_id(site.config.system.domain)
    for_customer = kind in CUSTOMER_KINDS or kind.startswith("customer_")
    response, sealed = protect.decide(session, site, ticket_id, for_customer, response, encrypted)
    held = held or sealed
    data, error = None, ""
    if files:
        try:
            message = site.responder.compose(response, message_id, utcnow())
            for f in files:
                kind_, _, subtype = (f.content_type or "application/octet-stream").partition("/")
                if f.content_type == "message/rfc822":  # RFC 2046 5.2.1: 7bit/8bit only
                    inner = BytesParser(policy=POLICY).parsebytes(f.data)
                    message.add_attachment(inner, filename=f.filename)
                    continue
                message.add_attachment(
                    f.data, maintype=kind_, subtype=subtype or "octet-stream", filename=f.filename
                )
            data = wire(message)
        except Exception as exc:  # the row fails alone, with the reason; the mail is stored
            error = f"554 cannot compose {kind}: {type(exc).__name__}: {exc}"
            log.warning("outbox: %s (ticket id %s)", error, ticket_id)
    enqueue(session, ticket_id, kind, response, message_id, data, error, held)
    history.append(
        session,
        ticket_id,
        history_type,
        actor,
        template=response.template,
        to=", ".join(response.recipients),
        message_id=message_id,
        **({"files": [f.filename for f in files]} if files else {}),
        **({"held": held} if held else {}),
    )
    return message_id


# Mail about a ticket to its customer (and Cc); any other kind about a ticket is to agents.
CUSTOMER_KINDS = frozenset(
    {"acknowledgement", "followup_received", "followup_rejected", "agent_reply",
     "new_ticket_rejected", "closed_with_parent"}
)  # fmt: skip


def for_agents(kind: str) -> bool:
    """A mail of this kind about a ticket goes to agents (and is checked against their
    grants when it is composed)."""
    return (
        kind not in CUSTOMER_KINDS and not kind.startswith("customer_") and kind not in learn.KINDS
    )


# What a person asked for or wrote; every other kind of mail is automatic and counts
# toward the loop limit of its recipient (issue 19, item 8: notifications and refusal
# notices too, so an agent's or customer's robot cannot keep a ping-pong going).
PERSONAL_KINDS = ("agent_reply", "agent_login")


def responses_since(session: Session, address: str, since: dt.datetime, at_most: int) -> int:
    """Automatic mails to one address put into the outbox since then (the loop limit),
    those of the current batch included, counted up to at_most: a sender that writes
    all day (a monitoring system) would otherwise cost a count of all its rows a mail."""
    pending = sum(
        1
        for row in db.deferred(session, _O)
        if row["rcpt_to"] == address and row["kind"] not in PERSONAL_KINDS
    )
    if pending >= at_most:
        return pending
    known = session.info.get(RESPONSES)
    if known is not None and address in known[0]:  # counted for the whole batch at once
        return pending + known[1].get(address, 0)
    found = db.prepared(_COUNT_RESPONSES).scalar(
        session.connection(), {"to": address, "since": since, "n": at_most - pending}
    )
    return pending + int(found)


def prefetch_responses(session: Session, addresses: list[str], since: dt.datetime) -> None:
    """The loop limit's counts for a whole batch's senders in one grouped query (an IN
    lookup), instead of one count a mail; rows of the batch itself are added by
    responses_since from what the transaction holds."""
    wanted = sorted({a for a in addresses if a})
    if not wanted:
        return
    rows = session.connection().execute(_COUNT_BY_ADDRESS, {"to": wanted, "since": since})
    session.info[RESPONSES] = (set(wanted), {r[0]: int(r[1]) for r in rows})


def listing(session: Session, status: str = "", limit: int = 50) -> list[dict[str, Any]]:
    """The newest outbox rows (of one status, or all), for `outbox list`."""
    stmt = select(_O).order_by(_O.c.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(_O.c.status == status)
    return [
        {
            "id": row.id,
            "status": row.status,
            "kind": row.kind,
            "ticket_id": row.ticket_id,
            "to": split_recipients(row.rcpt_to),
            "subject": _subject(row),
            "attempts": row.attempts,
            "created_at": row.created_at.isoformat(timespec="seconds"),
            "next_attempt_at": row.next_attempt_at.isoformat(timespec="seconds"),
            "last_error": row.last_error,
        }
        for row in session.execute(stmt)
    ]


def release_held(session: Session, ticket_id: int, why: str) -> int:
    """A ticket's held automatic answers go out now (an agent answered the ticket, or
    said `ham`: somebody vouched for the sender); how many."""
    done = session.execute(
        update(_O)
        .where(_O.c.ticket_id == ticket_id, _O.c.status == "held")
        .values(status="queued", next_attempt_at=utcnow(), last_error="")
    )
    count = int(done.rowcount)  # type: ignore[attr-defined]
    if count:
        history.append(session, ticket_id, "AutoResponseReleased", "system", reason=why, n=count)
    return count


def cancel(session: Session, ticket_id: int, why: str) -> int:
    """A ticket's automatic answers to its customer not yet sent (held or queued) are
    dropped: an agent said the mail was spam. How many."""
    done = session.execute(
        update(_O)
        .where(
            _O.c.ticket_id == ticket_id,
            _O.c.status.in_(("held", "queued")),
            _O.c.kind.in_(CUSTOMER_KINDS - {"agent_reply"}),
        )
        .values(status="cancelled", last_error=why)
    )
    count = int(done.rowcount)  # type: ignore[attr-defined]
    if count:
        history.append(session, ticket_id, "AutoResponseCancelled", "system", reason=why, n=count)
    return count


def teach(session: Session, ticket_id: int, kind: str, raw: bytes) -> None:
    """A lesson for the spam filter (learn.KINDS), sent by the Sender like a mail: a
    filter that is down is tried again, and the agent is never kept waiting."""
    assert kind in learn.KINDS
    session.info[QUEUED] = session.info.get(QUEUED, 0) + 1
    now = utcnow()
    db.defer_insert(
        session,
        _O,
        {
            "ticket_id": ticket_id,
            "kind": kind,
            "mail_from": "",
            "rcpt_to": "",
            "message_id": "",
            "spec": None,
            "data": raw,
            "status": "queued",
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": "",
            "created_at": now,
        },
    )


def retry(session: Session, ids: list[int], all_failed: bool = False) -> int:
    """Failed or deferred rows (these, or every failed one) due again now, with their
    attempts counted afresh; how many.  Sent and bounced rows are left alone."""
    wanted = _O.c.status == "failed" if all_failed else _O.c.id.in_(ids)
    done = session.execute(
        update(_O)
        .where(wanted, _O.c.status.in_(("failed", "queued")))
        .values(status="queued", attempts=0, next_attempt_at=utcnow())
    )
    return int(done.rowcount)  # type: ignore[attr-defined]


def _subject(row: Any) -> str:
    """The subject a row's mail has (or will have)."""
    try:
        return str(json.loads(row.spec).get("subject", ""))
    except (ValueError, TypeError, AttributeError):
        return ""


def row_by_id(session: Session, row_id: int) -> Any:
    """One outbox row, or None."""
    return session.execute(select(_O).where(_O.c.id == row_id)).first()


def render(responder: Responder, row: Any) -> bytes:
    """The bytes of an outbox row: stored ones, else its response rendered now."""
    if row.data is not None:
        return bytes(row.data)
    message = responder.compose(Response.from_json(row.spec), row.message_id, row.created_at)
    return wire(message)


# -- sending ----------------------------------------------------------------------------

MAX_BACKOFF = dt.timedelta(hours=6)
LEASE = dt.timedelta(minutes=10)
RECORD_WITHIN = 0.2  # seconds: a sent mail's outcome is written at most this much later
RECORD_EVERY = 50  # ... or with the 49 sent before it, whichever comes first


@dataclass
class PassResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    claimed: int = 0  # as many as the limit: more may be due

    def __iadd__(self, other: PassResult) -> PassResult:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.claimed += other.claimed
        return self


_O = Outbox.__table__
_UPD_ROW = update(_O).where(_O.c.id == bindparam("_id"))
RESPONSES = "responses"
_COUNT_BY_ADDRESS = (
    select(_O.c.rcpt_to, func.count())
    .where(
        _O.c.rcpt_to.in_(bindparam("to", expanding=True)),
        _O.c.created_at >= bindparam("since"),
        *(_O.c.kind != kind for kind in PERSONAL_KINDS),
    )
    .group_by(_O.c.rcpt_to)
)
_COUNT_RESPONSES = select(func.count()).select_from(
    select(_O.c.id)
    .where(
        _O.c.rcpt_to == bindparam("to"),
        _O.c.created_at >= bindparam("since"),
        # inequalities, not NOT IN: an IN of constants is rendered anew at every execution
        *(_O.c.kind != kind for kind in PERSONAL_KINDS),
    )
    .limit(bindparam("n"))
    .subquery()
)


def _claim(session: Session, now: dt.datetime, limit: int) -> list[Any]:
    """Take due rows for this sender: each row is sent by one process only.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent senders take different rows.
    SQLite: the write lock serialises claims.  A claim is a lease: a sender that
    dies mid-send leaves the row to be taken again when the lease runs out.
    """
    due = (
        select(_O.c.id)
        .where(_O.c.status.in_(("queued", "sending")), _O.c.next_attempt_at <= now)
        .order_by(_O.c.next_attempt_at, _O.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    stmt = (
        update(_O)
        .where(_O.c.id.in_(due.scalar_subquery()))
        .values(status="sending", next_attempt_at=now + LEASE, attempts=_O.c.attempts + 1)
        .returning(
            _O.c.id,
            _O.c.ticket_id,
            _O.c.mail_from,
            _O.c.rcpt_to,
            _O.c.data,
            _O.c.spec,
            _O.c.message_id,
            _O.c.created_at,
            _O.c.attempts,
            _O.c.kind,
        )
    )
    return list(session.connection().execute(stmt).all())


class Sender:
    """Delivers claimed outbox rows by SMTP to the local MTA, signing with DKIM if set up."""

    def __init__(self, config: Config, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._pending: list[Callable[[Session], None]] = []  # outcomes not yet recorded
        self._stalled = False  # the database did not take them: send nothing more
        self._why = ""  # why it did not
        self._recorded_at = time.monotonic()
        self._down = ""  # why the MTA could not be reached, while it cannot
        self.reconfigure(config)

    def where(self) -> str:
        """Where outgoing mail goes, for the one line the daemon logs at start."""
        smtp, dkim = self.config.smtp, self.config.dkim
        signed = f"DKIM-signed as {dkim.selector}._domainkey" if self._dkim_key else "unsigned"
        return f"SMTP {smtp.host}:{smtp.port} ({signed})"

    def reconfigure(self, config: Config) -> None:
        """A new config (SIGHUP) from the next mail on; outcomes not yet written stay."""
        self.config = config
        self.responder = Responder(config)
        self.keyring = Keyring.for_config(config)
        self._dkim_key: bytes | None = None
        if config.dkim.key_file and config.dkim.selector:
            self._dkim_key = Path(config.dkim.key_file).read_bytes()

    def _protect(self, row: Any, data: bytes) -> bytes:
        """Encrypted and/or signed as decided with the row (outbound/protect.py)."""
        if not row.spec:
            return data
        spec = Response.from_json(row.spec)
        if not spec.encrypt and not spec.sign_as:
            return data
        if self.keyring is None:
            raise wrap.WrapError("no keys are set up ([crypto] key_dir)")
        return wrap.protect(self.keyring, data, spec.recipients, spec.encrypt, spec.sign_as)

    def sign(self, data: bytes) -> bytes:
        if self._dkim_key is None:
            return data
        import dkim

        domain = self.config.dkim.domain or self.config.system.domain
        signature = dkim.sign(
            data,
            self.config.dkim.selector.encode(),
            domain.encode(),
            self._dkim_key,
            include_headers=[h.encode() for h in SIGNED_HEADERS],
        )
        return signature + data

    def run_pass(self, now: dt.datetime | None = None, limit: int = 100) -> PassResult:
        """Claim what is due and send it; one SMTP connection for the pass.

        When the database goes away between a send and its record, the outcome is
        kept here and written first thing once the database answers again (and the
        rows claimed but not yet sent are given back), so a mail the MTA took is not
        sent a second time when the lease runs out.
        """
        now = now or utcnow()
        result = PassResult()
        if not self._flush(result):
            raise db.TemporaryFailure(self._why or "outbox outcomes wait for the database")
        try:
            with db.transaction(self.sessions) as session:
                rows = _claim(session, now, limit)
        except Exception:
            # The database went away around the claim's commit: it may have committed
            # without our hearing it, and those rows would sit in `sending` until the
            # lease runs out (ten minutes, found under a PostgreSQL stop).  The lease
            # instant is this pass's own, so the rows it names are given back first
            # thing once the database answers again.
            self._pending.append(functools.partial(_unclaim, lease_until=now + LEASE, now=now))
            raise
        result.claimed = len(rows)
        if not rows:
            return result
        smtp: smtplib.SMTP | None = None
        unreachable = ""
        done = 0  # rows whose outcome is decided: the rest go back if the pass breaks
        try:
            withheld = self._withheld(rows)
            for done, row in enumerate(rows):  # noqa: B007 - read in finally
                if self._stalled:  # the database went away mid-pass: send no more
                    break
                if row.id in withheld:  # the agent lost the grant since it was decided
                    self._finish(row, 554, withheld[row.id], result, now)
                    continue
                if row.kind in learn.KINDS:  # a lesson for the spam filter, not a mail
                    code, text = learn.feed(self.config.spam, row.kind, bytes(row.data or b""))
                    self._finish(row, code, text, result, now)
                    continue
                if unreachable:  # do not knock on a closed door once per row
                    self._finish(row, 451, unreachable, result, now)
                    continue
                smtp, unreachable = self._send_row(row, smtp, result, now)
            else:
                done = len(rows)
        finally:
            if done < len(rows):  # never left `sending` until the lease runs out
                ids = [r.id for r in rows[done:]]
                self._pending.append(functools.partial(_release, ids=ids, now=now))
            _reset(smtp)
            self._flush(result)
        self._report(unreachable, result)
        if self._stalled:  # outcomes kept: the loop comes back soon to write them, not
            # after an idle wait (an idle sender's kept outcomes were lost at a stop)
            raise db.TemporaryFailure(self._why or "outbox outcomes wait for the database")
        return result

    def close(self) -> bool:
        """At a stop: write the outcomes still kept, if the database answers; whether
        nothing is left (what is left is sent again when its lease runs out)."""
        return self._flush(PassResult())

    def _withheld(self, rows: Sequence[Any]) -> dict[int, str]:
        """Rows to agents about a ticket whose queue the agent has no grant on now (moved,
        or the grant taken away, since the mail was decided): composed means checked
        (issue 25).  One look at the database for the whole pass."""
        wanted = [r for r in rows if r.ticket_id is not None and for_agents(r.kind)]
        if not wanted:
            return {}
        found: dict[int, str] = {}
        with db.read_only(self.sessions.kw["bind"]) as conn:
            queue_of = dict(
                conn.execute(
                    select(Ticket.id, Ticket.queue_id).where(
                        Ticket.id.in_({r.ticket_id for r in wanted})
                    )
                ).all()
            )
            addresses = {a for r in wanted for a in split_recipients(r.rcpt_to)}
            by_address = {a.address: a for a in agents.by_addresses(conn, addresses)}
            for row in wanted:
                for address in split_recipients(row.rcpt_to):
                    agent = by_address.get(address)
                    queue_id = queue_of.get(row.ticket_id)
                    if agent is None or queue_id is None:
                        continue
                    if agents.access(conn, agent.id, queue_id) is None:
                        found[row.id] = (
                            f"withheld: {agent.login} has no grant on the ticket's queue now "
                            "(moved, or the grant or the agent was taken away, since this "
                            "mail was decided)"
                        )
        return found

    def _send_row(
        self, row: Any, smtp: smtplib.SMTP | None, result: PassResult, now: dt.datetime
    ) -> tuple[smtplib.SMTP | None, str]:
        """One row, isolated: whatever it does ends as its own outcome (sent, deferred
        or failed, with the reason), never as an exception that stops the pass or holds
        the rows after it (issue 25).  Returns the connection to go on with, and why
        the MTA cannot be reached ("" while it can)."""
        try:
            data = self.sign(self._protect(row, render(self.responder, row)))
        except Exception as exc:  # its addresses, template or keys: retrying will not help
            why = f"cannot compose {row.kind}: {type(exc).__name__}: {exc}"
            self._finish(row, 554, why, result, now)
            return smtp, ""
        recipients = split_recipients(row.rcpt_to)
        utf8 = _needs_smtputf8(row.mail_from, recipients, data)
        try:
            if smtp is None:
                smtp = smtplib.SMTP(
                    self.config.smtp.host, self.config.smtp.port, timeout=self.config.smtp.timeout
                )
            if utf8:
                smtp.ehlo_or_helo_if_needed()
                if not smtp.has_extn("smtputf8"):
                    self._finish(row, 553, NO_SMTPUTF8, result, now)
                    return smtp, ""
            refused = smtp.sendmail(
                row.mail_from, recipients, data, mail_options=["SMTPUTF8"] if utf8 else []
            )
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            self._finish(row, code, _text(text), result, now)
        except smtplib.SMTPResponseException as exc:
            self._finish(row, exc.smtp_code, _text(exc.smtp_error), result, now)
            _reset(smtp)
            return None, ""
        except (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError) as exc:
            unreachable = f"MTA unreachable: {exc}"
            self._finish(row, 451, unreachable, result, now)
            _reset(smtp, quit=False)
            return None, unreachable
        except Exception as exc:  # this row's trouble (or ours): it alone waits and retries
            log.exception("outbox: sending id=%s failed unexpectedly", row.id)
            self._finish(row, 451, f"cannot send: {type(exc).__name__}: {exc}", result, now)
            _reset(smtp, quit=False)
            return None, ""
        else:
            note = f"refused by some: {refused}" if refused else ""
            self._finish(row, 250, note, result, now, data)
        return smtp, ""

    def _report(self, unreachable: str, result: PassResult) -> None:
        """An MTA that cannot be reached is said once (not once a pass), with where the
        mail waits meanwhile; when it can be reached again, that is said too."""
        if unreachable and unreachable != self._down:
            log.warning(
                "outbox: %s; %d mail(s) deferred, kept in the outbox until it answers "
                "(`otrs-mailgate outbox list` shows them)",
                unreachable,
                result.retried,
            )
        elif unreachable:
            log.debug("outbox: %s; %d mail(s) deferred", unreachable, result.retried)
        elif self._down and result.sent:
            log.info("outbox: the MTA answers again; %d mail(s) sent", result.sent)
        if unreachable or result.sent:
            self._down = unreachable

    def _finish(
        self,
        row: Any,
        code: int,
        text: str,
        result: PassResult,
        now: dt.datetime,
        data: bytes | None = None,
    ) -> None:
        """Record a row's outcome: with those of the rows sent just before it, within
        RECORD_WITHIN seconds (a crash then sends at most those few a second time).

        One transaction per row would wait its turn at the database once per mail: on
        SQLite, behind every group commit of incoming mail, which starves the sender.
        """
        self._pending.append(
            functools.partial(
                self._record, row=row, code=code, text=text, result=result, now=now, data=data
            )
        )
        full = len(self._pending) >= RECORD_EVERY
        if full or time.monotonic() - self._recorded_at >= RECORD_WITHIN:
            self._flush(result)

    def _flush(self, result: PassResult) -> bool:
        """Write the outcomes not yet recorded, in one transaction; whether all are.

        When the database does not answer they are kept, and the pass sends no more.
        """
        self._recorded_at = time.monotonic()
        if not self._pending:
            self._stalled = False
            return True
        try:
            with db.transaction(self.sessions) as session:
                for record in self._pending:
                    record(session)
        except db.TemporaryFailure as exc:
            self._why = str(exc)  # said again as the same reason, not as a new one
            if not self._stalled:
                log.warning("outbox: %s; %d outcome(s) kept until the database is back",
                            exc, len(self._pending))  # fmt: skip
            self._stalled = True
            return False
        except Exception:  # a bug, not the database: retrying would fail the same way
            log.exception("outbox: could not record %d outcome(s); the rows are sent "
                          "again when their lease runs out", len(self._pending))  # fmt: skip
            self._pending.clear()
            raise
        self._pending.clear()
        self._stalled = False
        return True

    def _record(
        self,
        session: Session,
        row: Any,
        code: int,
        text: str,
        result: PassResult,
        now: dt.datetime,
        data: bytes | None,
    ) -> None:
        """The row's new status in the caller's transaction (5xx: also on the ticket)."""
        conn = session.connection()
        if 200 <= code < 300:  # keep what was sent (unsigned) with the row
            conn.execute(
                _UPD_ROW,
                {"_id": row.id, "status": "sent", "sent_at": now, "last_error": text, "data": data},
            )
            result.sent += 1
            log.info(
                "outbox sent id=%s kind=%s to=%s attempts=%s",
                row.id,
                row.kind,
                row.rcpt_to,
                row.attempts,
            )
            return
        permanent = code >= 500 or row.attempts >= self.config.smtp.max_attempts
        error = f"{code} {text}".strip()
        if not permanent:
            delay = dt.timedelta(seconds=self.config.smtp.backoff_seconds * 2 ** (row.attempts - 1))
            conn.execute(
                _UPD_ROW,
                {
                    "_id": row.id,
                    "status": "queued",
                    "next_attempt_at": now + min(delay, MAX_BACKOFF),
                    "last_error": error,
                },
            )
            result.retried += 1
            log.log(
                logging.DEBUG if text.startswith("MTA unreachable") else logging.INFO,
                "outbox deferred id=%s to=%s attempts=%s error=%r",
                row.id,
                row.rcpt_to,
                row.attempts,
                error,
            )
            return
        conn.execute(_UPD_ROW, {"_id": row.id, "status": "failed", "last_error": error})
        result.failed += 1
        log.warning("outbox failed id=%s to=%s error=%r", row.id, row.rcpt_to, error)
        if row.kind == "agent_reply":
            self._tell_author(session, row, error)
        if row.ticket_id is not None:
            session.execute(select(Ticket.id).where(Ticket.id == row.ticket_id).with_for_update())
            history.append(
                session,
                row.ticket_id,
                "SendFailed",
                "system",
                outbox_id=row.id,
                kind=row.kind,
                to=row.rcpt_to,
                error=error,
            )

    def _tell_author(self, session: Session, row: Any, error: str) -> None:
        """An agent's answer the MTA refused for good: the agent hears of it (the
        transcript said "queued"), in the same transaction as the row's failure."""
        spec = Response.from_json(row.spec)
        agent = str(spec.vars.get("agent_address") or "")
        if not agent:
            return
        notice = Response(
            template="reply_failed",
            language=self.config.system.language,
            from_addr=spec.from_addr,
            from_name=f"{spec.from_name} (otrs-mailgate)",
            to=agent,
            to_name="",
            subject=f"Not delivered: {spec.subject}",
            vars={"subject": spec.subject, "to": spec.to, "error": error},
            in_reply_to=row.message_id,
            auto_submitted="auto-generated",
        )
        enqueue(
            session,
            row.ticket_id,
            "reply_failed",
            notice,
            new_message_id(self.config.system.domain),
        )
        if row.ticket_id is not None:
            history.append(
                session, row.ticket_id, "AgentToldOfFailure", "system", to=agent, outbox_id=row.id
            )


def _unclaim(session: Session, lease_until: dt.datetime, now: dt.datetime) -> None:
    """The rows of a claim whose commit was not heard: due again at once."""
    session.connection().execute(
        update(_O)
        .where(_O.c.status == "sending", _O.c.next_attempt_at == lease_until)
        .values(status="queued", next_attempt_at=now)
    )


def _release(session: Session, ids: list[int], now: dt.datetime) -> None:
    """Rows claimed by a pass that stopped before sending them are due again at once."""
    session.connection().execute(
        update(_O)
        .where(_O.c.id.in_(ids), _O.c.status == "sending")
        .values(status="queued", next_attempt_at=now)
    )


SIGNED_HEADERS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "reply-to",
    "auto-submitted",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
)


NO_SMTPUTF8 = (
    "5.6.7 the outgoing MTA does not offer SMTPUTF8, which an address of this mail needs "
    "(RFC 6531); enable it there (Postfix: smtputf8_enable = yes), then "
    "`otrs-mailgate outbox retry ID`"
)


def _needs_smtputf8(mail_from: str, recipients: list[str], data: bytes) -> bool:
    """An envelope address or a header line of the mail is not ASCII (RFC 6531)."""
    if not mail_from.isascii() or not all(r.isascii() for r in recipients):
        return True
    head = data.split(b"\r\n\r\n", 1)[0]
    return not head.isascii()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _reset(smtp: smtplib.SMTP | None, quit: bool = True) -> None:
    if smtp is None:
        return None
    try:
        if quit:
            smtp.quit()
        else:
            smtp.close()
    except (OSError, smtplib.SMTPException):
        smtp.close()
    return None


def dkim_keygen(key_file: Path, selector: str, domain: str) -> str:
    """Write a new 2048-bit RSA key (mode 0600) and return the DNS TXT record for it,
    the record's text split into quoted strings of at most 255 characters (one string
    of 410 is refused by BIND and most DNS panels; opendkim-genkey splits it too)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"{selector}._domainkey.{domain}. IN TXT ( {txt_strings(dkim_txt(public))} )"


def txt_strings(text: str, size: int = 250) -> str:
    """A TXT record's text as DNS zone files write it: quoted strings of at most 255
    characters, which resolvers join again."""
    return " ".join(f'"{text[i : i + size]}"' for i in range(0, len(text), size))


def dkim_txt(public_der: bytes) -> str:
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(public_der).decode()
