"""`otrs-mailgate migrate-db --to URL`: copy every row from the configured database into
another one (SQLite to PostgreSQL, typically), ids and hash chains as they are.

The target is brought to the current schema first and must hold no tickets: a
copy into a live database would mix two histories.  Tables are copied in the
order of their foreign keys, in batches, in one transaction on the target (a
failure leaves it as empty as it was).  Afterwards PostgreSQL's id sequences are
moved past the copied ids, and the full-text indexes, which are no model's, are
built anew on the target.  Stop `serve` (or take the source from a backup) while
copying: mail that arrives meanwhile would be left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, select, text

from otrs_mailgate.store import db, search
from otrs_mailgate.store.models import Base, Ticket
from otrs_mailgate.tickets import faq

BATCH = 2000


class MigrateError(RuntimeError):
    """The copy cannot be made; says why (nothing was written)."""


@dataclass
class Copied:
    tables: dict[str, int]

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def migrate(
    source: Engine, target: Engine, progress: Callable[[str, int], None] | None = None
) -> Copied:
    if source.url == target.url:
        raise MigrateError("the target is the configured database itself")
    if db.current_revision(source) is None:
        raise MigrateError("the source database has no schema (run `otrs-mailgate init`)")
    db.upgrade(source)  # both on the same revision
    db.upgrade(target)
    with target.connect() as conn:
        if conn.execute(select(func.count()).select_from(Ticket)).scalar_one():
            raise MigrateError("the target database already holds tickets; give an empty one")
    copied: dict[str, int] = {}
    with source.connect() as src, target.begin() as dst:
        for table in Base.metadata.sorted_tables:
            dst.execute(table.delete())  # init's own rows (the site secret) make way
            n = 0
            key = list(table.primary_key.columns)
            result = src.execution_options(yield_per=BATCH).execute(select(table).order_by(*key))
            for rows in result.partitions(BATCH):
                dst.execute(table.insert(), [dict(r._mapping) for r in rows])
                n += len(rows)
                if progress:
                    progress(table.name, n)
            copied[table.name] = n
        if dst.dialect.name == "postgresql":
            _advance_sequences(dst)
        search.reindex(dst)
        for entry in faq.listing(dst):
            faq.index_entry(dst, entry)
    with source.connect() as src, target.connect() as dst:
        for table in Base.metadata.sorted_tables:
            theirs = dst.execute(select(func.count()).select_from(table)).scalar_one()
            if theirs != copied[table.name]:
                raise MigrateError(f"{table.name}: {copied[table.name]} copied, {theirs} found")
    return Copied(copied)


def _advance_sequences(conn: Connection) -> None:
    """Serial ids on PostgreSQL continue after the copied rows."""
    for table in Base.metadata.sorted_tables:
        key = list(table.primary_key.columns)
        if len(key) != 1:
            continue
        sequence = conn.execute(
            text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": key[0].name}
        ).scalar()
        if sequence:
            top = conn.execute(select(func.max(key[0]))).scalar() or 0
            conn.execute(text("SELECT setval(:s, :v, false)"), {"s": sequence, "v": top + 1})
