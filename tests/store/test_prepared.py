"""db.Prepared (issue 21): hot statements on the driver's cursor give what SQLAlchemy
gives, take the fast path, and fail with SQLAlchemy's own exceptions."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from otrs_mailgate.ingest import match
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.outbound import outbox
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Article, Customer, Queue, Ticket
from otrs_mailgate.tickets import articles, state

from helpers import mail

HOT = "hotline@example.com"


def test_the_hot_statements_run_on_the_cursor(pipeline: Pipeline) -> None:
    dialect = pipeline.engine.dialect
    article_keys = frozenset(_article_row(1, 1))
    assert articles._INS_ARTICLE_FAST.fast(dialect, article_keys)
    assert match._SEL_DELIVERY.fast(dialect, frozenset({"k", "r"}))
    assert db.prepared(outbox._COUNT_RESPONSES).fast(dialect, frozenset({"to", "since", "n"}))
    ticket_keys = frozenset(
        {"number", "title", "queue_id", "customer_id", "state", "priority", "language"}
        | {"created_at", "updated_at"}
    )
    assert db.prepared(state._INS).fast(dialect, ticket_keys)
    # a statement with an expanding IN is left to SQLAlchemy, and still answers
    stmt = db.Prepared(select(Queue.id).where(Queue.name.in_(["x"])))
    assert not stmt.fast(dialect, frozenset())


def _article_row(ticket_id: int, raw_id: int) -> dict:
    return {
        "ticket_id": ticket_id, "raw_id": raw_id, "direction": "in", "sender_type": "customer",
        "internal": False, "agent_id": None, "message_id": "m@x", "from_addr": "a@b.test",
        "from_name": "A", "to_addrs": "", "cc_addrs": "", "subject": "s", "body_text": "b",
        "body_html": "", "content_language": "", "envelope_sender": "", "envelope_recipient": "",
        "unparsed": False, "problem": "", "protection": "",
        "created_at": dt.datetime(2026, 12, 4, 8, tzinfo=dt.UTC),
    }  # fmt: skip


def test_same_rows_as_sqlalchemy_and_its_exceptions(pipeline: Pipeline) -> None:
    r = pipeline.deliver_one(mail("One", sender="c@customer.test"), HOT)
    with db.transaction(pipeline.sessions) as s:
        conn = s.connection()
        row = _article_row(1, 1)
        new_id = articles._INS_ARTICLE_FAST.scalar(conn, row)
        assert new_id == r.article_id + 1
    with pipeline.sessions() as s:
        stored = s.get(Article, new_id)
        assert stored.created_at == dt.datetime(2026, 12, 4, 8, tzinfo=dt.UTC)  # bind processing
        assert stored.internal is False and stored.subject == "s"
        number = s.execute(select(Ticket.number)).scalar()
    ticket_row = {
        "number": number, "title": "dup", "queue_id": 1, "customer_id": None, "state": "new",
        "priority": 3, "language": "en", "created_at": dt.datetime.now(dt.UTC),
        "updated_at": dt.datetime.now(dt.UTC),
    }  # fmt: skip
    with pytest.raises(IntegrityError), db.transaction(pipeline.sessions) as s:
        db.prepared(state._INS).scalar(s.connection(), ticket_row)  # the number exists
    with pipeline.sessions() as s:
        assert s.execute(select(Ticket.title)).scalars().all() == ["One"]  # nothing written
        assert s.execute(select(Customer.address)).scalars().all() == ["c@customer.test"]


def test_a_batch_asks_for_deliveries_and_loop_counts_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: the delivery check and the loop limit's count are one IN lookup a batch;
    a retry of a stored mail is still known, and the loop limit still holds."""
    from otrs_mailgate.ingest.outcome import Item
    from otrs_mailgate.store.models import Outbox

    first = [mail(f"m{i}", sender="same@customer.test", message_id=f"b{i}@x") for i in range(6)]
    pipeline.deliver_batch([Item(raw, [HOT]) for raw in first])
    asked: list[str] = []
    monkeypatch.setattr(match._SEL_DELIVERY, "first", lambda *a: asked.append("d"))
    count = db.prepared(outbox._COUNT_RESPONSES)
    monkeypatch.setattr(count, "scalar", lambda *a: asked.append("c") or 0)
    again = first[:2] + [
        mail(f"n{i}", sender="same@customer.test", message_id=f"c{i}@x") for i in range(8)
    ]
    results = pipeline.deliver_batch([Item(raw, [HOT]) for raw in again])
    assert asked == [], "the batch asked a mail at a time"
    assert [r[0].status for r in results[:2]] == ["duplicate", "duplicate"]
    with pipeline.sessions() as s:
        acks = s.execute(select(Outbox).where(Outbox.kind == "acknowledgement")).scalars().all()
    assert len(acks) == pipeline.config.system.auto_response_limit == 10  # 6 + 4, not 14
