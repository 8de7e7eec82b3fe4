"""History is a hash chain per ticket; `audit verify` finds the first broken link."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import History
from otrs_mailgate.tickets import history

from cli_helpers import cli, write_config
from helpers import mail


def _fill(pipeline: Pipeline) -> str:
    n = pipeline.deliver_one(mail("one"), "hotline@example.com").ticket_number
    pipeline.deliver_one(mail(f"Re: [Ticket#{n}] one"), "hotline@example.com")
    pipeline.deliver_one(mail("two"), "hotline@example.com")
    return n


def _verify(pipeline: Pipeline) -> tuple[list[history.Broken], int]:
    with pipeline.sessions() as s:
        items = list(history.verify(s, batch=2))  # small batches: the paging is exercised
    return [i for i in items if isinstance(i, history.Broken)], items[-1]


def test_chain_is_intact_and_linked(pipeline: Pipeline) -> None:
    _fill(pipeline)
    broken, checked = _verify(pipeline)
    assert broken == [] and checked == 7
    with pipeline.sessions() as s:
        rows = (
            s.execute(select(History).where(History.ticket_id == 1).order_by(History.id))
            .scalars()
            .all()
        )
    assert rows[0].prev_hash == history.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))


def test_altered_row_is_found(pipeline: Pipeline, tmp_path: Path, db_url: str) -> None:
    _fill(pipeline)
    with db.transaction(pipeline.sessions) as s:
        s.execute(update(History).where(History.id == 2).values(actor="mallory@evil.test"))
    broken, _ = _verify(pipeline)
    assert [(b.history_id, b.reason) for b in broken] == [
        (2, "hash does not match the row's content")
    ]
    cfg = write_config(tmp_path / "c.toml", db_url)
    proc = cli(cfg, "audit", "verify")
    assert proc.returncode == 1
    assert b"BROKEN ticket id 1, history row 2: hash does not match" in proc.stdout


def test_deleted_row_is_found(pipeline: Pipeline) -> None:
    _fill(pipeline)
    with db.transaction(pipeline.sessions) as s:
        s.execute(delete(History).where(History.id == 2))
    broken, _ = _verify(pipeline)
    assert [(b.history_id, b.reason) for b in broken] == [
        (3, "prev_hash does not match the row before it")
    ]


def test_forked_chain_is_refused_by_the_database(pipeline: Pipeline) -> None:
    _fill(pipeline)
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), db.transaction(pipeline.sessions) as s:
        first = s.get(History, 1)
        s.add(
            History(
                ticket_id=1,
                actor="x",
                type="Fork",
                detail="{}",
                prev_hash=first.prev_hash,
                hash="0" * 64,
            )
        )


def test_cli_ok(pipeline: Pipeline, tmp_path: Path, db_url: str) -> None:
    _fill(pipeline)
    proc = cli(write_config(tmp_path / "c.toml", db_url), "audit", "verify")
    assert proc.returncode == 0
    assert proc.stdout.strip() == b"ok: 7 history rows, every chain intact"
