"""Run the real CLI in a subprocess with a config file written for the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import TEST_DNS
from lmtp_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


def write_config(path: Path, db_url: str, extra: str = "", lmtp_port: int = 0) -> Path:
    """A config for the test database; its LMTP port is free unless given (so the pipe
    entry finds no daemon there and stores directly)."""
    dns = f"dns_servers = {json.dumps(TEST_DNS)}\n" if TEST_DNS else ""
    path.write_text(
        f"""
[lmtp]
port = {lmtp_port or free_port()}

[system]
id = "10"
domain = "mailgate.test"
{dns}
[database]
url = "{db_url}"
busy_timeout_ms = 300

[[queue]]
name = "Hotline"
addresses = ["hotline@example.com"]
acknowledge = "always"

[[queue]]
name = "Support-DE"
addresses = ["support@example.de"]
language = "de"
acknowledge = "always"
{extra}
"""
    )
    if "[milter]" not in extra:  # a port of its own: tests run several daemons at once
        path.write_text(path.read_text() + f"\n[milter]\nport = {free_port()}\n")
    if "[web]" not in extra:
        path.write_text(path.read_text() + f"\n[web]\nport = {free_port()}\n")
    return always_acknowledge(path)


def always_acknowledge(path: Path) -> Path:
    """Every queue of the file answers every sender: the tests' senders are not
    authenticated (the default, "authenticated", has tests of its own)."""
    import tomlkit

    doc = tomlkit.parse(path.read_text())
    for queue in doc.get("queue", []):
        queue.setdefault("acknowledge", "always")
    path.write_text(tomlkit.dumps(doc))
    return path


def cli_process(config: Path, *args: str) -> subprocess.Popen[bytes]:
    """The CLI started, not waited for: for running several at once."""
    env = dict(os.environ, OTRS_MAILGATE_CONFIG=str(config))
    return subprocess.Popen(
        [sys.executable, "-m", "otrs_mailgate.admin.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def cli(config: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, OTRS_MAILGATE_CONFIG=str(config))
    return subprocess.run(
        [sys.executable, "-m", "otrs_mailgate.admin.cli", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
    )


def cli_json(config: Path, *args: str) -> Any:
    proc = cli(config, *args, "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)
