"""The knowledge base: entries admins keep with `otrs-mailgate faq`, agents insert into
replies (faq=<id>), and queues that opt in (suggest_faq) offer in acknowledgements.

Suggestions rank the entries of the ticket's queue and language against the
customer's words with the engine's full-text ranking (FTS5's bm25 with the title
weighted double; PostgreSQL's ts_rank with the title as weight A), then keep
only entries sharing at least two of the mail's words (one for a very short
mail): a single common word is no reason to send someone an answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Integer, column, func, literal, or_, select, table, text
from sqlalchemy.dialects.postgresql import REGCONFIG
from sqlalchemy.orm import Session

from otrs_mailgate.store import search
from otrs_mailgate.store.models import FaqEntry, utcnow
from otrs_mailgate.store.searchquery import words

SUGGESTIONS = 3
MIN_WORD = 4  # shorter words of the mail take no part in matching
MAX_WORDS = 40

DDL = search.FAQ_DDL
_DELETE = {
    "sqlite": "DELETE FROM faq_fts WHERE rowid = :id",
    "postgresql": "DELETE FROM faq_search WHERE faq_id = :id",
}
_INSERT = {
    "sqlite": "INSERT INTO faq_fts (rowid, title, text) VALUES (:id, :title, :text)",
    "postgresql": (
        "INSERT INTO faq_search (faq_id, doc) VALUES (:id, "
        "setweight(to_tsvector('english', :title) || to_tsvector('german', :title), 'A') || "
        "setweight(to_tsvector('english', :text) || to_tsvector('german', :text), 'B'))"
    ),
}
_F = FaqEntry.__table__


class FaqError(ValueError):
    """A request about the knowledge base that cannot be done; says why."""


@dataclass
class Entry:
    id: int
    title: str
    text: str
    language: str
    queue: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def create(conn: Connection) -> None:
    """The index tables (migration 0009)."""
    for statement in DDL[conn.dialect.name]:
        conn.exec_driver_sql(statement)


def index_entry(conn: Connection, entry: Entry) -> None:
    """(Re)write an entry's index row."""
    dialect = conn.dialect.name
    conn.execute(text(_DELETE[dialect]), {"id": entry.id})
    folded = {"title": " ".join(words(entry.title)), "text": " ".join(words(entry.text))}
    conn.execute(text(_INSERT[dialect]), {"id": entry.id, **folded})


def _entry(row: Any) -> Entry:
    return Entry(row.id, row.title, row.text, row.language, row.queue)


def get(conn: Connection, entry_id: int) -> Entry | None:
    row = conn.execute(select(_F).where(_F.c.id == entry_id)).first()
    return _entry(row) if row is not None else None


def add(session: Session, title: str, body: str, language: str, queue: str) -> Entry:
    _check(title, body)
    conn = session.connection()
    now = utcnow()
    entry_id = conn.execute(
        _F.insert()
        .values(title=title.strip(), text=body.strip(), language=language, queue=queue)
        .values(created_at=now, updated_at=now)
        .returning(_F.c.id)
    ).scalar_one()
    entry = Entry(entry_id, title.strip(), body.strip(), language, queue)
    index_entry(conn, entry)
    return entry


def edit(session: Session, entry_id: int, **changes: str | None) -> Entry:
    conn = session.connection()
    entry = get(conn, entry_id)
    if entry is None:
        raise FaqError(f"no FAQ entry {entry_id}")
    for key, value in changes.items():
        if value is not None:
            setattr(entry, key, value.strip() if key in ("title", "text") else value)
    _check(entry.title, entry.text)
    conn.execute(
        _F.update()
        .where(_F.c.id == entry_id)
        .values(title=entry.title, text=entry.text, language=entry.language, queue=entry.queue)
        .values(updated_at=utcnow())
    )
    index_entry(conn, entry)
    return entry


def _check(title: str, body: str) -> None:
    if not title.strip():
        raise FaqError("the title is empty")
    if not body.strip():
        raise FaqError("the text is empty")
    if "\n" in title.strip():
        raise FaqError("the title is one line")


def listing(conn: Connection, queue: str | None = None, language: str | None = None) -> list[Entry]:
    stmt = select(_F).order_by(_F.c.id)
    if queue is not None:
        stmt = stmt.where(or_(_F.c.queue == queue, _F.c.queue == ""))
    if language is not None:
        stmt = stmt.where(_F.c.language == language)
    return [_entry(r) for r in conn.execute(stmt)]


def suggest(conn: Connection, queue: str, language: str, subject: str, body: str) -> list[Entry]:
    """The entries of the queue (or of every queue) in the language that best match the
    customer's mail: at most SUGGESTIONS, possibly none."""
    wanted = list(dict.fromkeys(w for w in words(f"{subject} {body}") if len(w) >= MIN_WORD))
    wanted = wanted[:MAX_WORDS]
    if not wanted:
        return []
    ranked = _ranked(conn, wanted)
    if not ranked:
        return []
    rows = {
        r.id: _entry(r)
        for r in conn.execute(
            select(_F).where(
                _F.c.id.in_(ranked), _F.c.language == language, _F.c.queue.in_((queue, ""))
            )
        )
    }
    need = 2 if len(wanted) > 2 else 1
    out = []
    mine = set(wanted)
    for entry_id in ranked:
        entry = rows.get(entry_id)
        if entry is None:
            continue
        shared = mine & set(words(f"{entry.title} {entry.text}"))
        if len(shared) >= need:
            out.append(entry)
        if len(out) == SUGGESTIONS:
            break
    return out


def _ranked(conn: Connection, wanted: list[str], limit: int = 50) -> list[int]:
    if conn.dialect.name == "sqlite":
        match = " OR ".join(f'"{w}"' for w in wanted)
        rows = conn.execute(
            text(
                "SELECT rowid FROM faq_fts WHERE faq_fts MATCH :m "
                "ORDER BY bm25(faq_fts, 2.0, 1.0) LIMIT :n"
            ),
            {"m": match, "n": limit},
        )
        return [r[0] for r in rows]
    query = " | ".join(wanted)
    ts = func.tsquery_or(
        func.to_tsquery(literal("english", REGCONFIG), query),
        func.to_tsquery(literal("german", REGCONFIG), query),
    )
    index = table("faq_search", column("faq_id", Integer), column("doc"))
    rows = conn.execute(
        select(index.c.faq_id)
        .where(index.c.doc.op("@@")(ts))
        .order_by(func.ts_rank(index.c.doc, ts).desc())
        .limit(limit)
    )
    return [r[0] for r in rows]
