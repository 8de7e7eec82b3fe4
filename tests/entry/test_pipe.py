"""The pipe entry: exit codes Postfix understands, and nothing half-written on failure."""

from __future__ import annotations

import io
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
from lmtp_helpers import free_port

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
    # a port nobody listens on: a daemon a developer runs on the default port (make run)
    # would otherwise take the mail, and its config is not this one
    bad.write_text(f"[system]\nnope = 1\n[lmtp]\nport = {free_port()}\n")
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


# -- the hand-over to a running daemon (issue 18): LF lines, long lines, dots, size --------


def _lf_mail(subject: str, body: bytes) -> bytes:
    """A mail as Postfix's pipe(8) hands it over: LF line ends."""
    head = (
        f"From: Håvard Customer <havard@customer.test>\nTo: hotline@example.com\n"
        f"Subject: {subject}\nMessage-ID: <{subject.replace(' ', '-')}@customer.test>\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
    ).encode()
    return head + body


PIPE_MAILS = {
    "lf-2k": _lf_mail("LF two kilobytes", b"Some text on a line of its own.\n" * 64),
    "crlf": mail("CRLF as LMTP has it", "one\r\ntwo").replace(b"\n", b"\r\n"),
    "long-lines": _lf_mail("Long lines", b"x" * 5000 + b"\n" + b"y" * 70_000 + b"\nend\n"),
    "dots": _lf_mail("Dots", b".\n..\n. leading dot\n...three\nend\n.\n"),
    "over-1mb": _lf_mail("Big", b"0123456789abcdef" * 80 + b"\n") * 1 + b"z" * 1_300_000 + b"\n",
    "no-final-newline": _lf_mail("No final newline", b"last line without its LF"),
    "mixed": _lf_mail("Mixed", b"lf line\r\ncrlf line\nlone \r cr\n"),
}


def _stored(db_url: str) -> list[bytes]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(RawMessage.data)
            .join(Article, Article.raw_id == RawMessage.id)
            .order_by(Article.id)
        )
        out = [bytes(r[0]) for r in rows]
    engine.dispose()
    return out


@pytest.mark.parametrize("name", sorted(PIPE_MAILS))
def test_the_daemon_and_the_direct_path_store_the_same_bytes(
    tmp_path: Path, db_url: str, name: str
) -> None:
    """Forwarded to a running daemon and stored directly, a mail becomes the same bytes
    (its canonical CRLF form), and each path knows the other's delivery as a retry."""
    from otrs_mailgate.entry import pipe
    from otrs_mailgate.mail.wire import canonical

    from helpers import make_config
    from lmtp_helpers import running

    raw = PIPE_MAILS[name]
    with running(make_config(db_url)) as daemon:
        cfg = write_config(tmp_path / "c.toml", db_url, lmtp_port=daemon.config.lmtp.port)
        code, line = pipe.deliver(str(cfg), io.BytesIO(raw), "hotline@example.com", "a@b.test")
        assert (code, line.split(":")[0]) == (0, "forwarded"), line
        assert "stored in ticket" in line
        again, line = pipe.deliver(str(cfg), io.BytesIO(raw), "hotline@example.com", "a@b.test",
                                   via_daemon=False)  # fmt: skip
        assert (again, line.split(":")[0]) == (0, "duplicate"), line
    assert _stored(db_url) == [canonical(raw)]
    assert counts(db_url)["ticket"] == 1


def test_a_mail_stored_directly_is_a_known_retry_for_the_daemon(
    tmp_path: Path, db_url: str
) -> None:
    from otrs_mailgate.entry import pipe

    from helpers import make_config
    from lmtp_helpers import running

    raw = PIPE_MAILS["lf-2k"]
    cfg = write_config(tmp_path / "c.toml", db_url)
    code, line = pipe.deliver(str(cfg), io.BytesIO(raw), "hotline@example.com", "a@b.test")
    assert code == 0 and line.startswith("stored"), line
    with running(make_config(db_url)) as daemon:
        cfg = write_config(tmp_path / "c.toml", db_url, lmtp_port=daemon.config.lmtp.port)
        code, line = pipe.deliver(str(cfg), io.BytesIO(raw), "hotline@example.com", "a@b.test")
    assert code == 0 and "already stored" in line, line
    assert counts(db_url)["article"] == 1


