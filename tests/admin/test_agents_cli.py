"""`agent`, `queue`, `locks` and `ticket create` on the command line, errors included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import cli, cli_json, write_config


@pytest.fixture
def cfg(tmp_path: Path, db_url: str) -> Path:
    path = write_config(tmp_path / "otrs-mailgate.toml", db_url)
    return path


def out(proc) -> str:
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def test_agents_groups_and_grants(cfg: Path) -> None:
    assert "added alice" in out(
        cli(
            cfg,
            "agent",
            "add",
            "alice",
            "Alice@Agents.Test",
            "--name",
            "Alice A",
            "--group",
            "support",
        )
    )
    out(cli(cfg, "agent", "add", "bob", "bob@agents.test"))
    out(cli(cfg, "agent", "join", "bob", "@support"))
    agents = cli_json(cfg, "agent", "list")
    assert agents == [
        {
            "login": "alice",
            "address": "alice@agents.test",
            "name": "Alice A",
            "enabled": True,
            "groups": ["support"],
        },
        {
            "login": "bob",
            "address": "bob@agents.test",
            "name": "",
            "enabled": True,
            "groups": ["support"],
        },
    ]
    assert "group @support: rw on queue Hotline" in out(
        cli(cfg, "queue", "grant", "Hotline", "@support", "rw")
    )
    assert "agent alice: ro on queue Support-DE" in out(
        cli(cfg, "queue", "grant", "Support-DE", "alice", "ro")
    )
    queues = cli_json(cfg, "queue", "list")
    assert queues[0] == {
        "name": "Hotline",
        "addresses": ["hotline@example.com"],
        "retired_addresses": [],
        "grants": ["@support:rw"],
    }
    assert queues[1]["grants"] == ["alice:ro"]
    out(cli(cfg, "queue", "grant", "Support-DE", "alice", "none"))
    assert cli_json(cfg, "queue", "list")[1]["grants"] == []
    assert "DISABLED" in out(cli(cfg, "agent", "disable", "bob@agents.test"))
    assert [a["enabled"] for a in cli_json(cfg, "agent", "list")] == [True, False]
    assert "enabled" in out(cli(cfg, "agent", "enable", "bob"))
    assert "secret rotated" in out(cli(cfg, "agent", "rotate-secret", "alice"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("agent", "add", "alice", "other@agents.test"),
            "an agent with login 'alice' exists already",
        ),
        (
            ("agent", "add", "zed", "alice@agents.test"),
            "an agent with address 'alice@agents.test' exists",
        ),
        (
            ("agent", "add", "Bad Login", "x@agents.test"),
            "login 'bad login': use lower-case letters",
        ),
        (("agent", "add", "zed", "not-an-address"), "'not-an-address' is not a mail address"),
        (("agent", "disable", "nobody"), "no agent 'nobody' (see `otrs-mailgate agent list`)"),
        (("queue", "grant", "Hotline", "nobody", "rw"), "no agent 'nobody'"),
    ],
)
def test_management_errors_say_why_and_change_nothing(
    cfg: Path, args: tuple[str, ...], message: str
) -> None:
    out(cli(cfg, "agent", "add", "alice", "alice@agents.test"))
    before = cli_json(cfg, "agent", "list")
    proc = cli(cfg, *args)
    assert proc.returncode == 1
    assert message in proc.stderr.decode() and b"Traceback" not in proc.stderr
    assert cli_json(cfg, "agent", "list") == before


def test_queue_grant_unknown_queue(cfg: Path) -> None:
    proc = cli(cfg, "queue", "grant", "Nope", "@x", "rw")
    assert proc.returncode == 2 and b"no queue named 'Nope'" in proc.stderr


def test_queue_add_edits_the_config_file_only_when_valid(cfg: Path) -> None:
    before = cfg.read_text()
    proc = cli(
        cfg, "queue", "add", "Billing", "--address", "billing@example.com", "--language", "de"
    )
    assert "added queue Billing" in out(proc)
    names = [q["name"] for q in cli_json(cfg, "queue", "list")]
    assert names == ["Hotline", "Support-DE", "Billing"]
    text = cfg.read_text()
    kept = iter(text.splitlines())  # every line of before is still there, in its order
    assert all(any(line == seen for seen in kept) for line in before.splitlines() if line)
    assert text.index('name = "Billing"') < text.index("[milter]")  # with the other queues
    bad = cli(cfg, "queue", "add", "Other", "--address", "hotline@example.com")
    assert bad.returncode == 2
    assert b"queue not added" in bad.stderr and b"belongs to two queues" in bad.stderr
    assert cfg.read_text() == text  # untouched
    assert not list(cfg.parent.glob(".otrs-mailgate-*"))  # no temporary file left


def test_ticket_create_is_a_mail_from_the_customer(cfg: Path) -> None:
    proc = cli(
        cfg,
        "ticket",
        "create",
        "--customer",
        "Cus Tomer <cus@customer.test>",
        "--subject",
        "Called about the printer",
        "--queue",
        "Hotline",
        "--body",
        "-",
        "--json",
        stdin=b"The printer smokes.\n",
    )
    number = json.loads(out(proc))["number"]
    shown = cli_json(cfg, "ticket", "show", number)
    assert shown["customer"] == "cus@customer.test" and shown["queue"] == "Hotline"
    assert shown["articles"][0]["body"] == "The printer smokes."
    assert [o["kind"] for o in shown["outbox"]] == ["acknowledgement"]
    quiet = json.loads(
        out(
            cli(
                cfg,
                "ticket",
                "create",
                "--customer",
                "x@customer.test",
                "--subject",
                "s",
                "--queue",
                "Support-DE",
                "--no-ack",
                "--json",
            )
        )
    )["number"]
    assert cli_json(cfg, "ticket", "show", quiet)["outbox"] == []  # nobody works Support-DE
    # --no-ack drops the customer's acknowledgement only: the queue's agents are told
    out(cli(cfg, "agent", "add", "alice", "alice@localhost"))  # an address as ours are
    out(cli(cfg, "queue", "grant", "Support-DE", "alice", "rw"))
    told = json.loads(
        out(
            cli(
                cfg, "ticket", "create", "--customer", "y@customer.test", "--subject", "s",
                "--queue", "Support-DE", "--no-ack", "--json",
            )
        )
    )["number"]  # fmt: skip
    outbox = cli_json(cfg, "ticket", "show", told)["outbox"]
    assert [(o["kind"], o["to"]) for o in outbox] == [("notification_new", "alice@localhost")]
    bad = cli(
        cfg, "ticket", "create", "--customer", "nobody", "--subject", "s", "--queue", "Hotline"
    )
    assert bad.returncode == 2 and b"'nobody' is not a mail address" in bad.stderr


def test_locks_expire_command(cfg: Path) -> None:
    assert "released 0 lock(s)" in out(cli(cfg, "locks", "expire"))


def test_customer_set_language(cfg: Path) -> None:
    out(
        cli(
            cfg,
            "ticket",
            "create",
            "--customer",
            "cus@customer.test",
            "--subject",
            "s",
            "--queue",
            "Hotline",
        )
    )
    assert "mails in de from now on" in out(
        cli(cfg, "customer", "set-language", "cus@customer.test", "DE")
    )
    bad = cli(cfg, "customer", "set-language", "nobody@customer.test", "de")
    assert bad.returncode == 1 and b"no customer 'nobody@customer.test'" in bad.stderr
    bad = cli(cfg, "customer", "set-language", "cus@customer.test", "xx")
    assert bad.returncode == 1 and b"no templates for language 'xx'; have: de, en" in bad.stderr
