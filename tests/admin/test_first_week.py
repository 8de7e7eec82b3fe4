"""Issue 27: what a new mail admin sees when something is not right, as the CLI and
`serve` print it (exit codes, one line instead of a traceback, hints that fit)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dkim
import pytest

from otrs_mailgate.ingest import auth
from otrs_mailgate.site import pinned_keys

from cli_helpers import cli, write_config
from helpers import mail
from lmtp_helpers import free_port, serve


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "otrs_mailgate.admin.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://user:secret@db.example/tickets", "mysql:// is no database we support"),
        ("sqllite:///var/x.sqlite", "(did you mean sqlite://?)"),
        ("sqlite://relative.sqlite", "a SQLite URL has three slashes and a path"),
        ("postgresql://", "no server and database named"),
    ],
)
def test_a_database_url_we_do_not_run_on_is_one_line(tmp_path: Path, url: str, says: str) -> None:
    proc = run("ticket", "list", env={"OTRS_MAILGATE_DATABASE_URL": url}, cwd=tmp_path)
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert line.startswith("otrs-mailgate: config error: environment variable ")
    assert says in line and "sqlite:///PATH or postgresql://" in line
    assert "secret" not in line  # a password in the URL is not printed
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_command_never_creates_a_database(tmp_path: Path) -> None:
    env = {"OTRS_MAILGATE_DATABASE_URL": "sqlite:///typo/tickets.sqlite"}
    proc = run("ticket", "list", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "otrs-mailgate: database error: no database at typo/tickets.sqlite: run "
        "`otrs-mailgate init` to make it, or fix database.url"
    )
    assert list(tmp_path.iterdir()) == []  # no directory, no file, no key file
    made = run("init", env=env, cwd=tmp_path)
    assert made.returncode == 0 and (tmp_path / "typo" / "tickets.sqlite").exists()
    assert run("ticket", "list", env=env, cwd=tmp_path).returncode == 0


def test_an_uninitialised_database_says_run_init(tmp_path: Path) -> None:
    (tmp_path / "empty.sqlite").touch()
    env = {"OTRS_MAILGATE_DATABASE_URL": f"sqlite:///{tmp_path}/empty.sqlite"}
    proc = run("ticket", "list", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert "no such table" in proc.stderr and "run `otrs-mailgate init`" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_environment_variables_a_typo_warns_a_bad_value_names_the_variable(
    tmp_path: Path, db_url: str
) -> None:
    cfg = write_config(tmp_path / "c.toml", db_url)
    typo = cli_env(cfg, "ticket", "list", OTRS_MAILGATE_LMTP_PROT="1")
    assert typo.returncode == 0
    assert (
        "otrs-mailgate: warning: environment variable OTRS_MAILGATE_LMTP_PROT names no "
        "config key; did you mean OTRS_MAILGATE_LMTP_PORT?"
    ) in typo.stderr
    bad = cli_env(cfg, "ticket", "list", OTRS_MAILGATE_LMTP_PORT="abc")
    assert bad.returncode == 2
    assert bad.stderr.startswith(
        "otrs-mailgate: config error: environment variable OTRS_MAILGATE_LMTP_PORT='abc': "
        "lmtp.port:"
    )
    assert str(cfg) not in bad.stderr  # not blamed on the file


def cli_env(cfg: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(*args, env={"OTRS_MAILGATE_CONFIG": str(cfg), **env})


def test_serve_will_not_start_on_a_database_it_cannot_use(tmp_path: Path) -> None:
    """One line, exit 69, and it never says it listens: an uninitialised SQLite file, a
    missing one, a PostgreSQL that refuses the login or is not there."""
    (tmp_path / "empty.sqlite").touch()
    cases = [
        (f"sqlite:///{tmp_path}/empty.sqlite", "the database has no tables yet: run"),
        (f"sqlite:///{tmp_path}/none.sqlite", f"no database at {tmp_path}/none.sqlite"),
        (f"postgresql://nobody:wrong@127.0.0.1:{free_port()}/x", "is the database server running"),
    ]
    for url, says in cases:
        cfg = write_config(tmp_path / "c.toml", url)
        proc = serve(cfg)
        assert proc.wait(60) == 69
        log = proc.log_path.read_text()  # type: ignore[attr-defined]
        proc.log_path.unlink()  # type: ignore[attr-defined]
        errors = [line for line in log.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and "not started: " in errors[0] and says in errors[0], log
        assert "listening" not in log and "Traceback" not in log


def test_serve_on_a_wrong_postgresql_password_says_so(tmp_path: Path, pg_url: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    tcp = url.set(host="127.0.0.1", password="certainly-wrong", query={})
    cfg = write_config(tmp_path / "c.toml", tcp.render_as_string(hide_password=False))
    proc = serve(cfg)
    assert proc.wait(60) == 69
    log = proc.log_path.read_text()  # type: ignore[attr-defined]
    [error] = [line for line in log.splitlines() if " ERROR " in line]
    assert "check the user and password in database.url" in error or (
        "no password supplied" in error
    ), error
    assert "certainly-wrong" not in log and "Traceback" not in log


def test_a_database_that_fails_after_start_is_one_warning_not_a_flood(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The outbox table taken away under a running daemon: one warning, a back-off, and
    no traceback (it was thousands of lines in seconds)."""
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", sqlite_url, f"[smtp]\nport = {free_port()}\n", port)
    proc = serve(cfg)
    try:
        deadline = time.monotonic() + 30
        log_path = proc.log_path  # type: ignore[attr-defined]
        while "listening for LMTP" not in log_path.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log_path.read_text()
            time.sleep(0.1)
        with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
            conn.execute("ALTER TABLE outbox RENAME TO outbox_away")
        time.sleep(8)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    log = log_path.read_text()
    assert "Traceback" not in log
    warnings = [line for line in log.splitlines() if "outbox: the database does not answer" in line]
    assert len(warnings) == 1, log
    assert "no such table: outbox" in warnings[0]


