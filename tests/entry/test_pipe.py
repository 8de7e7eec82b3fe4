"""The pipe entry: exit codes Postfix understands, and nothing half-written on failure."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from otrs_mailgate.store.models import Article, Delivery, History, Outbox, RawMessage, Ticket

from cli_helpers import ROOT, cli, cli_json, write_config
from helpers import mail

TABLES = (Ticket, Article, RawMessage, Delivery, History, Outbox)


def counts(db_url: str) -> dict[str, int]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        out = {
            m.__tablename__: conn.execute(select(func.count()).select_from(m)).scalar_one()
            for m in TABLES
        }
    engine.dispose()
    return out


@pytest.fixture
def cfg(tmp_path: Path, db_url: str) -> Path:
    return write_config(tmp_path / "otrs-mailgate.toml", db_url)


def test_stored_then_retry_is_ok(cfg: Path, db_url: str) -> None:
    raw = mail("Printer")
    first = cli(cfg, "deliver", "--recipient", "hotline@example.com", stdin=raw)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(b"stored: ticket ")
    again = cli(cfg, "deliver", "--recipient", "hotline@example.com", stdin=raw)
    assert again.returncode == 0 and again.stdout.startswith(b"duplicate: ticket ")
    assert counts(db_url)["article"] == 1


def test_unknown_recipient_is_67_and_stores_nothing(cfg: Path, db_url: str) -> None:
    proc = cli(cfg, "deliver", "--recipient", "nobody@example.com", stdin=mail("x"))
    assert proc.returncode == 67
    assert proc.stderr.strip() == b"unknown recipient: nobody@example.com"
    assert set(counts(db_url).values()) == {0}


@pytest.mark.parametrize("raw", [b"", b"\x00\x01binary junk", b"hello, this is no mail\n"])
def test_not_a_mail_is_65(cfg: Path, db_url: str, raw: bytes) -> None:
    proc = cli(cfg, "deliver", "--recipient", "hotline@example.com", stdin=raw)
    assert proc.returncode == 65
    assert proc.stderr.startswith(b"not a mail message:")
    assert set(counts(db_url).values()) == {0}


def test_locked_sqlite_is_75_and_the_retry_stores_it(tmp_path: Path, sqlite_url: str) -> None:
    db_url = sqlite_url
    cfg = write_config(tmp_path / "otrs-mailgate.toml", db_url)
    path = db_url.split(":///", 1)[1]
    cli(cfg, "deliver", "--recipient", "hotline@example.com", stdin=mail("first"))
    before = counts(db_url)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        raw = mail("while locked")
        proc = cli(cfg, "deliver", "--recipient", "hotline@example.com", stdin=raw)
        assert proc.returncode == 75, proc.stderr
        assert b"database unavailable, try again later" in proc.stderr
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert counts(db_url) == before  # nothing half-written
    retry = cli(cfg, "deliver", "--recipient", "hotline@example.com", stdin=raw)
    assert retry.returncode == 0 and counts(db_url)["article"] == before["article"] + 1


def test_database_down_is_75(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", "postgresql://nobody@127.0.0.1:1/none")
    proc = cli(cfg, "deliver", "--recipient", "hotline@example.com", stdin=mail("x"))
    assert proc.returncode == 75
    assert proc.stderr.startswith(b"database unavailable, try again later")


def test_broken_config_is_75_for_postfix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[system]\nnope = 1\n")
    proc = cli(bad, "deliver", "--recipient", "hotline@example.com", stdin=mail("x"))
    assert proc.returncode == 75
    assert b"config error" in proc.stderr and b"system.nope: unknown key" in proc.stderr


def test_bin_wrapper_as_postfix_calls_it(cfg: Path, db_url: str) -> None:
    env = dict(os.environ, OTRS_MAILGATE_CONFIG=str(cfg), OTRS_MAILGATE_PYTHON=sys.executable)
    wrapper = str(ROOT / "bin" / "otrs-mailgate-pipe")
    ok = subprocess.run(
        [wrapper, "hotline@example.com", "alice@customer.test"],
        input=mail("via wrapper"),
        capture_output=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    nouser = subprocess.run(
        [wrapper, "x@example.com", ""], input=mail("x"), capture_output=True, env=env
    )
    assert nouser.returncode == 67
    [t] = cli_json(cfg, "ticket", "list")
    assert t["title"] == "via wrapper" and t["articles"] == 1
    show = cli_json(cfg, "ticket", "show", t["number"])
    assert show["articles"][0]["subject"] == "via wrapper"
    assert [h["type"] for h in show["history"]] == [
        "NewTicket",
        "EmailCustomer",
        "AutoResponseQueued",
    ]
    assert show["outbox"][0]["kind"] == "acknowledgement"


def test_forwards_to_the_running_daemon_without_sqlalchemy(tmp_path: Path, db_url: str) -> None:
    from helpers import make_config
    from lmtp_helpers import running

    with running(make_config(db_url)) as daemon:
        cfg = write_config(tmp_path / "c.toml", db_url, lmtp_port=daemon.config.lmtp.port)
        env = dict(os.environ, OTRS_MAILGATE_CONFIG=str(cfg))
        probe = (
            "import sys; from otrs_mailgate.entry import pipe; code = pipe.main(sys.argv[1:]); "
            "print(code, 'sqlalchemy' in sys.modules, 'pydantic' in sys.modules)"
        )
        ok = subprocess.run(
            [sys.executable, "-c", probe, "hotline@example.com", "a@b.test"],
            input=mail("via daemon"),
            capture_output=True,
            env=env,
        )
        assert ok.stdout.decode().split()[-3:] == ["0", "False", "False"], ok
        assert b"forwarded: 250 2.0.0" in ok.stdout
        assert daemon.committer.committed == 1
        nouser = subprocess.run(
            [sys.executable, "-m", "otrs_mailgate.entry.pipe", "x@example.com"],
            input=mail("x"),
            capture_output=True,
            env=env,
        )
        assert nouser.returncode == 67 and b"5.1.1" in nouser.stderr
        junk = subprocess.run(
            [sys.executable, "-m", "otrs_mailgate.entry.pipe", "hotline@example.com"],
            input=b"\x00 junk",
            capture_output=True,
            env=env,
        )
        assert junk.returncode == 65
    assert counts(db_url)["article"] == 1
