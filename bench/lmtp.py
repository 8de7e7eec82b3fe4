"""LMTP throughput: `otrs-mailgate serve` against a do-nothing aiosmtpd LMTP server.

    python bench/lmtp.py [--mails 10000] [--db sqlite|PG-ADMIN-URL] [--sizes 2048,51200]
                         [--sessions 1,10] [--memory 100000]

smtp-source (Debian package postfix) sends the mails with -L (LMTP), one run per
(size, sessions) pair against each server, in this script, one after the other.
The daemon runs its full pipeline, acknowledgements included, with smtp-sink as
the MTA its outbox sends to; its CPU time per mail (from /proc, read 3 s after a
run so the acknowledgements sent meanwhile count) is steadier than mails/s on a
shared machine.  --memory N also sends N mails in one go and reports
the daemon's peak RSS after the first 10,000 and at the end (goal: within 20%).
Goal (issue 3): at 10 sessions the daemon reaches 60% of the baseline's mails/s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import scratch_databases
from lab import cli, cpu_seconds, free_port, peak_rss_mb, serve, wait_listening

HERE = Path(__file__).resolve().parent
SETTLE = 3.0  # seconds after a run before the daemon's CPU time is read


def smtp_source(port: int, mails: int, size: int, sessions: int) -> float:
    """Mails per second for one smtp-source -L run."""
    started = time.perf_counter()
    subprocess.run(
        [
            "smtp-source",
            "-L",
            "-s",
            str(sessions),
            "-m",
            str(mails),
            "-l",
            str(size),
            "-f",
            "bench@customer.test",
            "-t",
            "hotline@example.com",
            f"127.0.0.1:{port}",
        ],
        check=True,
    )
    return mails / (time.perf_counter() - started)


def start_daemon(tmp: str, url: str, sink_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cfg = Path(tmp) / "bench.toml"
    cfg.write_text(
        f'[system]\ndomain = "mailgate.test"\n[database]\nurl = "{url}"\n'
        f"[lmtp]\nport = {port}\n[smtp]\nport = {sink_port}\n"
        '[[queue]]\nname = "Hotline"\naddresses = ["hotline@example.com"]\n'
    )
    cli(cfg, "init")
    return serve(cfg, port, Path(tmp) / "serve.log"), port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mails", type=int, default=10_000)
    ap.add_argument("--db", default="sqlite")
    ap.add_argument("--sizes", default="2048,51200")
    ap.add_argument("--sessions", default="1,10")
    ap.add_argument("--memory", type=int, default=0, help="also a long run of N mails")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    sessions = [int(x) for x in args.sessions.split(",")]

    sink_port = free_port()
    user = ["-u", "postfix"] if os.geteuid() == 0 else []  # smtp-sink drops root
    sink = subprocess.Popen(
        ["smtp-sink", *user, "-c", f"127.0.0.1:{sink_port}", "100"], stdout=subprocess.DEVNULL
    )
    null_port = free_port()
    null = subprocess.Popen(
        [sys.executable, str(HERE / "null_lmtp.py"), str(null_port)], stdout=subprocess.DEVNULL
    )
    wait_listening(null_port, null)
    kind = "sqlite" if args.db == "sqlite" else "postgresql"
    rows = []
    with (
        tempfile.TemporaryDirectory(dir=".", prefix=".bench-") as tmp,
        scratch_databases(args.db, tmp) as urls,
    ):
        url = urls[1] if kind == "postgresql" else f"sqlite:///{tmp}/serve.sqlite"
        daemon, port = start_daemon(tmp, url, sink_port)
        try:
            for size in sizes:
                for s in sessions:
                    base = smtp_source(null_port, args.mails, size, s)
                    before = cpu_seconds(daemon.pid)
                    full = smtp_source(port, args.mails, size, s)
                    time.sleep(SETTLE)  # the acknowledgements still going out count too
                    cpu_ms = (cpu_seconds(daemon.pid) - before) / args.mails * 1000
                    rows.append((size, s, base, full, cpu_ms))
                    print(
                        f"  {kind:10} {size:6d} B {s:3d} sessions: baseline {base:8.1f}/s, "
                        f"serve {full:8.1f}/s, ratio {full / base:.2f}, "
                        f"daemon CPU {cpu_ms:.2f} ms a mail",
                        flush=True,
                    )
            if args.memory:
                first = min(10_000, args.memory)
                smtp_source(port, first, 2048, 10)
                at_first = peak_rss_mb(daemon.pid)
                smtp_source(port, args.memory - first, 2048, 10)
                at_end = peak_rss_mb(daemon.pid)
                print(
                    f"  peak RSS after {first} more mails: {at_first:.1f} MB; after "
                    f"{args.memory}: {at_end:.1f} MB ({(at_end / at_first - 1) * 100:+.1f}%)"
                )
        finally:
            daemon.terminate()
            daemon.wait(60)
    null.terminate()
    sink.terminate()
    print(f"LMTP benchmark, {args.mails} mails per run, smtp-source -L, {kind}")
    print("  size  sessions  baseline/s  serve/s  ratio  daemon CPU ms/mail")
    for size, s, base, full, cpu_ms in rows:
        print(f"  {size:6d} {s:6d}  {base:10.1f} {full:8.1f}  {full / base:5.2f}  {cpu_ms:8.2f}")


if __name__ == "__main__":
    main()
