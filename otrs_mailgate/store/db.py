"""Engines, transactions, schema upgrades and the ticket counter.

SQLite runs in WAL mode with synchronous=FULL (a 250 must survive a power cut)
and every write transaction starts with BEGIN IMMEDIATE, so two writers queue
on busy_timeout instead of failing mid-transaction.  PostgreSQL uses psycopg 3.
"""

from __future__ import annotations

import collections
import importlib.resources
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    create_engine,
    event,
    literal_column,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import TextClause

from otrs_mailgate.store.models import Base, Counter


class TemporaryFailure(Exception):
    """The store cannot take the message right now; the MTA should retry (451 / 75)."""


def sqlite_module() -> Any | None:
    try:
        import pysqlite3.dbapi2 as module  # newer SQLite than the system's, where a wheel exists
    except ImportError:
        return None
    return module


def normalise_url(url: str) -> str:
    """postgresql:// means psycopg 3 to us, not psycopg2."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


PRIVATE_FILE, PRIVATE_DIR = 0o600, 0o700


def private_file(path: Path) -> None:
    """Make an empty file only its owner can read (0600 whatever the umask): the SQLite
    database and its backups hold the agents' secrets and the customers' mail.  SQLite
    gives its -wal and -shm files the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)  # the umask may have taken bits off, never added
    os.close(fd)


def loose_mode(path: Path) -> str:
    """Why a file of ours is readable by others than its owner, or ""."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return ""
    if mode & 0o077:
        return f"{path} is mode {mode:04o}, readable beyond its owner: chmod 600 {path}"
    return ""


class DatabaseProblem(Exception):
    """The configured database cannot be used; the message says why and what to do, in
    one line (the CLI prints it, `serve` refuses to start with it)."""


def make_engine(url: str, busy_timeout_ms: int = 5000, *, create: bool = True) -> Engine:
    """An engine for the URL.  create=False: a SQLite file that is not there is a
    DatabaseProblem instead of a new empty database (only `init` makes one: a mistyped
    path in `ticket list` made a directory and an empty file)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:" and not create and not Path(path).exists():
            raise DatabaseProblem(
                f"no database at {path}: run `otrs-mailgate init` to make it, or fix database.url"
            )
        if path and path != ":memory:" and not Path(path).exists():
            private_file(Path(path))
        kwargs: dict[str, Any] = {}
        module = sqlite_module()
        if module is not None:
            kwargs["module"] = module
        engine = create_engine(
            url,
            connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
            **kwargs,
        )
        _sqlite_setup(engine, busy_timeout_ms)
        _GATES[engine] = WriterGate(busy_timeout_ms / 1000)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_setup(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock at BEGIN, so they never fail half-way on upgrading a
        # read lock; read_only() connections (a glance at what is due) take none at all.
        deferred = conn.get_execution_options().get("read_only")
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


def sessionmaker_for(engine: Engine, info: dict[str, Any] | None = None) -> sessionmaker[Session]:
    """No autoflush: the pipeline flushes where it needs ids (flushes dominate its CPU time).
    `info` is copied into every session's .info (the history's audit keys)."""
    return sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info or {})


class WriterGate:
    """SQLite's write lock, taken in turn by the threads of one process.

    SQLite lets a waiting writer poll (its busy handler sleeps up to 100 ms between
    tries), so a thread that commits and begins again at once, as the group committer
    does under load, wins nearly every time and the outbox sender waits seconds for
    each turn.  Here the waiting threads queue: each gets the lock after the one
    before it, once that one's transaction ends.  Other processes still meet SQLite's
    busy handler.  Reentrant: a transaction inside a transaction does not wait on itself.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._cond = threading.Condition()
        self._owner: int | None = None
        self._depth = 0
        self._queue: collections.deque[int] = collections.deque()

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            if self._owner is None and not self._queue:
                self._owner, self._depth = me, 1
                return
            self._queue.append(me)
            if not self._cond.wait_for(lambda: self._owner == me, self.timeout):
                self._queue.remove(me)
                raise TemporaryFailure("database is locked (by this process's other writers)")
            self._depth = 1

    def release(self) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth:
                return
            self._owner = self._queue.popleft() if self._queue else None  # handed over in turn
            self._cond.notify_all()


_GATES: weakref.WeakKeyDictionary[Engine, WriterGate] = weakref.WeakKeyDictionary()


@contextmanager
def _turn(factory: sessionmaker[Session]) -> Iterator[None]:
    """The writer gate of the factory's engine, for SQLite; nothing for PostgreSQL."""
    gate = _GATES.get(factory.kw.get("bind"))  # type: ignore[arg-type]
    if gate is None:
        yield
        return
    gate.acquire()
    try:
        yield
    finally:
        gate.release()


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any error.

    Errors of the database itself (down, locked, full, read-only) come out as
    TemporaryFailure, so entry points can answer 451/75 without knowing drivers.
    """
    with _turn(factory):
        session = factory()
        try:
            yield session
            session.commit()
        except (OperationalError, DBAPIError) as exc:
            session.rollback()
            if is_temporary(exc):
                raise TemporaryFailure(str(exc.orig) if exc.orig else str(exc)) from exc
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A connection for reading only: on SQLite it does not wait for the write lock."""
    with engine.connect() as conn:
        conn.execution_options(read_only=True)
        yield conn
        conn.rollback()


