"""schema.sql and the migrations both match the models; `init` is safe to run again."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from otrs_mailgate.store.models import Base
from otrs_mailgate.store.schema import schema_sql
from otrs_mailgate.store.search import is_index

from cli_helpers import ROOT, cli, write_config


def test_schema_sql_is_current() -> None:
    kept = (ROOT / "schema.sql").read_text()
    assert kept == schema_sql(), "schema.sql is stale: run `make schema` and commit it"


def test_migrations_match_the_models(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        opts = {
            "compare_type": True,
            "include_name": lambda name, kind, _parent: not (kind == "table" and is_index(name)),
        }
        ctx = MigrationContext.configure(conn, opts=opts)
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == [], "models changed without a migration: add one under migrations/versions"


def test_init_creates_then_reports_up_to_date(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/new/db.sqlite")
    first = cli(cfg, "init")
    assert first.returncode == 0, first.stderr
    assert b"upgraded from empty to revision" in first.stdout
    second = cli(cfg, "init")
    assert second.returncode == 0 and b"is up to date" in second.stdout


def test_commands_before_init_say_so(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/empty.sqlite")
    proc = cli(cfg, "ticket", "list")
    assert proc.returncode == 1
    assert b"run `otrs-mailgate init` to make it" in proc.stderr  # and none was made
    assert b"Traceback" not in proc.stderr
    assert not (tmp_path / "empty.sqlite").exists()


def test_upgrade_from_0001_keeps_queued_mail(tmp_path: Path) -> None:
    """0002 makes outbox.data optional and adds spec: a row queued before stays sendable."""
    from sqlalchemy import text

    from otrs_mailgate.store import db

    engine = db.make_engine(f"sqlite:///{tmp_path}/old.sqlite")
    db.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO outbox (kind, mail_from, rcpt_to, message_id, data, status, "
                "attempts, next_attempt_at, last_error, created_at) VALUES ('acknowledgement', "
                "'a@x.test', 'b@y.test', 'm1@x.test', :d, 'queued', 0, '2026-01-01', '', "
                "'2026-01-01')"
            ),
            {"d": b"Subject: old\r\n\r\nbody\r\n"},
        )
    db.upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT data, spec, status FROM outbox")).one()
    engine.dispose()
    assert row == (b"Subject: old\r\n\r\nbody\r\n", None, "queued")
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(db._alembic_config(engine)).get_current_head()
    assert db.current_revision(db.make_engine(f"sqlite:///{tmp_path}/old.sqlite")) == head
