"""The SQLite writer gate: the threads of one process take the write lock in turn."""

from __future__ import annotations

import threading
import time

from otrs_mailgate.store import db
from otrs_mailgate.store.db import WriterGate


def _queued(gate: WriterGate, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(gate._queue) < n:
        assert time.monotonic() < deadline, "the other thread never queued"
        time.sleep(0.001)


def test_a_waiting_thread_goes_before_the_one_that_comes_back() -> None:
    """What starved the outbox sender: the committer released and took the lock again
    before a waiting thread woke.  Now the waiter is handed the lock at the release."""
    gate = WriterGate(timeout=10)
    order: list[str] = []
    gate.acquire()  # the committer's batch
    waiter = threading.Thread(
        target=lambda: (gate.acquire(), order.append("sender"), gate.release())
    )
    waiter.start()
    _queued(gate, 1)
    gate.release()
    gate.acquire()  # the committer's next batch, at once
    order.append("committer")
    gate.release()
    waiter.join(10)
    assert order == ["sender", "committer"]


def test_waiting_too_long_is_a_temporary_failure_and_leaves_the_queue() -> None:
    gate = WriterGate(timeout=0.2)
    gate.acquire()
    errors: list[BaseException] = []

    def late() -> None:
        try:
            gate.acquire()
        except db.TemporaryFailure as exc:
            errors.append(exc)

    thread = threading.Thread(target=late)
    thread.start()
    thread.join(10)
    assert [str(e) for e in errors] == ["database is locked (by this process's other writers)"]
    assert not gate._queue
    gate.release()
    gate.acquire()  # free again for the next one
    gate.release()


def test_reentrant_within_one_thread() -> None:
    gate = WriterGate(timeout=0.2)
    gate.acquire()
    gate.acquire()  # a transaction inside a transaction does not wait on itself
    gate.release()
    outcome: list[str] = []

    def other() -> None:
        try:
            gate.acquire()
            outcome.append("got it")
        except db.TemporaryFailure:
            outcome.append("still held")

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(10)
    assert outcome == ["still held"]  # one release of two: the thread still holds it
    gate.release()
    assert gate._owner is None


def test_sqlite_transactions_take_the_gate(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    sessions = db.sessionmaker_for(engine)
    gate = db._GATES[engine]
    with db.transaction(sessions):
        assert gate._owner == threading.get_ident()
    assert gate._owner is None
    engine.dispose()
