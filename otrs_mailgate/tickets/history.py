"""Append-only, tamper-evident ticket history.

Each row carries the hash of the previous row of its ticket and its own HMAC-SHA256
over (previous hash, ticket, time, actor, type, detail), keyed by an audit key kept
outside the database (AuditKeys: a file of `id hexkey` lines, the last one signs,
older ones still verify), so whoever can write the database cannot forge a chain.
A unique (ticket, prev_hash) constraint keeps the chain linear even if two writers
race; `audit verify` walks every chain and names the first broken link.  The key file
also says from which row on the history is keyed (`after=N` on its first key, written
when that key is made, or on the first start that finds it missing): a row after that
without a key is broken, even when every row was rewritten in the old unkeyed form,
which the rows themselves could not show (issue 25).  Deleting
the newest rows leaves an intact chain behind, so the scheduler logs the `head` (the
last row id and a digest of every chain's tail) daily, and `audit verify --head`
finds any row missing up to a head once published.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, event, func, select
from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import Config
from otrs_mailgate.store import db
from otrs_mailgate.store.models import History, utcnow

GENESIS = "0" * 64
INFO = "audit_keys"  # where a sessionmaker's sessions find the AuditKeys (session.info)


class AuditKeyError(ValueError):
    """The audit key file cannot be read or written; the message says which and why."""


@dataclass(frozen=True)
class AuditKeys:
    """The history's keys by id; `current` signs new rows ("" : none, plain SHA-256);
    `keyed_after`: every row with a greater id must be keyed (None: not recorded)."""

    keys: dict[str, bytes]
    current: str = ""
    keyed_after: int | None = None

    @classmethod
    def load(cls, path: Path) -> AuditKeys:
        try:
            lines = path.read_text(encoding="ascii").split("\n")
        except FileNotFoundError:
            return cls({})
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditKeyError(f"cannot read the audit keys {path}: {exc}") from exc
        keys: dict[str, bytes] = {}
        current = ""
        keyed_after: int | None = None
        for line in lines:
            if not line.strip() or line.startswith("#"):
                continue
            key_id, hexkey, *extra = line.split()
            try:
                keys[key_id] = bytes.fromhex(hexkey.strip())
            except ValueError as exc:
                raise AuditKeyError(f"{path}: bad line for key {key_id!r}") from exc
            for word in extra:
                name, _, value = word.partition("=")
                if name == "after" and value.isdigit() and keyed_after is None:
                    keyed_after = int(value)
            current = key_id
        return cls(keys, current, keyed_after)


def key_path(config: Config) -> Path | None:
    """Where the audit keys are: system.audit_keys (a config file sets it, default
    audit.keys beside it), else audit.keys beside an SQLite file; None: nowhere."""
    if config.system.audit_keys:
        return Path(config.system.audit_keys)
    url = config.database.url
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url.removeprefix("sqlite:///")).parent / "audit.keys"
    return None


def add_key(path: Path, after: int | None = None) -> str:
    """A new key at the end of the file (made with mode 0600): it signs from now on;
    `after`, for the first key: the last history row written before it (none keyed)."""
    old = AuditKeys.load(path)
    key_id = f"k{len(old.keys) + 1}"
    mark = f" after={after}" if after is not None and not old.keys else ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="ascii") as fh:
            fh.write(f"{key_id} {secrets.token_hex(32)}{mark}\n")
    except OSError as exc:
        raise AuditKeyError(f"cannot write the audit keys {path}: {exc}") from exc
    return key_id


def _mark(path: Path, after: int) -> None:
    """Write `after=N` onto the first key's line of a key file made before it existed."""
    lines = path.read_text(encoding="ascii").split("\n")
    for index, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            lines[index] = f"{line.rstrip()} after={after}"
            break
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write("\n".join(lines))
    os.replace(tmp, path)


def keys_for(
    config: Config, *, create: bool = True, rows: Callable[[], tuple[int, int | None]] | None = None
) -> AuditKeys:
    """The keys this installation signs with; a first key is made when there is none.
    `rows` tells (the last history id, the first keyed one) for the key file's after=:
    asked when the first key is made, or once for a key file made without it."""
    path = key_path(config)
    if path is None:
        return AuditKeys({})
    keys = AuditKeys.load(path)
    if not keys.current and create:
        add_key(path, after=_ask(rows, first=False))
        keys = AuditKeys.load(path)
    elif keys.current and keys.keyed_after is None and create and rows is not None:
        after = _ask(rows, first=True)
        if after is not None:
            try:
                _mark(path, after)
            except OSError as exc:
                raise AuditKeyError(f"cannot write the audit keys {path}: {exc}") from exc
            keys = AuditKeys.load(path)
    return keys


def _ask(rows: Callable[[], tuple[int, int | None]] | None, *, first: bool) -> int | None:
    """The id the history is keyed after: the last row now (a new key), or the row
    before the first keyed one (a key file older than after=); None when unknown."""
    if rows is None:
        return None
    try:
        last, first_keyed = rows()
    except Exception:  # no database yet, or not now: ask again next start
        return None
    if first and first_keyed is not None:
        return first_keyed - 1
    return last


