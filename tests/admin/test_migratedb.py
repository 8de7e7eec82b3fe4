"""`otrs-mailgate migrate-db`: everything moves, chains and links still hold, ids go on."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from otrs_mailgate.config.schema import load
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Article, Base, Ticket
from otrs_mailgate.tickets import faq

from cli_helpers import cli, write_config
from helpers import mail, outbox_mails
from web_helpers import link_in

HOT = "hotline@example.com"


def counts(url: str) -> dict[str, int]:
    engine = db.make_engine(url)
    with engine.connect() as conn:
        out = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }
    engine.dispose()
    return out


def filled(tmp_path: Path, corpus: Path) -> tuple[Path, Pipeline]:
    cfg = write_config(tmp_path / "old.toml", f"sqlite:///{tmp_path}/old.sqlite")
    assert cli(cfg, "init").returncode == 0
    p = Pipeline(load(cfg))
    for path in sorted((corpus / "otrs").iterdir())[:12]:
        p.deliver_one(path.read_bytes(), HOT)
    p.deliver_one(mail("Kaputter Drucker", "Der Toner ist leer."), HOT)
    with db.transaction(p.sessions) as s:
        faq.add(s, "Replacing the toner", "Open the front cover and pull.", "en", "")
    return cfg, p


def test_sqlite_to_postgresql(tmp_path: Path, corpus: Path, pg_url: str) -> None:
    cfg, p = filled(tmp_path, corpus)
    before = counts(p.config.database.url)
    [ack] = [m for m in outbox_mails(p) if "Kaputter Drucker" in str(m["Subject"])]
    link = link_in(ack)
    p.engine.dispose()

    moved = cli(cfg, "migrate-db", "--to", pg_url)
    assert moved.returncode == 0, moved.stderr
    assert f"copied {sum(before.values())} rows to".encode() in moved.stdout
    assert counts(pg_url) == before

    new_cfg = write_config(tmp_path / "new.toml", pg_url)
    assert cli(new_cfg, "audit", "verify").returncode == 0  # every hash chain intact
    found = json.loads(cli(new_cfg, "search", "--json", "toner").stdout)
    assert [t["title"] for t in found["tickets"]] == ["Kaputter Drucker"]
    # new mail gets new ids, and the customer's old link still opens the ticket
    after = Pipeline(load(new_cfg))
    r = after.deliver_one(mail("After the move", "hello"), HOT)
    with after.sessions() as s:
        assert s.execute(select(func.max(Article.id))).scalar_one() == r.article_id
        assert r.article_id == before["article"] + 1
    from otrs_mailgate.tickets import links

    with after.engine.connect() as conn:
        ticket_id = links.customer_ticket(link.rsplit("/", 1)[1], links.site_secret(conn))
        title = conn.execute(select(Ticket.title).where(Ticket.id == ticket_id)).scalar_one()
    assert title == "Kaputter Drucker"
    with after.engine.connect() as conn:
        assert [e.title for e in faq.suggest(conn, "Hotline", "en", "toner", "front cover")] == [
            "Replacing the toner"
        ]
    after.engine.dispose()


def test_refuses_a_target_with_tickets_and_writes_nothing(
    tmp_path: Path, corpus: Path, db_url: str
) -> None:
    cfg, p = filled(tmp_path, corpus)
    p.engine.dispose()
    busy = Pipeline(load(write_config(tmp_path / "busy.toml", db_url)))
    busy.deliver_one(mail("Already here"), HOT)
    busy.engine.dispose()
    before_target, before_source = counts(db_url), counts(f"sqlite:///{tmp_path}/old.sqlite")

    refused = cli(cfg, "migrate-db", "--to", db_url)
    assert refused.returncode == 1
    assert b"migrate-db: the target database already holds tickets" in refused.stderr
    same = cli(cfg, "migrate-db", "--to", f"sqlite:///{tmp_path}/old.sqlite")
    assert same.returncode == 1 and b"the configured database itself" in same.stderr
    unreachable = cli(cfg, "migrate-db", "--to", "postgresql://nobody@127.0.0.1:1/none")
    assert unreachable.returncode == 1 and b"(nothing was written)" in unreachable.stderr
    assert b"Traceback" not in refused.stderr + same.stderr + unreachable.stderr
    assert counts(db_url) == before_target
    assert counts(f"sqlite:///{tmp_path}/old.sqlite") == before_source


def test_backup_of_a_live_sqlite_database(tmp_path: Path, corpus: Path) -> None:
    cfg, p = filled(tmp_path, corpus)
    copy = tmp_path / "backup.sqlite"
    made = cli(cfg, "backup", str(copy))
    assert made.returncode == 0, made.stderr
    assert counts(f"sqlite:///{copy}") == counts(p.config.database.url)
    again = cli(cfg, "backup", str(copy))  # never over an existing file
    assert again.returncode == 1 and b"exists; give a new file" in again.stderr
    restored = write_config(tmp_path / "restored.toml", f"sqlite:///{copy}")
    assert cli(restored, "audit", "verify").returncode == 0
    found = json.loads(cli(restored, "search", "--json", "toner").stdout)
    assert [t["title"] for t in found["tickets"]] == ["Kaputter Drucker"]  # FTS5 came along
    p.engine.dispose()