def test_dkim_keygen_splits_the_record_and_makes_test_keys_for_agents(
    tmp_path: Path, db_url: str
) -> None:
    cfg = write_config(tmp_path / "c.toml", db_url)
    key = tmp_path / "agents-test.key"
    proc = cli(cfg, "dkim", "keygen", "--domain", "agents.test", "--selector", "t1",
               "--key-file", str(key))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    record = out.splitlines()[-1]
    strings = record.split('"')[1::2]
    assert record.startswith("t1._domainkey.agents.test. IN TXT (") and len(strings) > 1
    assert max(len(s) for s in strings) <= 255
    [pin] = [line.strip() for line in out.splitlines() if line.startswith("  t1._domainkey")]
    pins = tmp_path / "agent-keys"
    pins.write_text(pin + "\n")
    assert pinned_keys(str(pins))["t1._domainkey.agents.test"] == "".join(strings).encode()
    raw = mail("hello", sender="alice@agents.test")
    signed = dkim.sign(raw, b"t1", b"agents.test", key.read_bytes()) + raw
    dns = auth.dns_with_pins(pinned_keys(str(pins)), lambda name, timeout=5: None)
    assert auth.dkim_result(signed, "agents.test", dns)[0]
    assert "dkimsign t1 agents.test" in out


def test_a_queue_address_retired_keeps_old_replies_coming_in(tmp_path: Path, db_url: str) -> None:
    """Replacing the hotline address: the new one sends, the old one still takes
    customers' replies and agents' open reply addresses; removing it refuses it."""
    from sqlalchemy import select

    from otrs_mailgate.config.schema import load
    from otrs_mailgate.ingest.pipeline import Pipeline
    from otrs_mailgate.outbound.outbox import split_recipients
    from otrs_mailgate.store.models import Outbox

    cfg = write_config(tmp_path / "c.toml", db_url)
    cfg.write_text("# my own comment, kept\n" + cfg.read_text())
    pipeline = Pipeline(load(cfg))
    pipeline.ensure_queues()
    first = pipeline.deliver_one(mail("Printer", sender="bob@customer.test"), "hotline@example.com")
    for action, address in (("add", "help@example.com"), ("retire", "hotline@example.com")):
        proc = cli(cfg, "queue", "address", action, "Hotline", address)
        assert proc.returncode == 0, proc.stderr
    assert cfg.read_text().startswith("# my own comment, kept\n")
    listed = cli(cfg, "queue", "list").stdout.decode()
    assert "help@example.com, (hotline@example.com, retired)" in listed
    maps = cli(cfg, "postfix-config").stdout.decode()
    assert "hotline@example.com\tOK" in maps and "help@example.com\tOK" in maps
    pipeline.reconfigure(load(cfg))
    reply = mail(
        f"Re: [Ticket#{first.ticket_number}] Printer", "Still broken", sender="bob@customer.test"
    )
    again = pipeline.deliver_one(reply, "hotline@example.com")
    assert again.status == "stored" and again.ticket_number == first.ticket_number
    new = pipeline.deliver_one(mail("Scanner", sender="eve@customer.test"), "help@example.com")
    with pipeline.sessions() as s:
        rows = s.execute(select(Outbox).where(Outbox.kind == "acknowledgement")).scalars().all()
    ack = next(r for r in rows if split_recipients(r.rcpt_to) == ["eve@customer.test"])
    assert ack.mail_from == "help@example.com" and new.new_ticket
    only = cli(cfg, "queue", "address", "retire", "Hotline", "help@example.com")
    assert only.returncode == 1 and b"the only address of Hotline" in only.stderr
    removed = cli(cfg, "queue", "address", "remove", "Hotline", "hotline@example.com")
    assert removed.returncode == 0 and b"refused" in removed.stdout
    pipeline.reconfigure(load(cfg))
    from otrs_mailgate.ingest.outcome import UnknownRecipient

    with pytest.raises(UnknownRecipient):
        pipeline.deliver_one(reply, "hotline@example.com")
    pipeline.engine.dispose()


