"""LMTP throughput: `otrs-mailgate serve` against a do-nothing LMTP server.

    python bench/lmtp.py [--mails 10000] [--db sqlite|PG-ADMIN-URL] [--sizes 2048,51200]
                         [--sessions 1,10] [--modes new,reuse] [--workers N]
                         [--memory 100000]

smtp-source (Debian package postfix) sends the mails with -L (LMTP), one run per
(size, sessions, mode) against each server, in this script, one after the other:
mode `new` opens a connection per mail, `reuse` (-d) keeps it, as Postfix's LMTP
client caches connections.  The do-nothing server is serve's own LMTP server with a
handler that does nothing (bench/null_lmtp.py); its CPU time per mail is printed too.
Every server gets free ports (LMTP, milter, status page, smtp-sink), and every
process this script starts is stopped on every way out of it.
The daemon runs its full pipeline, acknowledgements included, with smtp-sink as
the MTA its outbox sends to; its CPU time per mail (from /proc, read 3 s after a
run so the acknowledgements sent meanwhile count) is steadier than mails/s on a
shared machine.  --memory N also sends N mails in one go and reports
the daemon's peak RSS after the first 10,000 and at the end (goal: within 20%).
Goal (issue 3): at 10 sessions the daemon reaches 60% of the baseline's mails/s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import scratch_databases
from lab import (
    EXAMPLE,
    cli,
    cpu_of,
    cpu_seconds,
    free_port,
    peak_rss_mb,
    serve,
    settings,
    wait_listening,
    write_settings,
)

HERE = Path(__file__).resolve().parent
SETTLE = 3.0  # seconds after a run before the daemon's CPU time is read


def smtp_source(port: int, mails: int, size: int, sessions: int, reuse: bool = False) -> float:
    """Mails per second for one smtp-source -L run (-d: one connection per session)."""
    started = time.perf_counter()
    subprocess.run(
        [
            "smtp-source",
            "-L",
            *(["-d"] if reuse else []),
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


def start_daemon(
    tmp: str, url: str, sink_port: int, workers: int = 1, source: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """serve with `source` made this run's (lab.settings; None: the bare config)."""
    port = free_port()
    here = Path(tmp) / ("example" if source else "bare")
    here.mkdir()
    data = settings(
        source, url, here, lmtp=port, smtp=sink_port, milter=free_port(), web=free_port()
    )
    cfg = write_settings(here / "bench.toml", data)
    cli(cfg, "init")
    extra = ["--workers", str(workers)] if workers > 1 else []
    return serve(cfg, port, here / "serve.log", args=extra), port


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this script started, whatever state it is in."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children now alive (serve --workers forks)."""
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task").iterdir():
        children = child / "children"
        if children.exists():
            for kid in children.read_text().split():
                total += cpu_seconds(int(kid))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mails", type=int, default=10_000)
    ap.add_argument("--db", default="sqlite")
    ap.add_argument("--sizes", default="2048,51200")
    ap.add_argument("--sessions", default="1,10")
    ap.add_argument("--modes", default="new,reuse", help="new: a connection per mail; reuse")
    ap.add_argument("--workers", type=int, default=1, help="serve --workers N")
    ap.add_argument("--memory", type=int, default=0, help="also a long run of N mails")
    ap.add_argument(
        "--config", type=Path, default=EXAMPLE,
        help="the configuration measured (default: the shipped example); the bare one follows",
    )  # fmt: skip
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    sessions = [int(x) for x in args.sessions.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    kind = "sqlite" if args.db == "sqlite" else "postgresql"
    rows = []
    with contextlib.ExitStack() as stack:
        sink_port = free_port()
        user = ["-u", "postfix"] if os.geteuid() == 0 else []  # smtp-sink drops root
        sink = subprocess.Popen(
            ["smtp-sink", *user, "-c", f"127.0.0.1:{sink_port}", "100"], stdout=subprocess.DEVNULL
        )
        stack.callback(stop, sink)
        null_port = free_port()
        null = subprocess.Popen(
            [sys.executable, str(HERE / "null_lmtp.py"), str(null_port)], stdout=subprocess.DEVNULL
        )
        stack.callback(stop, null)
        wait_listening(null_port, null)
        tmp = stack.enter_context(tempfile.TemporaryDirectory(dir=".", prefix=".bench-"))
        urls = stack.enter_context(scratch_databases(args.db, tmp))
        daemons = {}
        for label, source, n in (("example", args.config, 1), ("bare", None, 0)):
            url = urls[n] if kind == "postgresql" else f"sqlite:///{tmp}/{label}.sqlite"
            daemons[label] = start_daemon(tmp, url, sink_port, args.workers, source)
            stack.callback(stop, daemons[label][0])  # stopped before the database goes
        for size in sizes:
            for s in sessions:
                for mode in modes:
                    reuse = mode == "reuse"
                    null_before = cpu_seconds(null.pid)
                    base = smtp_source(null_port, args.mails, size, s, reuse)
                    null_ms = (cpu_seconds(null.pid) - null_before) / args.mails * 1000
                    for label, (daemon, port) in daemons.items():
                        before, db_before = tree_cpu(daemon.pid), cpu_of("postgres")
                        full = smtp_source(port, args.mails, size, s, reuse)
                        time.sleep(SETTLE)  # the acknowledgements still going out count too
                        cpu_ms = (tree_cpu(daemon.pid) - before) / args.mails * 1000
                        db_ms = (cpu_of("postgres") - db_before) / args.mails * 1000
                        rows.append((label, size, s, mode, base, full, null_ms, cpu_ms, db_ms))
                        print(
                            f"  {kind:10} {label:7} {size:6d} B {s:3d} sessions {mode:5}: "
                            f"baseline {base:8.1f}/s ({null_ms:.2f} ms CPU), serve {full:8.1f}/s"
                            f", ratio {full / base:.2f}, daemon CPU {cpu_ms:.2f} ms a mail"
                            + (f", PostgreSQL CPU {db_ms:.2f} ms" if kind == "postgresql" else ""),
                            flush=True,
                        )
        daemon, port = daemons["example"]
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
    workers = f", serve --workers {args.workers}" if args.workers > 1 else ""
    print(f"LMTP benchmark, {args.mails} mails per run, smtp-source -L, {kind}{workers}")
    print(f"  example: {args.config.name} (every queue acknowledging); bare: one queue, no SLA")
    print(
        "  config   size  sessions  mode   baseline/s  serve/s  ratio  null CPU ms"
        "  daemon CPU ms/mail  PostgreSQL CPU ms/mail"
    )
    for label, size, s, mode, base, full, null_ms, cpu_ms, db_ms in rows:
        print(
            f"  {label:7} {size:6d} {s:6d}  {mode:5} {base:10.1f} {full:8.1f}  {full / base:5.2f}"
            f"  {null_ms:10.2f}  {cpu_ms:8.2f}  {db_ms if kind == 'postgresql' else 0:8.2f}"
        )


if __name__ == "__main__":
    main()
