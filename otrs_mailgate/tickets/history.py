"""Append-only, tamper-evident ticket history.

Each row carries the hash of the previous row of its ticket and its own hash over
(previous hash, ticket, time, actor, type, detail).  A unique (ticket, prev_hash)
constraint keeps the chain linear even if two writers race; `audit verify` walks
every chain and names the first broken link.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session

from otrs_mailgate.store import db
from otrs_mailgate.store.models import History, utcnow

GENESIS = "0" * 64


def _digest(prev: str, ticket_id: int, at: dt.datetime, actor: str, type_: str, detail: str) -> str:
    stamp = at.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    payload = json.dumps([prev, ticket_id, stamp, actor, type_, detail], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _tails(session: Session) -> dict[int, str]:
    """Last hash per ticket written in this transaction (dropped on any rollback)."""
    return session.info.setdefault("history_tails", {})


@event.listens_for(Session, "after_soft_rollback")
def _forget_tails(session: Session, _previous: object) -> None:
    session.info.pop("history_tails", None)


def start_chain(session: Session, ticket_id: int) -> None:
    """A brand-new ticket: its chain starts at GENESIS, no need to ask the database."""
    _tails(session)[ticket_id] = GENESIS


def _last_hash(session: Session, ticket_id: int) -> str:
    cached = _tails(session).get(ticket_id)
    if cached is not None:
        return cached
    last = session.connection().execute(_SEL_LAST, {"t": ticket_id}).scalar()
    return last or GENESIS


def append(session: Session, ticket_id: int, type_: str, actor: str, **detail: Any) -> str:
    """Add one history row and return its hash; the caller holds the ticket (new, or
    locked FOR UPDATE), so nobody else appends to this chain meanwhile.  The row is
    written when the transaction (or savepoint) commits, with the others."""
    prev = _last_hash(session, ticket_id)
    at = utcnow()
    text = json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)
    digest = _digest(prev, ticket_id, at, actor, type_, text)
    db.defer_insert(
        session,
        _TABLE,
        {
            "ticket_id": ticket_id,
            "created_at": at,
            "actor": actor[:320],
            "type": type_,
            "detail": text,
            "prev_hash": prev,
            "hash": digest,
        },
    )
    _tails(session)[ticket_id] = digest
    return digest


_TABLE = History.__table__
_SEL_LAST = (
    select(_TABLE.c.hash)
    .where(_TABLE.c.ticket_id == bindparam("t"))
    .order_by(_TABLE.c.id.desc())
    .limit(1)
)


@dataclass
class Broken:
    ticket_id: int
    history_id: int
    reason: str


def verify(session: Session, batch: int = 5000) -> Iterator[Broken | int]:
    """Walk all chains in id order; yields each broken link, then the number of rows checked."""
    last: dict[int, str] = {}
    checked = 0
    after = 0
    while True:
        rows = (
            session.execute(
                select(History).where(History.id > after).order_by(History.id).limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            break
        for row in rows:
            after = row.id
            checked += 1
            expected_prev = last.get(row.ticket_id, GENESIS)
            if row.prev_hash != expected_prev:
                yield Broken(row.ticket_id, row.id, "prev_hash does not match the row before it")
            elif row.hash != _digest(
                row.prev_hash, row.ticket_id, row.created_at, row.actor, row.type, row.detail
            ):
                yield Broken(row.ticket_id, row.id, "hash does not match the row's content")
            last[row.ticket_id] = row.hash
        session.expunge_all()
    yield checked