def test_an_agent_added_later_gets_a_digest_of_the_open_tickets(
    tmp_path: Path, db_url: str
) -> None:
    """Agents added after tickets were made were never told of them: `agent digest`
    mails the list, each ticket with the agent's own reply address to work it by."""
    import re

    from otrs_mailgate.config.schema import load
    from otrs_mailgate.ingest.pipeline import Pipeline

    from agent_helpers import agent_mail
    from helpers import outbox_mails

    cfg = write_config(tmp_path / "c.toml", db_url, '[agents]\ndkim = "optional"\n')
    pipeline = Pipeline(load(cfg))
    pipeline.ensure_queues()
    numbers = [
        pipeline.deliver_one(
            mail(f"Case {i}", sender=f"c{i}@customer.test"), "hotline@example.com"
        ).ticket_number
        for i in range(3)
    ]
    assert cli(cfg, "agent", "add", "dave", "dave@agents.test").returncode == 0
    assert cli(cfg, "queue", "grant", "Hotline", "dave", "rw").returncode == 0
    proc = cli(cfg, "agent", "digest", "dave")
    assert proc.returncode == 0 and b"a list of 3 open ticket(s) queued" in proc.stdout
    [digest] = [m for m in outbox_mails(pipeline) if str(m["To"]) == "dave@agents.test"]
    text = digest.get_content()
    for number in numbers:
        assert f"[Ticket#{number}]" in text
    address = re.search(rf"Ticket#{numbers[0]}\].*?write to (\S+) with", text, re.S).group(1)
    raw = agent_mail("dave@agents.test", address, f"[Ticket#{numbers[0]}] Case 0", "On it.")
    result = pipeline.deliver_one(raw, address, "dave@agents.test")
    assert result.ticket_number == numbers[0]
    assert any(
        str(m["To"]) == "c0@customer.test" and "On it." in m.get_content()
        for m in outbox_mails(pipeline)
    )
    pipeline.engine.dispose()


def test_files_with_secrets_or_mail_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    """Under a umask of 022 the database was 0644 though it holds the agents' secrets
    and the customers' mail; its backups too.  Now 0600 (directories 0700), and init
    warns about a file of ours others can read."""
    state = tmp_path / "state"
    env = {"OTRS_MAILGATE_DATABASE_URL": f"sqlite:///{state}/db.sqlite"}
    old = os.umask(0o022)
    try:
        made = run("init", env=env, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        backup = run("backup", str(tmp_path / "copy.sqlite"), env=env, cwd=tmp_path)
        assert backup.returncode == 0, backup.stderr
    finally:
        os.umask(old)
    assert (state.stat().st_mode & 0o777) == 0o700
    for path in (state / "db.sqlite", state / "audit.keys", tmp_path / "copy.sqlite"):
        assert (path.stat().st_mode & 0o777) == 0o600, path
    (state / "db.sqlite").chmod(0o644)
    again = run("init", env=env, cwd=tmp_path)
    assert again.returncode == 0
    assert f"warning: {state}/db.sqlite is mode 0644, readable beyond its owner" in again.stderr