def test_the_whole_corpus_through_the_daemon_and_directly(
    tmp_path: Path, db_url: str, corpus: Path
) -> None:
    """Every real-world mail of the corpus, LF as pipe(8) gives it: forwarded to the
    daemon, then again directly (a retry by the other path): one article each, stored as
    its canonical form."""
    from otrs_mailgate.entry import pipe
    from otrs_mailgate.mail.wire import canonical

    from helpers import make_config
    from lmtp_helpers import running

    files = sorted(p for p in corpus.rglob("*") if p.suffix in (".box", ".eml"))
    expected: list[bytes] = []
    with running(make_config(db_url)) as daemon:
        cfg = write_config(tmp_path / "c.toml", db_url, lmtp_port=daemon.config.lmtp.port)
        for path in files:
            raw = path.read_bytes().replace(b"\r\n", b"\n")  # as pipe(8) hands it over
            code, line = pipe.deliver(str(cfg), io.BytesIO(raw), "hotline@example.com", None)
            assert code == 0, (path.name, line)
            if "accepted" in line:  # a report about no mail of ours: kept raw, no article
                continue
            expected.append(canonical(raw))
            code, line = pipe.deliver(str(cfg), io.BytesIO(raw), "hotline@example.com", None,
                                      via_daemon=False)  # fmt: skip
            assert (code, line.split(":")[0]) == (0, "duplicate"), (path.name, line)
    assert _stored(db_url) == expected


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("250 2.0.0 <h@x> stored in ticket 1", 0),
        ("550 5.1.1 <h@x>: unknown queue address", 67),
        ("550 5.6.0 <h@x>: not a mail message: empty", 65),
        ("552 5.3.4 Message exceeds the size limit", 75),
        ("500 Line too long (see RFC5321 4.5.3.1.6)", 75),
        ("554 5.7.1 something we never say", 75),
        ("451 4.3.0 <h@x>: try again later", 75),
        ("421 4.3.2 shutting down", 75),
    ],
)
def test_only_the_daemons_deliberate_refusals_are_final(reply: str, code: int) -> None:
    """A bounce is data loss: any refusal the daemon did not mean as final keeps the
    mail at Postfix (75)."""
    from otrs_mailgate.entry.outcomes import from_reply

    number, text = reply.split(" ", 1)
    assert from_reply(int(number), text)[0] == code


def test_a_mail_over_the_daemons_size_limit_is_75_and_nothing_is_stored(
    tmp_path: Path, db_url: str
) -> None:
    from otrs_mailgate.entry import pipe

    from helpers import make_config
    from lmtp_helpers import running

    config = make_config(db_url)
    config.lmtp.max_message_size = 4096
    with running(config) as daemon:
        cfg = write_config(tmp_path / "c.toml", db_url, lmtp_port=daemon.config.lmtp.port)
        raw = _lf_mail("Too big for the daemon", (b"z" * 99 + b"\n") * 100)
        code, line = pipe.deliver(str(cfg), io.BytesIO(raw), "hotline@example.com", "a@b.test")
    assert code == 75 and "552" in line, line
    assert counts(db_url)["article"] == 0


def test_a_crash_is_75_never_a_bounce(tmp_path: Path, db_url: str, monkeypatch) -> None:
    """Postfix's pipe(8) bounces on any status but 0 and 75: a bug or a missing library in
    the client (found through a real pipe transport: pydantic absent, status 1, bounced)
    must be 75, from the client and from the wrapper around it."""
    from otrs_mailgate.entry import pipe

    def boom(*_args: object, **_kwargs: object) -> tuple[int, str]:
        raise ModuleNotFoundError("No module named 'pydantic'")

    monkeypatch.setattr(pipe, "deliver", boom)
    code, line = pipe.guarded(None, io.BytesIO(mail("x")), "hotline@example.com", None)
    assert code == 75 and "try again later" in line and "pydantic" in line
    crash = tmp_path / "python"
    crash.write_text("#!/bin/sh\necho 'Traceback: boom' >&2\nexit 1\n")
    crash.chmod(0o755)
    wrapper = subprocess.run(
        ["sh", str(ROOT / "bin" / "otrs-mailgate-pipe"), "hotline@example.com"],
        input=mail("x"),
        capture_output=True,
        env=dict(os.environ, OTRS_MAILGATE_PYTHON=str(crash)),
    )
    assert wrapper.returncode == 75, wrapper
    assert b"the client failed (status 1)" in wrapper.stderr
    assert counts(db_url)["article"] == 0
