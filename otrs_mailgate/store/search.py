"""Full-text search: the index written with each article, and queries over it.

One index document per article: subject, text, attachment names, addresses and
sender name, folded (searchquery.fold) and reduced to plain words, so both
engines see the same words.  SQLite keeps them in a contentless FTS5 table with
the porter stemmer (English; SQLite has no German stemmer); PostgreSQL in a
tsvector column of English and German stems with a GIN index.  Neither table is
a model: they are engine-specific and compare_metadata skips them (is_index).

The index row goes into the article's own transaction (db.defer_insert), so a
stored article is always searchable and a rolled-back one never is.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    and_,
    column,
    func,
    literal,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import REGCONFIG
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from otrs_mailgate.config.schema import Config
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Agent, Article, Company, Customer, Queue, Ticket
from otrs_mailgate.store.searchquery import (
    And,
    Filters,
    Node,
    Not,
    Or,
    Query,
    QueryError,
    Term,
    fold,
    words,
)

MAX_BODY = 100_000  # characters of an article's text that are indexed
MAX_SNIPPET_SOURCE = 20_000  # a snippet comes from the start of a text
FIRST_WINDOW = 50_000  # the newest article ids searched first; then wider, see hits()
INDEX_TABLES = ("article_fts", "article_search", "faq_fts", "faq_search")

DDL = {
    "sqlite": [
        "CREATE VIRTUAL TABLE article_fts USING fts5(text, content='', "
        "tokenize='porter unicode61 remove_diacritics 2')"
    ],
    "postgresql": [
        "CREATE TABLE article_search (article_id INTEGER NOT NULL, doc TSVECTOR NOT NULL, "
        "CONSTRAINT pk_article_search PRIMARY KEY (article_id), "
        "CONSTRAINT fk_article_search_article_id_article FOREIGN KEY(article_id) "
        "REFERENCES article (id))",
        "CREATE INDEX ix_article_search_doc ON article_search USING gin (doc)",
    ],
}
_INSERT = {
    "sqlite": text("INSERT INTO article_fts (rowid, text) VALUES (:article_id, :text)"),
    "postgresql": text(
        "INSERT INTO article_search (article_id, doc) VALUES (:article_id, "
        "to_tsvector(CAST(:config AS regconfig), :text))"
    ),
}
LANGUAGES = ("english", "german")


def config_for(language: str | None) -> str:
    """The one text search configuration an article is stemmed with: its ticket's
    language (German, else English).  A query is stemmed both ways (_tsquery), so it
    finds either; one to_tsvector instead of two halves the index's cost a mail."""
    return "german" if language == "de" else "english"


def is_index(name: str | None) -> bool:
    """The index's tables (and FTS5's shadow tables), which are no model's."""
    return bool(name) and any(str(name).startswith(t) for t in INDEX_TABLES)


def indexed_body(body: str, protection: str) -> str:
    """What of an article's text is indexed: none of a decrypted mail whose queue keeps
    it out of the index (articles._protection marks it)."""
    return "" if protection and '"unindexed": true' in protection else body


def document(subject: str, body: str, names: Iterable[str], addresses: Iterable[str]) -> str:
    """What of an article is searchable, as folded plain words."""
    # One pass over the parts joined: words never span the space between them.
    return " ".join(words(" ".join([subject, body[:MAX_BODY], *names, *addresses])))


def index(session: Session, article_id: int, doc: str, language: str | None = None) -> None:
    """Index an article within the transaction that stores it (language: its ticket's)."""
    dialect = session.get_bind().dialect.name
    row = {"article_id": article_id, "text": doc}
    if dialect == "postgresql":
        row["config"] = config_for(language)
    db.defer_insert(session, _INSERT[dialect], row)


def create(conn: Connection) -> None:
    """Create the index tables (migration 0007) and index every stored article."""
    for statement in DDL[conn.dialect.name]:
        conn.exec_driver_sql(statement)
    reindex(conn, protection=False)  # migration 0007: the column comes with 0011


def reindex(conn: Connection, batch: int = 1000, protection: bool = True) -> int:
    """Index the articles newer than the newest indexed one (all, on an upgrade); how
    many."""
    a = Article.__table__
    newest = (
        "SELECT max(rowid) FROM article_fts"
        if conn.dialect.name == "sqlite"
        else "SELECT max(article_id) FROM article_search"
    )
    last = conn.execute(text(newest)).scalar_one() or 0
    done = 0
    while True:
        docs = _documents(conn, (a.c.id > last,), batch, protection)
        if not docs:
            return done
        last = docs[-1]["article_id"]
        conn.execute(_INSERT[conn.dialect.name], docs)
        done += len(docs)