def backup_sqlite(engine: Engine, target: Path) -> int:
    """Copy a live SQLite database page by page (writers go on meanwhile; what the copy
    holds is one committed state); how many pages."""
    private_file(target)
    raw = engine.raw_connection()
    try:
        source: Any = raw.driver_connection
        copy = type(source)(str(target))  # the same driver: sqlite3 or pysqlite3
        try:
            source.backup(copy, pages=1024)
            pages = copy.execute("PRAGMA page_count").fetchone()[0]
            ok = copy.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            copy.close()
    finally:
        raw.close()
    if ok != "ok":
        raise RuntimeError(f"the copy fails its integrity check: {ok}")
    return int(pages)


def is_temporary(exc: BaseException) -> bool:
    """Database unavailable, locked, full or read-only: worth retrying later."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[str, ...] | None  # parameter names in place order (qmark), or None
    processors: dict[str, Any]
    constants: dict[str, Any]  # values built into the statement


class Prepared:
    """A hot statement, still built with SQLAlchemy Core, compiled once per dialect and
    run on the driver's cursor with nothing but its bind processing.

    For the handful of statements every mail runs (the delivery check, the customer,
    raw bytes, ticket and article rows, the loop limit) SQLAlchemy's execute path
    costs more CPU than the statement itself on SQLite (issue 21).  Driver errors come
    out as SQLAlchemy's own exceptions (IntegrityError, OperationalError), so the
    callers' handling (a retry after a collision, 451 when the database is away) is
    the same.  Statements that need SQLAlchemy at execution time (expanding IN, post
    compile parameters) are run by it as before.
    """

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self._compiled: dict[tuple[str, frozenset[str]], _Compiled | None] = {}

    def _for(self, dialect: Any, keys: frozenset[str]) -> _Compiled | None:
        """The SQL for this dialect and these parameters (an INSERT names the columns it
        is given), or None when it needs SQLAlchemy at execution time: expanding IN,
        post-compile parameters, or column defaults computed in Python."""
        cache_key = (dialect.name, keys)
        if cache_key not in self._compiled:
            compiled = self.stmt.compile(dialect=dialect, column_keys=sorted(keys))
            sql = compiled.string
            needs_sqlalchemy = (
                "POSTCOMPILE" in sql
                or any(b.expanding for b in compiled.binds.values())
                or compiled.insert_prefetch
                or compiled.update_prefetch
            )
            if needs_sqlalchemy:
                self._compiled[cache_key] = None
            else:
                order = tuple(compiled.positiontup) if compiled.positional else None
                processors, constants = {}, {}
                for key, bind in compiled.binds.items():
                    processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                    if processor is not None:
                        processors[key] = processor
                    if key not in keys and bind.callable is None and bind.value is not None:
                        constants[key] = bind.value  # .values(value=1), column + 1
                self._compiled[cache_key] = _Compiled(sql, order, processors, constants)
        return self._compiled[cache_key]

    def fast(self, dialect: Any, keys: frozenset[str]) -> bool:
        """Whether it runs on the driver's cursor with these parameters (for tests)."""
        return self._for(dialect, keys) is not None

    def run(self, conn: Connection, params: dict[str, Any]) -> Any:
        """Execute; the driver's cursor (its rows as plain tuples) or, for a statement
        that cannot run this way, SQLAlchemy's result."""
        prepared = self._for(conn.dialect, frozenset(params))
        if prepared is None:
            return conn.execute(self.stmt, params)
        values = {**prepared.constants, **params}
        for key, processor in prepared.processors.items():
            if key in values:
                values[key] = processor(values[key])
        args: Any = (
            tuple(values[k] for k in prepared.order) if prepared.order is not None else values
        )
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            cursor.execute(prepared.sql, args)
        except conn.dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise DBAPIError.instance(
                prepared.sql, args, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from exc
        return cursor

    def first(self, conn: Connection, params: dict[str, Any]) -> Any:
        """The first row (a tuple), or None."""
        result = self.run(conn, params)
        if isinstance(result, CursorResult):
            return result.first()
        try:
            return result.fetchone()
        finally:
            result.close()

    def scalar(self, conn: Connection, params: dict[str, Any]) -> Any:
        row = self.first(conn, params)
        return None if row is None else row[0]


def prepared(stmt: Any) -> Prepared:
    """The Prepared form of a long-lived statement (module constants, cached builds)."""
    found = _PREPARED.get(id(stmt))
    if found is None or found.stmt is not stmt:
        found = _PREPARED[id(stmt)] = Prepared(stmt)
    return found


_PREPARED: dict[int, Prepared] = {}


def next_counter(session: Session, name: str) -> int:
    """Atomically increment and return a named counter.

    SQLite: inside the caller's transaction (writers are serialised anyway).
    PostgreSQL: in a short autocommit transaction of its own, so the counter row
    is locked only for one statement, like a sequence (a rollback leaves a gap,
    never a duplicate) and concurrent ingest transactions do not queue on it.
    """
    bind = session.get_bind()
    dialect = bind.dialect.name
    stmt = _COUNTER.get(dialect)
    if stmt is None:
        ins = (postgresql if dialect == "postgresql" else sqlite).insert(Counter.__table__)
        stmt = _COUNTER[dialect] = (
            ins.values(value=1)
            .on_conflict_do_update(
                index_elements=["name"], set_={"value": Counter.__table__.c.value + 1}
            )
            .returning(Counter.__table__.c.value)
        )
    if dialect == "postgresql":
        engine = bind if isinstance(bind, Engine) else bind.engine
        return int(_counter_line(engine, stmt, {"name": name}))
    return int(prepared(stmt).scalar(session.connection(), {"name": name}))


_COUNTER: dict[str, Any] = {}
# PostgreSQL: the counters' own small pool of autocommit connections, without the
# liveness ping the main pool does on every checkout: taking a pinged connection for
# every new ticket cost a round trip, 17% of the committer's time (issue 31).  Keyed
# weakly by the engine and holding only its URL, so it goes when the engine goes.
_COUNTER_ENGINES: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_COUNTER_LOCK = threading.Lock()


def _counter_engine(engine: Engine) -> Engine:
    with _COUNTER_LOCK:
        found = _COUNTER_ENGINES.get(engine)
        if found is None:
            found = create_engine(
                engine.url, isolation_level="AUTOCOMMIT", pool_size=2, max_overflow=8
            )
            event.listen(found, "connect", _counter_session)
            event.listen(engine, "engine_disposed", _dispose_counter_engine)
            _COUNTER_ENGINES[engine] = found
        return found


def _counter_session(dbapi_connection: Any, _record: Any) -> None:
    """The increment commits without waiting for its WAL flush: WAL is written in
    order, so the flush of the ticket's own commit, which comes later, makes the
    increment durable too.  A crash can lose only increments whose tickets never
    committed; a number in a stored ticket is never given again."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")


def _dispose_counter_engine(engine: Engine) -> None:
    with _COUNTER_LOCK:
        found = _COUNTER_ENGINES.pop(engine, None)
    if found is not None:
        found.dispose()


def _counter_line(engine: Engine, stmt: Any, params: dict[str, Any]) -> Any:
    """Run the counter's statement on the counters' pool.  A connection that fails (the
    server restarted) is dropped and the statement tried once more on a fresh one: at
    worst a number is skipped, never given twice."""
    for attempt in (1, 2):
        with _counter_engine(engine).connect() as conn:
            try:
                return prepared(stmt).scalar(conn, params)
            except OperationalError:
                conn.invalidate()
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


def upsert_stmt(dialect: str, table: Table, key: str, returning: tuple[str, ...]) -> Any:
    """INSERT ... ON CONFLICT (key) DO UPDATE SET key = key RETURNING ...

    One statement on both dialects that answers with the row whether it was new or
    already there (DO NOTHING would return nothing for an existing row).  Built
    once per (dialect, table, key, returning) and reused.
    """
    cache_key = (dialect, table.name, key, returning)
    stmt = _UPSERTS.get(cache_key)
    if stmt is None:
        ins = (postgresql if dialect == "postgresql" else sqlite).insert(table)
        stmt = ins.on_conflict_do_update(
            index_elements=[table.c[key]], set_={key: ins.excluded[key]}
        ).returning(*(table.c[c] for c in returning))
        _UPSERTS[cache_key] = stmt
    return stmt


_UPSERTS: dict[tuple[str, str, str, tuple[str, ...]], Any] = {}


def insert_ignore(session: Session, model: type[Base], **values: Any) -> bool:
    """INSERT that does nothing when a unique key already exists (both dialects);
    whether the row was new."""
    dialect = session.get_bind().dialect.name
    key = (dialect, model.__tablename__, tuple(values))
    stmt = _IGNORING.get(key)
    if stmt is None:
        module = postgresql if dialect == "postgresql" else sqlite
        # RETURNING, not rowcount: psycopg reports no rowcount for this statement.
        stmt = _IGNORING[key] = (
            module.insert(model.__table__)
            .values({name: bindparam(name) for name in values})
            .on_conflict_do_nothing()
            .returning(literal_column("1"))
        )
    return session.connection().execute(stmt, values).first() is not None


_IGNORING: dict[tuple[str, str, tuple[str, ...]], Any] = {}


# -- deferred inserts ---------------------------------------------------------------------


def defer_insert(session: Session, table: Table | TextClause, row: dict[str, Any]) -> None:
    """Queue a row whose id nobody needs; all queued rows of a table (or of an INSERT
    statement, for tables that are no model) are written with one executemany when
    the transaction (or a savepoint) commits.

    One statement per mail and table costs more than the rest of a delivery; a
    batch of a hundred mails writes its history, references and deliveries in a
    few statements instead.  A rollback drops the queue with the work it held.
    """
    session.info.setdefault("deferred", {}).setdefault(table, []).append(row)


def deferred(session: Session, table: Table) -> list[dict[str, Any]]:
    """Rows of table queued in this transaction and not written yet (to look them up)."""
    return session.info.get("deferred", {}).get(table, [])


@event.listens_for(Session, "before_commit")
def _write_deferred(session: Session) -> None:
    """Runs before a commit and before a savepoint is released (SQLAlchemy fires
    before_commit for both), so each savepoint holds exactly its own rows."""
    pending = session.info.pop("deferred", None)
    if pending:
        conn = session.connection()
        for target, rows in pending.items():
            conn.execute(target if isinstance(target, TextClause) else target.insert(), rows)


@event.listens_for(Session, "after_soft_rollback")
def _drop_deferred(session: Session, _previous: object) -> None:
    session.info.pop("deferred", None)


# -- schema -----------------------------------------------------------------------------


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option(
        "script_location", str(importlib.resources.files("otrs_mailgate") / "migrations")
    )
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema with the alembic migrations; data is kept."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def explain(exc: BaseException) -> str:
    """A database error as one line with the hint that matches its cause."""
    if isinstance(exc, DatabaseProblem):
        return str(exc)
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    first = text.split(" [SQL:")[0][:300]
    lowered = text.lower()
    for needles, hint in _HINTS:
        if any(n in lowered for n in needles):
            return f"{first} ({hint})"
    return first


_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("no such table", "undefinedtable", "relation \""),
     "the database has no tables yet: run `otrs-mailgate init`"),
    (("password authentication failed", "authentication failed", "no password supplied"),
     "check the user and password in database.url"),
    (("role \"",), "the user in database.url does not exist on the server"),
    (("database \"",), "create the database (createdb NAME) or fix its name in database.url"),
    (("connection refused", "could not connect", "no such file or directory", "is the server"),
     "is the database server running, at the host and port database.url names?"),
    (("failed to resolve host", "name or service not known", "could not translate host"),
     "the host name in database.url does not resolve"),
    (("unable to open database file",),
     "the SQLite file's directory must exist and be writable by this user"),
    (("database is locked",), "another process holds SQLite's lock; try again"),
    (("readonly database", "read-only"), "the database (or its directory) is read-only"),
    (("disk is full", "no space"), "the disk is full"),
)  # fmt: skip


def check_ready(engine: Engine) -> str:
    """The database answers and has this version's schema; its revision.  Raises
    DatabaseProblem with one line saying what is wrong and what to do."""
    from alembic.script import ScriptDirectory

    try:
        current = current_revision(engine)
    except Exception as exc:
        raise DatabaseProblem(explain(exc)) from exc
    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    if current is None:
        raise DatabaseProblem("the database has no tables yet: run `otrs-mailgate init`")
    if current != head:
        raise DatabaseProblem(
            f"the database's schema is at revision {current}, this version needs {head}: "
            "run `otrs-mailgate init` to upgrade it (data is kept)"
        )
    return current


__all__ = [
    "DatabaseProblem",
    "TemporaryFailure",
    "check_ready",
    "current_revision",
    "defer_insert",
    "deferred",
    "explain",
    "insert_ignore",
    "make_engine",
    "next_counter",
    "sessionmaker_for",
    "transaction",
    "upgrade",
    "upsert_stmt",
]
