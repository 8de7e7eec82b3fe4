"""The pipe entry's cost a mail: bin/otrs-mailgate-pipe as Postfix's pipe(8) runs it, one
process a mail, with `serve` running (the thin client hands the mail over LMTP) and,
for comparison, an interpreter that only starts and exits (the floor of any pipe
command written in Python).

    python bench/pipe.py [--mails 50]

Goal (issue 21): <= 50 ms a mail through the daemon on this machine.
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
from lab import cli, free_port, serve

ROOT = Path(__file__).resolve().parents[1]


def mail(i: int) -> bytes:
    return (
        f"From: c{i}@customer.test\nTo: hotline@example.com\nSubject: pipe {i}\n"
        f"Message-ID: <pipe{i}.{os.getpid()}@customer.test>\n\n" + "x" * 2000 + "\n"
    ).encode()


def run(args: list[str], data: bytes, env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of the child, exit status."""
    before = os.times()
    started = time.perf_counter()
    proc = subprocess.run(args, input=data, env=env, capture_output=True)
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mails", type=int, default=50)
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(dir=".", prefix=".bench-"))
        port = free_port()
        cfg = Path(tmp) / "bench.toml"
        cfg.write_text(
            f'[system]\ndomain = "mailgate.test"\n[database]\nurl = "sqlite:///{tmp}/p.sqlite"\n'
            f"[lmtp]\nport = {port}\n[smtp]\nport = {free_port()}\n"
            f"[milter]\nport = {free_port()}\n[web]\nport = {free_port()}\n"
            '[[queue]]\nname = "Hotline"\naddresses = ["hotline@example.com"]\n'
        )
        cli(cfg, "init")
        daemon = serve(cfg, port, Path(tmp) / "serve.log")

        def stop() -> None:
            daemon.terminate()
            daemon.wait(60)

        stack.callback(stop)
        env = dict(os.environ, OTRS_MAILGATE_CONFIG=str(cfg), OTRS_MAILGATE_PYTHON=sys.executable)
        pipe = [str(ROOT / "bin" / "otrs-mailgate-pipe"), "hotline@example.com", "c@customer.test"]
        floor = [sys.executable, "-c", "pass"]
        rows = {"pipe, through serve": [], "python -c pass": []}
        for i in range(args.mails):
            wall, cpu, code = run(pipe, mail(i), env)
            assert code == 0, f"the pipe entry answered {code}"
            rows["pipe, through serve"].append((wall, cpu))
            rows["python -c pass"].append(run(floor, b"", env)[:2])
    print(f"pipe entry, {args.mails} mails, one process each (as pipe(8) runs it)")
    for what, values in rows.items():
        walls = sorted(w for w, _ in values)
        cpus = [c for _, c in values]
        print(
            f"  {what:22} median {walls[len(walls) // 2] * 1000:6.1f} ms wall, "
            f"{sum(cpus) / len(cpus) * 1000:6.1f} ms CPU a mail"
        )


if __name__ == "__main__":
    main()