def unindex(conn: Connection, article_ids: list[int]) -> None:
    """Take articles out of the index before their text goes (a purge). FTS5's
    contentless table forgets a row only when told the words it was given, so they are
    made again from the row as it still stands, the way reindex() made them."""
    if not article_ids:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("DELETE FROM article_search WHERE article_id = ANY(:ids)"), {"ids": article_ids}
        )
        return
    a = Article.__table__
    docs = _documents(conn, (a.c.id.in_(article_ids),), len(article_ids))
    if docs:
        conn.execute(
            text(
                "INSERT INTO article_fts (article_fts, rowid, text) "
                "VALUES ('delete', :article_id, :text)"
            ),
            docs,
        )


def _documents(
    conn: Connection, where: tuple[Any, ...], limit: int, protection: bool = True
) -> list[dict[str, Any]]:
    """Index rows of the articles `where` picks, oldest first (protection=False: a
    schema from before the article's protection column)."""
    a, t = Article.__table__, Ticket.__table__
    shield = a.c.protection if protection else literal("").label("protection")
    rows = conn.execute(
        select(a.c.id, a.c.subject, a.c.body_text, a.c.from_addr, a.c.from_name)
        .add_columns(a.c.to_addrs, a.c.cc_addrs, shield, t.c.language)
        .join(t, t.c.id == a.c.ticket_id)
        .where(*where)
        .order_by(a.c.id)
        .limit(limit)
    ).all()
    names = _attachment_names(conn, [r.id for r in rows])
    return [
        {
            "article_id": r.id,
            "text": document(
                r.subject,
                indexed_body(r.body_text, r.protection),
                names.get(r.id, []),
                (r.from_addr, r.from_name, r.to_addrs, r.cc_addrs),
            ),
            **({"config": config_for(r.language)} if conn.dialect.name == "postgresql" else {}),
        }
        for r in rows
    ]


def _attachment_names(conn: Connection, ids: list[int]) -> dict[int, list[str]]:
    from otrs_mailgate.store.models import Attachment

    att = Attachment.__table__
    out: dict[int, list[str]] = {}
    if ids:
        for row in conn.execute(
            select(att.c.article_id, att.c.filename).where(att.c.article_id.in_(ids))
        ):
            out.setdefault(row.article_id, []).append(row.filename)
    return out


# -- queries ------------------------------------------------------------------------------


@dataclass
class Hit:
    ticket_id: int
    article_id: int | None


def _fts5(node: Node) -> str:
    """The query as an FTS5 MATCH expression; every word is quoted, so nothing the user
    typed is read as FTS5 syntax."""
    if isinstance(node, Term):
        alternatives = [
            '"' + " ".join(spelling) + '"' + ("*" if node.prefix else "")
            for spelling in node.spellings
        ]
        return alternatives[0] if len(alternatives) == 1 else f"({' OR '.join(alternatives)})"
    if isinstance(node, Or):
        return "(" + " OR ".join(_fts5(n) for n in node.nodes) + ")"
    if isinstance(node, And):
        positives = [_fts5(n) for n in node.nodes if not isinstance(n, Not)]
        out = "(" + " AND ".join(positives) + ")"
        for negated in (n for n in node.nodes if isinstance(n, Not)):
            out = f"({out} NOT {_fts5(negated.node)})"
        return out
    raise AssertionError(f"NOT outside AND reached the compiler: {node}")


def _tsquery(node: Node) -> ColumnElement[Any]:
    """The query as a PostgreSQL tsquery, each word stemmed as English or German."""
    if isinstance(node, Term):
        parts: list[ColumnElement[Any]] = []
        for spelling in node.spellings:
            lexemes = " <-> ".join(spelling) + (":*" if node.prefix else "")
            for language in LANGUAGES:
                parts.append(func.to_tsquery(literal(language, REGCONFIG), literal(lexemes)))
        return _fold(func.tsquery_or, parts)
    if isinstance(node, Or):
        return _fold(func.tsquery_or, [_tsquery(n) for n in node.nodes])
    if isinstance(node, And):
        return _fold(
            func.tsquery_and,
            [
                func.tsquery_not(_tsquery(n.node)) if isinstance(n, Not) else _tsquery(n)
                for n in node.nodes
            ],
        )
    raise AssertionError(f"NOT outside AND reached the compiler: {node}")


