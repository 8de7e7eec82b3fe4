"""Soak: 100,000 mails through Postfix into one `serve` on SQLite.

    python bench/soak.py [--mails 100000] [--first 10000] [--size 2048]

smtp-source sends the mails to a private Postfix instance (10 sessions), which hands
them to the daemon by LMTP.  smtp-source is one sender, so the daemon acknowledges its
first 10 mails (through Postfix again, to the discard transport) and then keeps to
the loop limit; bench/scaleout.py measures the outbox under volume.  Every two
seconds the script reads the daemon's resident and peak memory and its open file
descriptors from /proc.
Reported: peak memory after the first --first mails and at the end (goal: within
20%), file descriptors then and at the end (goal: no growth), the LMTP latency of
every delivery as the daemon logged it (end of DATA to its replies, the commit
included) and as Postfix logged it (the `d` of delays=a/b/c/d: the whole LMTP
transaction), median and 99th percentile.
Checks: every mail Postfix accepted is stored exactly once, and every
acknowledgement was sent.  Needs root, Postfix and smtp-source.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from lab import cli, free_port, latency_line, open_fds, peak_rss_mb, serve, status

from otrs_mailgate.config.schema import load

from postfix_helpers import instance, require_postfix, wait_for

HOT = "hotline@example.com"
# The `d` of a delivery to the daemon: the LMTP transaction, connection setup excluded.
POSTFIX_LMTP_DELAY = (
    r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*delays=[\d.]+/[\d.]+/[\d.]+/([\d.]+), .*status=sent"
)


def config_text(url: str, lmtp_port: int, smtp_port: int) -> str:
    return f"""
[system]
domain = "mailgate.test"
[database]
url = "{url}"
[lmtp]
port = {lmtp_port}
[milter]
enabled = false
[web]
port = {free_port()}
[smtp]
port = {smtp_port}
[[queue]]
name = "Hotline"
addresses = ["{HOT}"]
"""


@dataclass
class Sample:
    stored: int
    rss: float
    peak: float
    fds: int
    unsent: int  # acknowledgements waiting in the outbox


@dataclass
class Watch:
    """Samples of the daemon every two seconds, until stopped."""

    pid: int
    db: Path
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def stored(self) -> int:
        return self._count("SELECT count(*) FROM article")

    def unsent(self) -> int:
        return self._count("SELECT count(*) FROM outbox WHERE status != 'sent'")

    def _count(self, sql: str) -> int:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql).fetchone()[0]
        finally:
            conn.close()

    def run(self) -> None:
        while not self.stop.wait(2):
            self.samples.append(
                Sample(
                    self.stored(),
                    status(self.pid, "VmRSS"),
                    peak_rss_mb(self.pid),
                    open_fds(self.pid),
                    self.unsent(),
                )
            )

    def at(self, stored: int) -> Sample:
        return next(s for s in self.samples if s.stored >= stored)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mails", type=int, default=100_000)
    ap.add_argument("--first", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=2048)
    args = ap.parse_args()
    require_postfix()
    with tempfile.TemporaryDirectory(dir=".", prefix=".bench-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        db = tmp / "soak.sqlite"
        url = f"sqlite:///{db.resolve()}"
        cfg = tmp / "otrs-mailgate.toml"
        lmtp_port = free_port()
        cfg.write_text(config_text(url, lmtp_port, 25))
        cli(cfg, "init")
        discard = "customer.test\tdiscard:\n"  # the acknowledgements: accepted, then dropped
        with instance(load(cfg), ["@customer.test"], extra_transport=discard) as pf:
            cfg.write_text(config_text(url, lmtp_port, pf.port))
            log = tmp / "serve.log"
            daemon = serve(cfg, lmtp_port, log)
            watch = Watch(daemon.pid, db)
            sampler = threading.Thread(target=watch.run, daemon=True)
            sampler.start()
            started = time.perf_counter()
            try:
                subprocess.run(
                    ["smtp-source", "-s", "10", "-m", str(args.mails), "-l", str(args.size),
                     "-S", "Soak", "-f", "soak@customer.test", "-t", HOT, f"127.0.0.1:{pf.port}"],
                    check=True,
                )  # fmt: skip
                wait_for(lambda: watch.stored() >= args.mails, 7200, "every mail stored")
                elapsed = time.perf_counter() - started
                wait_for(lambda: watch.unsent() == 0, 1800, "every acknowledgement sent")
                pf.wait_queue_empty(1800)
                time.sleep(4)  # one more sample at the end
            finally:
                watch.stop.set()
                sampler.join()
                daemon.terminate()
                assert daemon.wait(60) == 0
            maillog = pf.log()
        report(args, watch, log.read_text(), maillog, elapsed, db)


def report(
    args: argparse.Namespace, watch: Watch, log: str, maillog: str, elapsed: float, db: Path
) -> None:
    accepted = re.findall(r"cleanup\[\d+\]: \w+: message-id=<([^>]+)>", maillog)
    mails = {m for m in accepted if not m.endswith("@mailgate.test")}  # not our own acks
    conn = sqlite3.connect(db)
    stored = [r[0] for r in conn.execute("SELECT message_id FROM article")]
    acks = dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
    conn.close()
    assert len(mails) == args.mails, f"Postfix accepted {len(mails)} of {args.mails}"
    assert len(stored) == len(set(stored)) == args.mails, "a mail stored twice or not at all"
    assert set(stored) == mails, "a mail Postfix accepted is not stored"
    # smtp-source is one sender: the loop limit (10 a day) stops its acknowledgements
    assert acks == {"sent": 10}, acks

    first, last = watch.at(args.first), watch.samples[-1]
    daemon_ms = [float(x) for x in re.findall(r" status=250 .* duration_ms=([\d.]+)", log)]
    postfix_s = re.findall(POSTFIX_LMTP_DELAY, maillog)
    print(f"soak: {args.mails} mails of {args.size} bytes through Postfix into one daemon, SQLite")
    rate = args.mails / elapsed
    print(f"  stored in {elapsed:.0f} s ({rate:.1f} mails/s), each once; {acks['sent']} acks sent")
    growth = (last.peak / first.peak - 1) * 100
    print(
        f"  peak RSS after {first.stored}: {first.peak:.1f} MB; after {last.stored}: "
        f"{last.peak:.1f} MB ({growth:+.1f}%, goal within 20%)"
    )
    print(f"  resident now: {first.rss:.1f} MB then, {last.rss:.1f} MB at the end")
    most = max(s.fds for s in watch.samples)
    print(f"  open fds after {first.stored}: {first.fds}; at the end: {last.fds}; most: {most}")
    print("  " + latency_line("LMTP latency, the daemon's log", daemon_ms))
    postfix_ms = [float(x) * 1000 for x in postfix_s]
    print("  " + latency_line("LMTP latency, Postfix's delays d", postfix_ms))
    tenth = max(1, len(watch.samples) // 10)
    backlog = max(s.unsent for s in watch.samples)
    print(f"  acknowledgements waiting in the outbox: at most {backlog} while mail came in")
    print("  over the run (stored: RSS MB / fds / acks waiting):")
    print(
        "   "
        + ", ".join(f"{s.stored}: {s.rss:.0f}/{s.fds}/{s.unsent}" for s in watch.samples[::tenth])
    )


if __name__ == "__main__":
    main()
