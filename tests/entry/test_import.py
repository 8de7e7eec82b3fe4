"""`import`: mbox, Maildir, folders of .eml; a summary; resumable without duplicates."""

from __future__ import annotations

import json
import mailbox
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from otrs_mailgate.entry import importer
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store.models import Article, Ticket

from cli_helpers import cli, cli_json, write_config
from helpers import count, mail


@pytest.fixture
def cfg(tmp_path: Path, db_url: str) -> Path:
    return write_config(tmp_path / "otrs-mailgate.toml", db_url)


def _mbox(path: Path, n: int) -> Path:
    box = mailbox.mbox(str(path))
    for i in range(n):
        box.add(mail(f"mbox {i}", f"body {i}\nFrom the start of a line\n"))
    box.flush()
    box.close()
    return path


def test_mbox_then_resume_after_interruption(cfg: Path, tmp_path: Path) -> None:
    path = _mbox(tmp_path / "in.mbox", 6)
    # an interrupted first run: only the first three messages were committed
    part = _mbox(tmp_path / "part.mbox", 0)
    src, dst = mailbox.mbox(str(path)), mailbox.mbox(str(part))
    for key in list(src.keys())[:3]:
        dst.add(src.get_bytes(key))
    dst.flush()
    first = cli_json(cfg, "import", str(part))
    assert (first["imported"], first["duplicates"], first["failed"]) == (3, 0, [])
    again = cli_json(cfg, "import", str(path))
    assert (again["imported"], again["duplicates"], again["failed"]) == (3, 3, [])
    tickets = cli_json(cfg, "ticket", "list", "--limit", "100")
    assert sorted(t["title"] for t in tickets) == [f"mbox {i}" for i in range(6)]
    assert all(t["articles"] == 1 for t in tickets)
    shown = cli_json(cfg, "ticket", "show", tickets[0]["number"])
    assert shown["outbox"] == []  # history imports send no acknowledgements by default
    # mbox quotes body lines starting with "From "; the quote is kept, as mail clients show it
    assert "From the start of a line" in shown["articles"][0]["body"]


def test_maildir_with_queue_option(cfg: Path, tmp_path: Path) -> None:
    md = mailbox.Maildir(str(tmp_path / "md"), create=True)
    for i in range(3):
        md.add(mail(f"md {i}", to="someone@elsewhere.test"))
    proc = cli(cfg, "import", str(tmp_path / "md"), "--queue", "Support-DE")
    assert proc.returncode == 0, proc.stderr
    assert b"imported: 3 (3 new tickets)" in proc.stdout
    assert {t["queue"] for t in cli_json(cfg, "ticket", "list")} == {"Support-DE"}


def test_folder_with_failures_reports_reasons(cfg: Path, tmp_path: Path) -> None:
    folder = tmp_path / "eml"
    folder.mkdir()
    (folder / "a.eml").write_bytes(mail("good"))
    (folder / "b.eml").write_bytes(b"\x00\x01 not a mail")
    (folder / "c.eml").write_bytes(mail("wrong queue", to="else@where.test"))
    proc = cli(cfg, "import", str(folder), "--json")
    assert proc.returncode == 1  # some failed: the admin must look
    summary = json.loads(proc.stdout)
    assert summary["imported"] == 1 and summary["duplicates"] == 0
    reasons = {Path(f["message"]).name: f["reason"] for f in summary["failed"]}
    assert reasons["b.eml"].startswith("not a mail")
    assert "no queue for recipient else@where.test; use --queue" in reasons["c.eml"]
    assert [t["title"] for t in cli_json(cfg, "ticket", "list")] == ["good"]


def test_corpus_folder_imports(cfg: Path, tmp_path: Path, corpus: Path) -> None:
    folder = tmp_path / "corpus"
    shutil.copytree(corpus, folder)
    summary = cli_json(cfg, "import", str(folder), "--queue", "Hotline", "--ack")
    assert summary["failed"] == []
    files = [p for p in folder.rglob("*") if p.suffix in (".box", ".eml")]
    assert summary["imported"] + summary["duplicates"] == len(files)


def test_database_outage_stops_the_import_resumably(pipeline: Pipeline, tmp_path: Path) -> None:
    from otrs_mailgate.store.db import TemporaryFailure

    calls = {"n": 0}
    real = pipeline.deliver_batch

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second batch: m2 and m3
            raise TemporaryFailure("database is locked")
        return real(*args, **kwargs)

    pipeline.deliver_batch = flaky  # type: ignore[method-assign]
    items = [(f"m{i}", mail(f"m{i}")) for i in range(5)]
    summary = importer.run(pipeline, iter(items), batch=2)
    assert summary.imported == 2 and "run the import again to resume" in summary.stopped
    assert "at m2:" in summary.stopped  # names where to look
    assert count(pipeline, Article) == 2  # the failed batch left nothing behind
    pipeline.deliver_batch = real  # type: ignore[method-assign]
    rest = importer.run(pipeline, iter(items), batch=2)
    assert (rest.imported, rest.duplicates) == (3, 2)
    assert count(pipeline, Article) == 5


