"""The service units (contrib/systemd/) and the daemon's side of them (issue 32):
systemd-analyze verify and security on the shipped units, and the notify protocol
(READY, STATUS, WATCHDOG, RELOADING, STOPPING) read from a real datagram socket while
`serve` runs, as systemd would read it.  systemd-analyze needs no running systemd."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_helpers import ROOT, cli, write_config
from helpers import need
from lmtp_helpers import free_port

UNITS = sorted((ROOT / "contrib" / "systemd").glob("*.service"))
ANALYZE = shutil.which("systemd-analyze")


def installed(unit: Path, tmp_path: Path) -> Path:
    """The unit as installed here: ExecStart names this environment's otrs-mailgate
    (the shipped one names /usr/local/bin, where pip puts it on a server)."""
    exe = Path(sys.executable).parent / "otrs-mailgate"
    text = unit.read_text().replace("/usr/local/bin/otrs-mailgate", str(exe))
    out = tmp_path / unit.name
    out.write_text(text)
    return out


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_units_verify_clean(unit: Path, tmp_path: Path) -> None:
    need(ANALYZE is not None, "no systemd-analyze (Debian package systemd)")
    proc = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(installed(unit, tmp_path))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_units_exposure_is_ok(unit: Path, tmp_path: Path) -> None:
    need(ANALYZE is not None, "no systemd-analyze (Debian package systemd)")
    proc = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--threshold=20", str(installed(unit, tmp_path))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    assert float(found.group(1)) <= 2.0 and found.group(2) == "OK", found.group(0)


class NotifySocket:
    """What systemd listens on: a datagram socket; `lines()` what the daemon said."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.path = path
        self.said: list[dict[str, str]] = []

    def wait_for(self, key: str, timeout: float = 30) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.said.append(message)
            if key in message:
                return message
        raise AssertionError(f"no {key} within {timeout}s; said: {self.said}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify")
    yield s
    s.close()


def start(cfg: Path, notify: NotifySocket, *args: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ, OTRS_MAILGATE_CONFIG=str(cfg), NOTIFY_SOCKET=str(notify.path),
        WATCHDOG_USEC="400000",
    )  # fmt: skip
    log = cfg.with_suffix(".log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "otrs_mailgate.admin.cli", *args], env=env, stderr=log
    )


def test_serve_speaks_the_notify_protocol(tmp_path: Path, notify: NotifySocket) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/db.sqlite", lmtp_port=port)
    assert cli(cfg, "init").returncode == 0
    proc = start(cfg, notify, "serve", "--log-format", "json")
    try:
        ready = notify.wait_for("READY")
        assert ready["MAINPID"] == str(proc.pid)
        assert ready["STATUS"].startswith(f"listening for LMTP on 127.0.0.1:{port}")
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # ready meant it
        notify.wait_for("WATCHDOG")
        notify.wait_for("WATCHDOG")  # again: from the loop, every WatchdogSec/2
        proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert "config reloaded" in notify.wait_for("READY")["STATUS"]
        proc.send_signal(signal.SIGTERM)
        assert notify.wait_for("STOPPING")["STOPPING"] == "1"
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = cfg.with_suffix(".log").read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["message"].startswith("listening for LMTP") for e in entries)


def test_workers_are_one_service(tmp_path: Path, notify: NotifySocket) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/db.sqlite", lmtp_port=port)
    assert cli(cfg, "init").returncode == 0
    proc = start(cfg, notify, "serve", "--workers", "2")
    try:
        ready = notify.wait_for("READY")
        assert ready["MAINPID"] == str(proc.pid)  # the parent, not a worker
        assert ready["STATUS"].startswith("2 workers listening")
        notify.wait_for("WATCHDOG")
        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING")
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert all("MAINPID" not in m or m["MAINPID"] == str(proc.pid) for m in notify.said)
