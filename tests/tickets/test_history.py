"""History is a hash chain per ticket; `audit verify` finds the first broken link."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from otrs_mailgate.config.schema import load
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
        keys = history.keys_for(pipeline.config, create=False)
        items = list(history.verify(s, keys, batch=2))  # small batches: the paging is exercised
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
    assert proc.stdout.startswith(b"ok: 7 history rows, every chain intact; head ")


# -- issue 19, item 12: a keyed chain, and a head that shows truncation ----------------


@pytest.fixture
def keyed(db_url: str, tmp_path: Path) -> Iterator[tuple[Pipeline, Path]]:
    """A pipeline whose history is keyed by a file outside the database, on either kind."""
    keys = tmp_path / "audit.keys"
    cfg = write_config(tmp_path / "c.toml", db_url)
    domain = 'domain = "mailgate.test"'
    cfg.write_text(cfg.read_text().replace(domain, f'{domain}\naudit_keys = "{keys}"'))
    p = Pipeline(load(cfg))
    yield p, cfg
    p.engine.dispose()


def test_whoever_writes_the_database_cannot_recompute_the_chain(
    keyed: tuple[Pipeline, Path],
) -> None:
    pipeline, cfg = keyed
    _fill(pipeline)
    with pipeline.sessions() as s:
        assert set(s.execute(select(History.key_id)).scalars()) == {"k1"}
        row = s.get(History, 2)
        args = (
            row.prev_hash,
            row.ticket_id,
            row.created_at,
            "mallory@evil.test",
            row.type,
            row.detail,
        )
    plain = history._digest(*args)  # what an attacker without the key can compute
    guessed = history._digest(*args, key=b"\0" * 32)
    for key_id, digest, reason in (
        ("", plain, "unkeyed row after keyed row 1"),
        ("k1", guessed, "hash does not match the row's content"),
    ):
        with db.transaction(pipeline.sessions) as s:
            s.execute(
                update(History)
                .where(History.id == 2)
                .values(actor="mallory@evil.test", hash=digest, key_id=key_id)
            )
        broken, _ = _verify(pipeline)
        assert (2, reason) in [(b.history_id, b.reason) for b in broken], broken
    proc = cli(cfg, "audit", "verify")
    assert proc.returncode == 1 and b"BROKEN" in proc.stdout


def test_deleting_the_newest_rows_shows_against_a_published_head(
    keyed: tuple[Pipeline, Path],
) -> None:
    pipeline, cfg = keyed
    _fill(pipeline)
    published = cli(cfg, "audit", "head")
    assert published.returncode == 0
    head = published.stdout.decode().strip()
    assert cli(cfg, "audit", "verify", "--head", head).returncode == 0
    pipeline.deliver_one(mail("three"), "hotline@example.com")  # later rows are fine
    assert cli(cfg, "audit", "verify", "--head", head).returncode == 0
    with db.transaction(pipeline.sessions) as s:  # the newest row of ticket 1, before the head
        newest = s.execute(select(History.id).where(History.ticket_id == 1)).scalars().all()[-1]
        s.execute(delete(History).where(History.id == newest))
    assert cli(cfg, "audit", "verify").returncode == 0  # the chain alone cannot tell
    proc = cli(cfg, "audit", "verify", "--head", head)
    assert proc.returncode == 1
    assert b"rows up to the published head are missing" in proc.stdout
    bad = cli(cfg, "audit", "verify", "--head", "nonsense")
    assert bad.returncode == 2 and b"not a history head" in bad.stderr


def test_rotate_key_signs_new_rows_and_old_ones_still_verify(
    keyed: tuple[Pipeline, Path],
) -> None:
    pipeline, cfg = keyed
    _fill(pipeline)
    proc = cli(cfg, "audit", "rotate-key")
    assert proc.returncode == 0 and b"audit key k2 added" in proc.stdout
    pipeline.reconfigure(load(cfg))  # what SIGHUP does
    pipeline.deliver_one(mail("after rotation"), "hotline@example.com")
    with pipeline.sessions() as s:
        assert set(s.execute(select(History.key_id)).scalars()) == {"k1", "k2"}
    assert cli(cfg, "audit", "verify").returncode == 0


def _rewrite_unkeyed(pipeline: Pipeline, actor: str = "mallory@evil.test") -> None:
    """What whoever can write the database can do without the key: every row of every
    chain written anew in the old, unkeyed form (plain SHA-256), consistent throughout."""
    with db.transaction(pipeline.sessions) as s:
        rows = s.execute(select(History).order_by(History.id)).scalars().all()
        last: dict[int, str] = {}
        for row in rows:
            prev = last.get(row.ticket_id, history.GENESIS)
            digest = history._digest(
                prev, row.ticket_id, row.created_at, actor, row.type, row.detail
            )
            s.execute(
                update(History)
                .where(History.id == row.id)
                .values(actor=actor, prev_hash=prev, hash=digest, key_id="")
            )
            last[row.ticket_id] = digest


def test_a_history_rewritten_as_if_keyless_is_broken_for_plain_verify(
    keyed: tuple[Pipeline, Path],
) -> None:
    """Issue 25: with every row rewritten unkeyed, the rows cannot show that a key was
    ever used; the key file says from which row on the history is keyed."""
    pipeline, cfg = keyed
    _fill(pipeline)
    keys_file = Path(pipeline.config.system.audit_keys)
    assert " after=0" in keys_file.read_text()  # made with the first key, no rows then
    assert cli(cfg, "audit", "verify").returncode == 0
    _rewrite_unkeyed(pipeline)
    proc = cli(cfg, "audit", "verify")
    assert proc.returncode == 1, proc.stdout
    assert b"unkeyed row, but the key file says rows after 0 are keyed" in proc.stdout


def test_a_key_file_from_before_the_marker_learns_it_from_the_first_keyed_row(
    tmp_path: Path, db_url: str
) -> None:
    """An installation keyed by an older version (no after= in its key file): the first
    start writes it from the first keyed row, older unkeyed rows still verify."""
    cfg = write_config(tmp_path / "c.toml", db_url)
    domain = 'domain = "mailgate.test"'
    cfg.write_text(cfg.read_text().replace(domain, f'{domain}\naudit_keys = ""'))
    plain = Pipeline(load(cfg))  # on SQLite too: no keys, unkeyed rows first
    plain.sessions.configure(info={history.INFO: history.AuditKeys({})})
    _fill(plain)
    plain.engine.dispose()
    keys = tmp_path / "older.keys"
    history.add_key(keys)  # as the older version made it
    assert "after=" not in keys.read_text()
    cfg.write_text(cfg.read_text().replace('audit_keys = ""', f'audit_keys = "{keys}"'))
    with db.transaction(plain.sessions) as s:
        unkeyed = s.execute(select(History.id).order_by(History.id.desc())).scalars().first()
    pipeline = Pipeline(load(cfg))
    _fill(pipeline)  # keyed rows now; the marker is what the last unkeyed row was
    pipeline.engine.dispose()
    pipeline = Pipeline(load(cfg))
    assert f" after={unkeyed}" in keys.read_text()
    assert _verify(pipeline)[0] == []
    _rewrite_unkeyed(pipeline)
    assert any("the key file says rows after" in b.reason for b in _verify(pipeline)[0])
    pipeline.engine.dispose()
