"""Real parts for issue 28's tests: a DNS server with the test's records (dnsmasq), Redis
and rspamd (its proxy speaking milter, its controller learning), each on free
loopback ports in a directory of its own, started and stopped by the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers import need
from lmtp_helpers import free_port

RSPAMD_CONF = Path("/etc/rspamd/rspamd.conf")


def require_dnsmasq() -> None:
    need(shutil.which("dnsmasq") is not None, "dnsmasq is not installed (Debian dnsmasq-base)")


@contextmanager
def local_dns(txt: Mapping[str, Sequence[str]]) -> Iterator[str]:
    """dnsmasq answering the TXT records given (name -> texts) and NXDOMAIN for every
    other name, on a free loopback port; yields "127.0.0.1:port" for dns_servers."""
    require_dnsmasq()
    port = free_port()
    args = [
        "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
        f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces", "--local=/#/",
        "--pid-file=", "--log-facility=-", "--log-queries",
    ]  # fmt: skip
    if os.geteuid() == 0:
        args.append("--user=root")
    for name, texts in txt.items():
        for text in texts:
            # dnsmasq makes one character-string of each comma-separated piece: a DKIM
            # key longer than 255 characters goes as several, as in a real zone
            pieces = [text[i : i + 250] for i in range(0, len(text), 250)]
            args.append(f"--txt-record={name},{','.join(pieces)}")
    with tempfile.NamedTemporaryFile(prefix="dnsmasq-", suffix=".log") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_port(port, proc, "dnsmasq", Path(log.name))
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


@dataclass
class Rspamd:
    root: Path
    milter: int  # the proxy worker, speaking milter
    controller: int
    password: str

    @property
    def milter_address(self) -> str:
        return f"inet:127.0.0.1:{self.milter}"

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self.controller}"

    def log(self) -> str:
        path = self.root / "log" / "rspamd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stat(self) -> dict[str, object]:
        """The controller's /stat: how much was learned."""
        import json

        request = urllib.request.Request(f"{self.controller_url}/stat")
        request.add_header("Password", self.password)
        with urllib.request.urlopen(request, timeout=10) as answer:
            return dict(json.loads(answer.read()))

    def learned(self) -> int:
        return int(self.stat().get("learned", 0))  # type: ignore[call-overload]


def require_rspamd() -> None:
    need(
        shutil.which("rspamd") is not None and RSPAMD_CONF.exists(),
        "rspamd is not installed (Debian package rspamd)",
    )
    need(shutil.which("redis-server") is not None, "redis is not installed (redis-server)")