def bounds(engine: Engine) -> tuple[int, int | None]:
    """(the last history id or 0, the first keyed history id or None)."""
    with db.read_only(engine) as conn:
        last = conn.execute(select(func.max(_TABLE.c.id))).scalar() or 0
        first = conn.execute(select(func.min(_TABLE.c.id)).where(_TABLE.c.key_id != "")).scalar()
    return int(last), (int(first) if first is not None else None)


def _digest(
    prev: str,
    ticket_id: int,
    at: dt.datetime,
    actor: str,
    type_: str,
    detail: str,
    key: bytes | None = None,
) -> str:
    stamp = at.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    payload = json.dumps([prev, ticket_id, stamp, actor, type_, detail], ensure_ascii=False)
    if key is None:
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()
    return hmac.new(key, payload.encode("utf-8"), hashlib.sha256).hexdigest()


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
    keys: AuditKeys | None = session.info.get(INFO)
    key_id = keys.current if keys is not None else ""
    key = keys.keys[key_id] if keys is not None and key_id else None
    digest = _digest(prev, ticket_id, at, actor, type_, text, key)
    row = {
        "ticket_id": ticket_id,
        "created_at": at,
        "actor": actor[:320],
        "type": type_,
        "detail": text,
        "prev_hash": prev,
        "hash": digest,
    }
    if key_id:  # else the column's default, "" (one session: always or never keyed)
        row["key_id"] = key_id
    db.defer_insert(session, _TABLE, row)
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


@dataclass(frozen=True)
class Head:
    """Where the history stood: its last row and a digest of every chain's tail then."""

    last_id: int
    digest: str

    def __str__(self) -> str:
        return f"{self.last_id}:{self.digest}"

    @classmethod
    def parse(cls, text: str) -> Head:
        last, _, digest = text.strip().partition(":")
        if not last.isdigit() or len(digest) != 64:
            raise ValueError(f"not a history head (ID:DIGEST as `audit head` prints): {text!r}")
        return cls(int(last), digest.lower())


def _head(last_id: int, tails: dict[int, str]) -> Head:
    text = "".join(f"{t}:{h}\n" for t, h in sorted(tails.items()))
    return Head(last_id, hashlib.sha256(f"{last_id}\n{text}".encode()).hexdigest())


def verify(
    session: Session, keys: AuditKeys, head: Head | None = None, batch: int = 5000
) -> Iterator[Broken | int | Head]:
    """Walk all chains in id order; yields each broken link, the head as it stands now,
    then the number of rows checked.  Once a row is keyed, every later one must be
    (a row rewritten as plain SHA-256 to dodge the key is broken); a published head
    must be met exactly, or rows up to it went missing or changed."""
    last: dict[int, str] = {}
    checked = 0
    after = 0
    keyed_since: int | None = None
    head_seen = head is None
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
            if not head_seen and head is not None and row.id > head.last_id:
                head_seen = True
                if _head(head.last_id, last) != head:
                    yield Broken(0, head.last_id, "rows up to the published head are missing")
            after = row.id
            checked += 1
            expected_prev = last.get(row.ticket_id, GENESIS)
            key = keys.keys.get(row.key_id) if row.key_id else None
            if row.key_id and keyed_since is None:
                keyed_since = row.id
            if row.prev_hash != expected_prev:
                yield Broken(row.ticket_id, row.id, "prev_hash does not match the row before it")
            elif row.key_id and key is None:
                yield Broken(row.ticket_id, row.id, f"key {row.key_id!r} is not in the key file")
            elif not row.key_id and keyed_since is not None:
                yield Broken(row.ticket_id, row.id, f"unkeyed row after keyed row {keyed_since}")
            elif not row.key_id and keys.keyed_after is not None and row.id > keys.keyed_after:
                yield Broken(
                    row.ticket_id,
                    row.id,
                    f"unkeyed row, but the key file says rows after {keys.keyed_after} are keyed",
                )
            elif row.hash != _digest(
                row.prev_hash, row.ticket_id, row.created_at, row.actor, row.type, row.detail, key
            ):
                yield Broken(row.ticket_id, row.id, "hash does not match the row's content")
            last[row.ticket_id] = row.hash
        session.expunge_all()
    if not head_seen and head is not None and _head(head.last_id, last) != head:
        yield Broken(0, head.last_id, "rows up to the published head are missing")
    yield _head(after, last)
    yield checked


def head(session: Session) -> Head:
    """The history's head now (what the scheduler logs daily, to be kept elsewhere)."""
    rows = session.execute(_SEL_TAILS).all()
    last_id = max((r.id for r in rows), default=0)
    return _head(last_id, {r.ticket_id: r.hash for r in rows})


_LAST_IDS = select(func.max(_TABLE.c.id).label("id")).group_by(_TABLE.c.ticket_id).subquery()
_SEL_TAILS = select(_TABLE.c.id, _TABLE.c.ticket_id, _TABLE.c.hash).where(
    _TABLE.c.id.in_(select(_LAST_IDS.c.id))
)
