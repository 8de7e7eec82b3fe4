"""A private Postfix instance for the tests: its own config, queue, port and mailboxes.

Built from Debian's master.cf.dist (chroot off, smtpd on a free loopback port) and
a main.cf that holds exactly what `otrs-mailgate postfix-config` prints, plus
virtual mailboxes for the customers' domain so our outgoing mail lands in a
Maildir the test can read.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from otrs_mailgate.admin import postfix
from otrs_mailgate.config.schema import Config

from helpers import need
from lmtp_helpers import free_port

MASTER_DIST = Path("/usr/share/postfix/master.cf.dist")
_FROM = re.compile(rb"^From:[^\n]*<([^>]+)>", re.MULTILINE)


def require_postfix() -> None:
    need(
        shutil.which("postfix") is not None and MASTER_DIST.exists(),
        "Postfix is not installed (Debian package postfix)",
    )
    need(shutil.which("swaks") is not None, "swaks is not installed (Debian package swaks)")
    need(os.geteuid() == 0, "starting a Postfix instance needs root")


@dataclass
class Instance:
    root: Path
    port: int

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user / "new"

    def inbox(self, user: str) -> list[EmailMessage]:
        """The mails delivered to a user, parsed, oldest first."""
        files = sorted(self.maildir(user).glob("*"), key=lambda f: f.stat().st_mtime)
        return [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def swaks(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "swaks",
                "--server",
                f"127.0.0.1:{self.port}",
                "--helo",
                "client.customer.test",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def postfix(self, *args: str) -> None:
        subprocess.run(
            ["postfix", "-c", str(self.config_dir), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def send_files(self, files: Sequence[Path], rcpt: str, sessions: int = 10) -> None:
        """Each file as its own mail through our smtpd (`smtp-source -F`), `sessions` at a
        time; the envelope sender is the file's From address."""
        running: list[subprocess.Popen[bytes]] = []

        def reap(proc: subprocess.Popen[bytes]) -> None:
            if proc.wait() != 0:
                raise RuntimeError(f"smtp-source failed: {proc.stderr.read()!r}")  # type: ignore[union-attr]

        for path in files:
            while len(running) >= sessions:
                done = [p for p in running if p.poll() is not None]
                for proc in done:
                    reap(proc)
                    running.remove(proc)
                time.sleep(0.002)
            sender = _FROM.search(path.read_bytes()).group(1).decode()  # type: ignore[union-attr]
            where = f"127.0.0.1:{self.port}"
            cmd = ["smtp-source", "-m", "1", "-f", sender, "-t", rcpt, "-F", str(path), where]
            running.append(subprocess.Popen(cmd, stderr=subprocess.PIPE))
        for proc in running:
            reap(proc)

    def wait_queue_empty(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["postqueue", "-c", str(self.config_dir), "-j"], capture_output=True, text=True
            ).stdout
            if not out.strip():
                return
            time.sleep(0.5)
        raise TimeoutError("Postfix queue did not drain:\n" + out[:2000])


def wait_for(predicate, timeout: float = 60, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


@contextmanager
def instance(
    config: Config,
    mailboxes: list[str],
    extra_main: str = "",
    extra_transport: str = "",
    extra_master: str = "",
    lmtp: Sequence[str] = (),
    transport: str | None = None,
    smtputf8: bool = False,
    ours: bool = True,
) -> Iterator[Instance]:
    """Start Postfix for `config`'s queues; mailboxes are user@domain Maildirs (by user,
    or @domain: one Maildir named for the domain takes all its mail);
    lmtp: several daemons to spread the deliveries over (postfix-config --lmtp);
    transport: a transport map of the test's own instead of postfix-config's;
    smtputf8: Postfix's default (yes) instead of no, for mail to non-ASCII addresses;
    ours=False: a Postfix as a site has it before otrs-mailgate (none of our lines)."""
    require_postfix()
    root = Path(tempfile.mkdtemp(prefix="otrs-mailgate-postfix-", dir="/tmp"))
    root.chmod(0o755)
    pf = pwd.getpwnam("postfix")
    port = free_port()
    for sub in ("etc", "queue", "data", "mail"):
        (root / sub).mkdir()
    os.chown(root / "data", pf.pw_uid, pf.pw_gid)
    os.chown(root / "mail", pf.pw_uid, pf.pw_gid)
    etc = root / "etc"
    routes = postfix.transport(config, lmtp) if transport is None else transport
    (etc / "transport").write_text(routes + extra_transport)
    (etc / "recipients").write_text(postfix.recipients(config))
    (etc / "vmailbox").write_text("".join(f"{m} {_box(m)}/\n" for m in mailboxes))
    domains = ", ".join(sorted({m.split("@")[1] for m in mailboxes} | {"customer.test"}))
    lines = postfix.main_cf(config, str(etc / "transport"), str(etc / "recipients"), lmtp)
    lines = lines.replace("hash:", "texthash:") if ours else ""  # texthash: no postmap
    # Test timings replace ours instead of following them: a key given twice makes every
    # Postfix process log a warning, and postlogd, logging its own to itself while
    # its socket's queue (10 datagrams) is full, can deadlock the whole instance.
    timings = {"queue_run_delay": "5s", "minimal_backoff_time": "5s", "maximal_backoff_time": "10s"}
    lines = "\n".join(line for line in lines.splitlines() if line.split(" = ", 1)[0] not in timings)
    timing_lines = "\n".join(f"{key} = {value}" for key, value in timings.items())
    (etc / "main.cf").write_text(f"""
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.mailgate.test
mydomain = mailgate.test
myorigin = mailgate.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = {domains}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{etc}/vmailbox
virtual_uid_maps = static:{pf.pw_uid}
virtual_gid_maps = static:{pf.pw_gid}
maillog_file_prefixes = /tmp
maillog_file = {root}/maillog
smtputf8_enable = {"yes" if smtputf8 else "no"}
biff = no
{lines}
# test timings: retry within seconds, not minutes
{timing_lines}
{extra_main}
""")
    master = []
    for line in MASTER_DIST.read_text().splitlines():
        fields = line.split()
        if line[:1].isalpha() and len(fields) >= 8:
            if fields[4] == "y":
                fields[4] = "n"  # no chroot: the instance lives in /tmp
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = f"127.0.0.1:{port}"
            line = "\t".join(fields)
        master.append(line)
    (etc / "master.cf").write_text("\n".join(master) + "\n" + extra_master)
    inst = Instance(root, port)
    inst.postfix("start")
    try:
        wait_for(lambda: _listening(port), 30, "Postfix smtpd")
        yield inst
    finally:
        subprocess.run(["postfix", "-c", str(etc), "stop"], capture_output=True, timeout=60)
        time.sleep(0.5)
        shutil.rmtree(root, ignore_errors=True)


def _box(mailbox: str) -> str:
    """user@domain is delivered to the Maildir `user`; @domain (all of it) to `domain`."""
    user, domain = mailbox.split("@")
    return user or domain


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