@contextmanager
def redis() -> Iterator[int]:
    """A Redis for rspamd's Bayes statistics, in memory only; yields its port."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--protected-mode", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_port(port, proc, "redis-server")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


# A rule of the test's own, so a mail's score does not hang on rspamd's shipped rules
# of the day: this subject scores 10 (spam for us at 6, under rspamd's reject at 15).
SPAM_SUBJECT = "CHEAP-PILLS-TEST"


@contextmanager
def rspamd(dns: str, redis_port: int, reject: float = 15.0) -> Iterator[Rspamd]:
    """rspamd with Debian's shipped configuration and a local.d of the test's: its
    workers on free ports, DNS from `dns`, Bayes in the Redis given, the milter headers
    our filter reading expects, and mail from loopback scanned like any other."""
    require_rspamd()
    root = Path(tempfile.mkdtemp(prefix="otrs-mailgate-rspamd-", dir="/tmp"))
    for sub in ("local/local.d", "local/override.d", "db", "run", "log"):
        (root / sub).mkdir(parents=True)
    normal, proxy, controller = free_port(), free_port(), free_port()
    password = "learn-secret"
    local, override = root / "local" / "local.d", root / "local" / "override.d"
    files = {
        override / "worker-normal.inc": f'bind_socket = "127.0.0.1:{normal}";\ncount = 1;\n',
        override / "worker-proxy.inc": (
            f'bind_socket = "127.0.0.1:{proxy}";\nmilter = yes;\ntimeout = 120s;\ncount = 1;\n'
            f'upstream "local" {{ default = yes; hosts = "127.0.0.1:{normal}"; }}\n'
        ),
        override / "worker-controller.inc": (
            f'bind_socket = "127.0.0.1:{controller}";\ncount = 1;\n'
            f'password = "{password}";\nenable_password = "{password}";\nsecure_ip = [];\n'
        ),
        override / "worker-fuzzy.inc": "enabled = false;\n",
        override / "logging.inc": (
            f'type = "file";\nfilename = "{root}/log/rspamd.log";\nlevel = "info";\n'
        ),
        local / "options.inc": (
            f'dns {{ nameserver = ["{dns}"]; timeout = 1s; retransmits = 1; }}\nlocal_addrs = [];\n'
        ),
        local / "redis.conf": f'servers = "127.0.0.1:{redis_port}";\n',
        local / "classifier-bayes.conf": "min_learns = 1;\nautolearn = false;\n",
        local / "milter_headers.conf": (
            'use = ["x-spamd-result", "x-rspamd-server", "x-rspamd-queue-id", "x-spam-level",'
            ' "x-spam-status", "x-rspamd-score"];\nskip_local = false;\n'
            "skip_authenticated = false;\n"
        ),
        local / "actions.conf": f"reject = {reject};\nadd_header = 6;\ngreylist = null;\n",
        local / "multimap.conf": (
            'TEST_SPAM_SUBJECT {\n  type = "header";\n  header = "Subject";\n'
            f'  regexp = true;\n  map = "{root}/local/spam-subjects.map";\n'
            '  score = 10.0;\n  description = "a spam subject of the tests";\n}\n'
        ),
        root / "local" / "spam-subjects.map": f"/{SPAM_SUBJECT}/\n",
        # nothing of the outside world: no network look-ups the test did not arrange
        local / "rbl.conf": "enabled = false;\n",
        local / "surbl.conf": "enabled = false;\n",
        local / "fuzzy_check.conf": "enabled = false;\n",
        local / "greylist.conf": "enabled = false;\n",
        local / "replies.conf": "enabled = false;\n",
        local / "neural.conf": "enabled = false;\n",
    }
    for path, text in files.items():
        path.write_text(text)
    os.system(f"chmod -R a+rwX {root}")
    args = [
        "rspamd", "-f", "-c", str(RSPAMD_CONF),
        f"--var=LOCAL_CONFDIR={root}/local", f"--var=DBDIR={root}/db",
        f"--var=RUNDIR={root}/run", f"--var=LOGDIR={root}/log",
    ]  # fmt: skip
    if os.geteuid() == 0:
        args += ["-u", "root", "-g", "root"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    inst = Rspamd(root, proxy, controller, password)
    try:
        for port in (proxy, controller, normal):
            _wait_port(port, proc, "rspamd", root / "log" / "rspamd.log", timeout=90)
        yield inst
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def _wait_port(
    port: int,
    proc: subprocess.Popen[bytes],
    what: str,
    log: Path | None = None,
    timeout: float = 30,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                said = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
                raise RuntimeError(f"{what} exited {proc.returncode}: {said}") from None
            time.sleep(0.1)
    raise TimeoutError(f"{what} did not listen on {port} within {timeout} s")


@dataclass
class SpamAssassin:
    milter: int  # spamass-milter's port
    hostname: str  # what X-Spam-Checker-Version says the mail was checked on

    @property
    def milter_address(self) -> str:
        return f"inet:127.0.0.1:{self.milter}"


def require_spamassassin() -> None:
    for program, package in (("spamd", "spamd"), ("spamc", "spamc"),
                             ("spamass-milter", "spamass-milter")):  # fmt: skip
        need(shutil.which(program) is not None, f"{program} is not installed (Debian {package})")


@contextmanager
def spamassassin(reject: float = 0) -> Iterator[SpamAssassin]:
    """spamd with Debian's shipped rules (local tests only: no network) and spamass-milter
    in front of it, as a site runs them; `reject`: spamass-milter -r (0: never)."""
    require_spamassassin()
    spamd_port, milter_port = free_port(), free_port()
    root = Path(tempfile.mkdtemp(prefix="otrs-mailgate-sa-", dir="/tmp"))
    site = root / "site"
    site.mkdir()
    for shipped in Path("/etc/spamassassin").glob("*.pre"):  # the plugins Debian loads
        shutil.copy(shipped, site)
    (site / "local.cf").write_text(
        f"header TEST_SPAM_SUBJECT Subject =~ /{SPAM_SUBJECT}/\n"
        "describe TEST_SPAM_SUBJECT a spam subject of the tests\n"
        "score TEST_SPAM_SUBJECT 10.0\n"
    )
    root.chmod(0o755)
    spamd = subprocess.Popen(
        ["spamd", f"--listen=127.0.0.1:{spamd_port}", "--max-children=2", "--nouser-config",
         "--local", "--syslog=stderr", "-u", "nobody", f"--pidfile={root}/spamd.pid",
         f"--siteconfigpath={site}"],
        stdout=subprocess.DEVNULL, stderr=(root / "spamd.log").open("wb"),
    )  # fmt: skip
    milter: subprocess.Popen[bytes] | None = None
    try:
        _wait_port(spamd_port, spamd, "spamd", root / "spamd.log", timeout=90)
        args = ["spamass-milter", "-p", f"inet:{milter_port}@127.0.0.1", "-m"]
        if reject:
            args += ["-r", str(int(reject))]
        args += ["--", "-d", "127.0.0.1", "-p", str(spamd_port)]
        milter = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(milter_port, milter, "spamass-milter")
        yield SpamAssassin(milter_port, socket.gethostname())
    finally:
        for proc in (milter, spamd):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(root, ignore_errors=True)
