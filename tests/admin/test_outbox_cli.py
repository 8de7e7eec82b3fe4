"""`outbox list` and `outbox show`: what would go out, readable while no MTA answers."""

from __future__ import annotations

import email
import json
from email import policy
from pathlib import Path

from otrs_mailgate.config.schema import load
from otrs_mailgate.ingest.pipeline import Pipeline

from cli_helpers import cli, write_config
from helpers import mail


def test_list_and_show_the_mail_that_waits(tmp_path: Path, db_url: str) -> None:
    cfg = write_config(tmp_path / "otrs-mailgate.toml", db_url)
    p = Pipeline(load(cfg))
    number = p.deliver_one(mail("Printer", sender="cus@customer.test"), "hotline@example.com")
    p.engine.dispose()
    listed = cli(cfg, "outbox", "list")
    assert listed.returncode == 0, listed.stderr
    line = listed.stdout.decode().splitlines()[0]
    assert "queued" in line and "acknowledgement" in line and "cus@customer.test" in line
    [row] = json.loads(cli(cfg, "outbox", "list", "--json").stdout)
    assert row["to"] == ["cus@customer.test"] and row["status"] == "queued"
    assert cli(cfg, "outbox", "list", "--status", "sent").stdout == b"no sent mail\n"
    shown = cli(cfg, "outbox", "show", str(row["id"]))
    assert shown.returncode == 0, shown.stderr
    assert b"queued, from hotline@example.com to cus@customer.test" in shown.stderr
    message = email.message_from_bytes(shown.stdout, policy=policy.default)
    assert str(message["Subject"]).strip() == f"[Ticket#{number.ticket_number}] Printer"
    assert message["To"] == "cus@customer.test" and message["Auto-Submitted"] == "auto-replied"
    missing = cli(cfg, "outbox", "show", "999")
    assert missing.returncode == 1 and b"no outbox mail 999" in missing.stderr
    [after] = json.loads(cli(cfg, "outbox", "list", "--json").stdout)
    assert after == row  # looking sends nothing and changes nothing