def _fold(fn: Any, parts: list[ColumnElement[Any]]) -> ColumnElement[Any]:
    out = parts[0]
    for part in parts[1:]:
        out = fn(out, part)
    return out


def _day_start(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


def _ranges(
    column: Any, ranges: list[tuple[dt.date | None, dt.date | None]], zone: ZoneInfo
) -> Any:
    conditions = []
    for start, end in ranges:
        # The calendar's first and last days bound nothing (and would overflow), but a
        # range still asks that the instant exists (closed: a ticket that was closed).
        parts = [column.is_not(None)]
        if start is not None and start > _FIRST_DAY:
            parts.append(column >= _day_start(start, zone))
        if end is not None and end < _LAST_DAY:
            parts.append(column < _day_start(end + dt.timedelta(days=1), zone))
        conditions.append(and_(*parts))
    return or_(*conditions)


_FIRST_DAY = dt.date.min + dt.timedelta(days=1)
_LAST_DAY = dt.date.max - dt.timedelta(days=1)


def _filters(stmt: Any, filters: Filters, zone: ZoneInfo) -> Any:
    t = Ticket.__table__
    if filters.queue:
        q = Queue.__table__
        stmt = stmt.where(
            t.c.queue_id.in_(
                select(q.c.id).where(
                    func.lower(q.c.name).in_([name.lower() for name in filters.queue])
                )
            )
        )
    if filters.state:
        stmt = stmt.where(t.c.state.in_(filters.state))
    if filters.owner:
        ag = Agent.__table__
        logins = [o for o in filters.owner if o != "none"]
        owned = t.c.owner_id.in_(select(ag.c.id).where(ag.c.login.in_(logins)))
        stmt = stmt.where(or_(owned, t.c.owner_id.is_(None)) if "none" in filters.owner else owned)
    if filters.customer:
        c = Customer.__table__
        exact = [a for a in filters.customer if not a.startswith("@")]
        domains = [a for a in filters.customer if a.startswith("@")]
        match = [c.c.address.in_(exact)] if exact else []
        match += [c.c.address.like("%" + _escape_like(d), escape="\\") for d in domains]
        stmt = stmt.where(t.c.customer_id.in_(select(c.c.id).where(or_(*match))))
    if filters.company:
        co = Company.__table__
        stmt = stmt.where(
            t.c.company_id.in_(select(co.c.id).where(func.lower(co.c.name).in_(filters.company)))
        )
    if filters.created:
        stmt = stmt.where(_ranges(t.c.created_at, filters.created, zone))
    if filters.closed:
        stmt = stmt.where(_ranges(t.c.closed_at, filters.closed, zone))
    if filters.priority:
        stmt = stmt.where(or_(*(t.c.priority.between(lo, hi) for lo, hi in filters.priority)))
    return stmt


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def hits(
    conn: Connection,
    config: Config,
    query: Query,
    limit: int = 50,
    queue_ids: Collection[int] | None = None,
) -> list[Hit]:
    """The tickets matching, newest match first, at most limit + 1 (so callers can say
    there are more); each with its newest matching article.  queue_ids: only tickets
    of these queues (what an agent may see).

    Matching articles are read newest first, in windows of article ids (and in pages
    within a window) until enough tickets are found; each next window is as wide as
    the hit rate so far says is needed (4 to 64 times the last).  Common words stop
    in the first window, rare ones widen it in a step or two, and neither engine
    groups or sorts every match of the whole index.
    """
    t = Ticket.__table__
    zone = ZoneInfo(config.system.timezone)
    only = [] if queue_ids is None else [t.c.queue_id.in_(list(queue_ids))]
    if query.text is None:
        stmt = select(t.c.id, literal(None).label("hit")).where(*only).order_by(t.c.id.desc())
        stmt = _filters(stmt, query.filters, zone).limit(limit + 1)
        return [Hit(row[0], row[1]) for row in conn.execute(stmt)]
    key, stmt = _matching(conn.dialect.name, query.text)
    stmt = _filters(stmt.where(*only), query.filters, zone)
    top = conn.execute(select(func.max(Article.__table__.c.id))).scalar() or 0
    page = 4 * (limit + 1)
    found: dict[int, Hit] = {}
    high, window = top + 1, FIRST_WINDOW
    while len(found) <= limit and high > 0:
        low = max(0, high - window)
        before, had = high, len(found)
        while len(found) <= limit:
            bounds = ([key >= low] if low > 0 else []) + ([key < before] if before <= top else [])
            rows = conn.execute(stmt.where(*bounds).limit(page)).all()
            for ticket_id, article_id in rows:
                found.setdefault(ticket_id, Hit(ticket_id, article_id))
            if len(rows) < page:
                break
            before = rows[-1][1]
        # the next window: wide enough for the tickets still wanted at the rate this one
        # gave (each query reads the words' whole posting lists, so fewer is faster)
        rate = (len(found) - had) / window
        wanted = (limit + 1 - len(found)) * 1.5
        factor = wanted / (rate * window) if rate else 64
        high, window = low, int(window * min(max(factor, 4), 64))
    return list(found.values())[: limit + 1]


def _matching(dialect: str, node: Node) -> tuple[Any, Any]:
    """(ticket id, article id) of the articles whose index document matches, newest
    first, joined to their ticket for the filters; and the column to page on."""
    t, a = Ticket.__table__, Article.__table__
    if dialect == "sqlite":
        index = table("article_fts", column("rowid", Integer))
        key = index.c.rowid
        condition: ColumnElement[Any] | TextClause = text("article_fts MATCH :match").bindparams(
            match=_fts5(node)
        )
    else:
        index = table("article_search", column("article_id", Integer), column("doc"))
        key = index.c.article_id
        condition = index.c.doc.op("@@")(_tsquery(node))
    # PostgreSQL: ordering by an expression keeps the planner off a backward walk of the
    # primary key that tests every row (hundreds of ms when its match estimate is off);
    # the id window bounds the bitmap scan and its sort instead.
    order = key if dialect == "sqlite" else key + 0
    stmt = (
        select(a.c.ticket_id, key)
        .select_from(index.join(a, a.c.id == key).join(t, t.c.id == a.c.ticket_id))
        .where(condition)
        .order_by(order.desc())
    )
    return key, stmt


def check_queues(query: Query, config: Config, source: str) -> None:
    """A queue: filter naming no queue is a mistake worth saying, not an empty result."""
    names = {q.name.lower() for q in config.queue}
    for name in query.filters.queue:
        if name.lower() not in names:
            position = source.lower().find("queue:") + 1
            known = ", ".join(q.name for q in config.queue)
            raise QueryError(max(position, 1), f"queue:{name}: no such queue (known: {known})")


def snippet(body: str, node: Node | None, width: int = 160) -> str:
    """A line of the text around the first word of the query found in it."""
    flat = " ".join(body[:MAX_SNIPPET_SOURCE].split())
    folded = fold(flat)
    origin = list(range(len(flat)))
    if len(folded) != len(flat):  # ß, ligatures: map each folded character back
        folded, origin = "", []
        for i, char in enumerate(flat):
            piece = fold(char)
            folded += piece
            origin += [i] * len(piece)
    at = -1
    for term in _terms(node) if node is not None else ():
        for spelling in term.spellings:
            found = re.search(r"\b" + re.escape(spelling[0]), folded)
            if found and (at < 0 or found.start() < at):
                at = found.start()
    start = max(0, origin[at] - width // 3) if at >= 0 else 0
    out = flat[start : start + width]
    return ("…" if start else "") + out + ("…" if start + width < len(flat) else "")


def _terms(node: Node) -> Iterable[Term]:
    if isinstance(node, Term):
        yield node
    elif isinstance(node, (And, Or)):
        for n in node.nodes:
            yield from _terms(n)
    # words under NOT are not what the reader looks for


__all__ = ["DDL", "Hit", "QueryError", "create", "document", "hits", "index", "is_index"]

# The knowledge base's full-text index (tickets/faq.py fills it).
FAQ_DDL: dict[str, list[str]] = {
    "sqlite": [
        "CREATE VIRTUAL TABLE faq_fts USING fts5(title, text, "
        "tokenize='porter unicode61 remove_diacritics 2')"
    ],
    "postgresql": [
        "CREATE TABLE faq_search (faq_id INTEGER NOT NULL, doc TSVECTOR NOT NULL, "
        "CONSTRAINT pk_faq_search PRIMARY KEY (faq_id), "
        "CONSTRAINT fk_faq_search_faq_id_faq FOREIGN KEY(faq_id) REFERENCES faq (id))",
        "CREATE INDEX ix_faq_search_doc ON faq_search USING gin (doc)",
    ],
}