SLA = """
[[sla]]
name = "std"
queues = ["Hotline"]
first_response = 60
solution = 600
"""


def _old_mbox(path: Path) -> Path:
    """Two mails from an archive: one dated by its Date, one only by its Received line."""
    box = mailbox.mbox(str(path))
    dated = mail("Archived question")
    box.add(dated.replace(b"Sun, 22 Nov 2026 10:00:00 +0100", b"Sat, 01 Mar 2025 09:30:00 +0100"))
    undated = mail("Received only").replace(b"Date: ", b"X-Old-Date: ")
    box.add(
        b"Received: from mx.customer.test by mx.example.com; Mon, 3 Mar 2025 10:00:00 +0000\n"
        + undated
    )
    box.flush()
    box.close()
    return path


def test_imported_mail_keeps_its_own_dates_and_starts_no_clock(tmp_path: Path, db_url: str) -> None:
    """An archive's mail is dated by itself: the article and its new ticket carry the
    mail's date, stats count it in its own month, and no SLA clock or acknowledgement
    starts for mail that is months old; the history says it was imported."""
    cfg = write_config(tmp_path / "otrs-mailgate.toml", db_url, extra=SLA)
    done = cli_json(cfg, "import", str(_old_mbox(tmp_path / "old.mbox")))
    assert (done["imported"], done["failed"]) == (2, [])
    tickets = {t["title"]: t for t in cli_json(cfg, "ticket", "list")}
    first = cli_json(cfg, "ticket", "show", tickets["Archived question"]["number"])
    assert first["created_at"].startswith("2025-03-01T08:30:00")
    assert first["articles"][0]["created_at"].startswith("2025-03-01T08:30:00")
    assert first["outbox"] == []
    [imported] = [h for h in first["history"] if h["type"] == "Imported"]
    assert imported["detail"]["by"] == "Date"
    second = cli_json(cfg, "ticket", "show", tickets["Received only"]["number"])
    assert second["created_at"].startswith("2025-03-03T10:00:00")
    engine = create_engine(db_url)
    with engine.connect() as conn:
        due = conn.execute(select(Ticket.solution_due, Ticket.escalation_at)).all()
    engine.dispose()
    assert due == [(None, None), (None, None)]  # no clock: nothing escalates
    stats = cli_json(cfg, "stats", "--from", "2025-03-01", "--to", "2025-03-31")
    assert sum(p["created"] for p in stats["periods"]) == 2


def test_import_with_sla_starts_the_clocks(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path / "otrs-mailgate.toml", db_url, extra=SLA)
    done = cli_json(cfg, "import", "--sla", str(_old_mbox(tmp_path / "old.mbox")))
    assert done["imported"] == 2
    engine = create_engine(db_url)
    with engine.connect() as conn:
        due = conn.execute(select(Ticket.solution_due)).scalars().all()
    engine.dispose()
    assert len(due) == 2 and all(d is not None for d in due)


def test_a_failure_that_may_pass_next_time_is_75_like_the_pipe(
    tmp_path: Path, db_url: str, monkeypatch
) -> None:
    """The pipe's rule for import: a final refusal (not a mail, no queue) is listed and
    exit 1; a failure that another run may get past (a bug that was fixed, a conflict)
    makes the run 75, so a cron job tries again. Nothing of the failed mail is stored."""
    import otrs_mailgate.ingest.pipeline as ingest_mod

    from helpers import make_config

    real = ingest_mod.run

    def run(trip):
        if getattr(trip.parsed, "subject", "") == "boom":
            raise RuntimeError("a bug")
        return real(trip)

    monkeypatch.setattr(ingest_mod, "run", run)
    items = [("a", mail("fine")), ("b", mail("boom")), ("c", b"\x00 junk")]
    pipeline = Pipeline(make_config(db_url), acknowledge=False)
    summary = importer.run(pipeline, iter(items))
    assert (summary.imported, summary.temporary, len(summary.failed)) == (1, 1, 2)
    assert summary.exit_code == 75
    assert count(pipeline, Article) == 1
    final = importer.run(pipeline, iter([("c", b"\x00 junk")]))
    assert (final.temporary, final.exit_code) == (0, 1)
