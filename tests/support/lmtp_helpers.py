"""A daemon in a thread of the test process, and a raw-socket LMTP client.

smtplib.LMTP reads one reply after DATA; RFC 2033 gives one per recipient, so
the client here reads exactly as many as it sent accepted recipients.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from otrs_mailgate.config.schema import Config
from otrs_mailgate.daemon import Daemon

_HANDED_OUT: set[int] = set()


def _port_range() -> range | None:
    """$OTRS_MAILGATE_PORTS, e.g. 20000-20999: the tests take their ports from it only
    (the daemons, milters, pages, SMTP sinks and Postfix instances they start)."""
    text = os.environ.get("OTRS_MAILGATE_PORTS", "").strip()
    if not text:
        return None
    low, _, high = text.partition("-")
    return range(int(low), int(high or low) + 1)


def free_port() -> int:
    """A loopback port nothing listens on, never one handed out before in this process:
    the kernel may offer a port again until its first taker binds it (two daemons'
    configs written before either starts once got the same port).  Within
    $OTRS_MAILGATE_PORTS when set (with pytest-xdist, each worker its own share)."""
    allowed = _port_range()
    if allowed is not None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
        count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
        share = allowed[int(worker or 0) :: max(count, 1)]
        for port in share:
            if port in _HANDED_OUT:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _HANDED_OUT.add(port)
            return port
        raise RuntimeError(
            f"no free port left in OTRS_MAILGATE_PORTS={allowed.start}-{allowed.stop - 1}"
        )
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@contextmanager
def running(config: Config, mta: int = 0) -> Iterator[Daemon]:
    """The daemon on free ports; its outbox sends to port `mta`, or where nothing listens
    (the outbox just defers)."""
    config.lmtp.port = free_port()
    config.smtp.port = mta or free_port()
    config.milter.port = free_port()
    if config.web.port == 8080:  # a test that chose one (links in mail name it) keeps it
        config.web.port = free_port()
    loop = asyncio.new_event_loop()
    holder: dict[str, Daemon] = {}

    def target() -> None:
        asyncio.set_event_loop(loop)

        async def main() -> None:
            holder["d"] = Daemon(None, config)
            await holder["d"].run(install_signals=False)

        loop.run_until_complete(main())

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    for _ in range(400):
        if "d" in holder and holder["d"].started.is_set():
            break
        threading.Event().wait(0.025)
    daemon = holder["d"]
    try:
        yield daemon
    finally:
        loop.call_soon_threadsafe(daemon.stopping.set)
        thread.join(30)
        loop.close()


class RawLMTP:
    def __init__(self, port: int, host: str = "127.0.0.1", unix: str = "") -> None:
        if unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(30)
            self.sock.connect(unix)
        else:
            self.sock = socket.create_connection((host, port), timeout=30)
        self.buf = b""
        assert self.reply().startswith("220")

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf.split(b"\r\n", 1)
        return out.decode()

    def reply(self) -> str:
        """One (possibly multi-line) reply."""
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return "\n".join(lines)

    def cmd(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def send(self, sender: str, recipients: list[str], data: bytes) -> tuple[list[str], list[str]]:
        """(RCPT replies, DATA replies: one per accepted recipient)."""
        assert self.cmd(f"MAIL FROM:<{sender}>").startswith("250")
        rcpt = [self.cmd(f"RCPT TO:<{r}>") for r in recipients]
        accepted = sum(r.startswith("250") for r in rcpt)
        if not accepted:
            self.cmd("RSET")
            return rcpt, []
        assert self.cmd("DATA").startswith("354")
        body = data.replace(b"\r\n.", b"\r\n..")
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        self.sock.sendall(body + b".\r\n")
        return rcpt, [self.reply() for _ in range(accepted)]

    def close(self) -> None:
        try:
            self.cmd("QUIT")
        finally:
            self.sock.close()


def serve(cfg: Path, *args: str) -> subprocess.Popen[bytes]:
    """The daemon started, with its log in a file (a pipe nobody reads would block it)."""
    env = dict(os.environ, OTRS_MAILGATE_CONFIG=str(cfg))
    log_path = cfg.with_suffix(".log")
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "otrs_mailgate.admin.cli", "serve", *args], env=env, stderr=log
        )
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def start(cfg: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    """The daemon, once it listens."""
    proc = serve(cfg, *args)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.log_path.read_text()) from None  # type: ignore[attr-defined]
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("daemon did not listen")
