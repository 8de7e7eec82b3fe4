"""The database goes away under load through Postfix: the daemon answers 451, Postfix
keeps the mail, and once the database is back every mail is stored exactly once and
the outbox sends what waited (issue 9, part 2)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select

from otrs_mailgate.config.schema import load
from otrs_mailgate.store import db
from otrs_mailgate.store.models import Article, Outbox

from helpers import IN_CI, need
from lmtp_helpers import free_port, start
from postfix_helpers import instance, require_postfix, wait_for

HOT = "hotline@example.com"
CLUSTER = os.environ.get("OTRS_MAILGATE_TEST_PG_CLUSTER", "15 main").split()
OUTAGE = float(os.environ.get("OTRS_MAILGATE_TEST_OUTAGE_SECONDS", "60"))


def _pg_ctl(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *CLUSTER, action, *(
            ["-m", "fast"] if action == "stop" else [])],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def _rows(url: str) -> tuple[list[str], dict[str, int]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ids = list(conn.execute(select(Article.message_id)).scalars())
            status = dict(
                conn.execute(select(Outbox.status, func.count()).group_by(Outbox.status)).all()
            )
    finally:
        engine.dispose()
    return ids, status


def test_postgresql_stops_for_a_minute_under_load(tmp_path: Path, pg_url: str) -> None:
    require_postfix()
    need(shutil.which("pg_ctlcluster") is not None, "pg_ctlcluster (Debian's postgresql-common)")
    if not IN_CI:
        why = "stops the local PostgreSQL for a minute: set OTRS_MAILGATE_TEST_OUTAGES=1"
        need(os.environ.get("OTRS_MAILGATE_TEST_OUTAGES") == "1", why)
    total = 600
    lmtp_port = free_port()
    cfg = tmp_path / "otrs-mailgate.toml"
    text = f"""
[system]
domain = "mailgate.test"
auto_response_limit = 100000  # one sender sends all: acknowledge every mail anyway
[database]
url = "{pg_url}"
[lmtp]
port = {lmtp_port}
[milter]
enabled = false
[web]
port = {free_port()}
[smtp]
port = PORT
backoff_seconds = 2
[[queue]]
name = "Hotline"
addresses = ["{HOT}"]
acknowledge = "always"
"""
    cfg.write_text(text.replace("PORT", "25"))
    with instance(load(cfg), ["load@customer.test"]) as pf:
        cfg.write_text(text.replace("PORT", str(pf.port)))
        daemon = start(cfg, lmtp_port)
        source = subprocess.Popen(
            ["smtp-source", "-s", "5", "-m", str(total), "-l", "1024", "-f",
             "load@customer.test", "-t", HOT, f"127.0.0.1:{pf.port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        stopped = False
        try:
            wait_for(lambda: len(_rows(pg_url)[0]) > 100, 120, "mail stored before the outage")
            _pg_ctl("stop")
            stopped = True
            time.sleep(OUTAGE)
            deferred = pf.log().count("status=deferred")
            _pg_ctl("start")
            stopped = False
            assert source.wait(300) == 0, source.stdout.read()  # type: ignore[union-attr]
            pf.wait_queue_empty(300)
            # every row sent: none queued, none claimed (a claim or outcome the outage
            # cut off is given back or written once the database answers)
            wait_for(lambda: set(_rows(pg_url)[1]) <= {"sent"}, 120, "the outbox")
        finally:
            if stopped:
                _pg_ctl("start")
            source.kill()
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
        log = pf.log()
        acks = len(list(pf.maildir("load").glob("*")))
    accepted = set(re.findall(r"cleanup\[\d+\]: \w+: message-id=<([^>]+)>", log))
    ids, status = _rows(pg_url)
    smtp_source_ids = {i for i in accepted if not i.endswith("@mailgate.test")}  # not acks
    assert deferred > 0, "the outage never made Postfix defer anything"
    assert "451 4.3.0" in log, "the daemon did not answer 451 while the database was down"
    assert len(ids) == len(set(ids)), "a message was stored twice"
    assert len(smtp_source_ids) == total, "Postfix did not accept every mail smtp-source sent"
    assert set(ids) == smtp_source_ids, "a message Postfix accepted was not stored"
    assert status == {"sent": total}, status  # one acknowledgement each, sent once
    assert acks == total
    assert "status=bounced" not in log


def _chattr(flag: str, paths: list[Path]) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


def test_sqlite_read_only_for_a_while_under_load(tmp_path: Path) -> None:
    """The database file and its WAL made immutable (root cannot write them either) for
    20 s while smtp-source sends through Postfix: 451s, then every mail stored once."""
    require_postfix()
    need(shutil.which("chattr") is not None, "chattr (e2fsprogs)")
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    made = subprocess.run(["chattr", "+i", str(probe)], capture_output=True)
    need(made.returncode == 0, f"this filesystem has no immutable flag: {made.stderr!r}")
    _chattr("-i", [probe])
    total = 400
    lmtp_port = free_port()
    url = f"sqlite:///{tmp_path}/mailgate.sqlite"
    cfg = tmp_path / "otrs-mailgate.toml"
    cfg.write_text(f"""
[database]
url = "{url}"
[lmtp]
port = {lmtp_port}
[milter]
enabled = false
[web]
port = {free_port()}
[smtp]
port = {free_port()}
[[queue]]
name = "Hotline"
addresses = ["{HOT}"]
acknowledge = false
""")
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    files = [tmp_path / "mailgate.sqlite", tmp_path / "mailgate.sqlite-wal"]
    with instance(load(cfg), []) as pf:
        daemon = start(cfg, lmtp_port)
        source = subprocess.Popen(
            ["smtp-source", "-s", "5", "-m", str(total), "-l", "1024", "-f",
             "load@customer.test", "-t", HOT, f"127.0.0.1:{pf.port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        frozen = False
        try:
            wait_for(lambda: len(_rows(url)[0]) > 100, 120, "mail stored before")
            _chattr("+i", files)
            frozen = True
            time.sleep(20)
            _chattr("-i", files)
            frozen = False
            assert source.wait(300) == 0, source.stdout.read()  # type: ignore[union-attr]
            pf.wait_queue_empty(300)
        finally:
            if frozen:
                _chattr("-i", files)
            source.kill()
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
        log = pf.log()
    accepted = set(re.findall(r"cleanup\[\d+\]: \w+: message-id=<([^>]+)>", log))
    ids, _ = _rows(url)
    assert "451 4.3.0" in log, "the daemon did not answer 451 while the file was read-only"
    assert len(accepted) == total
    assert len(ids) == len(set(ids)), "a message was stored twice"
    assert set(ids) == accepted, "a message Postfix accepted was not stored"
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    engine.dispose()
