"""Memory for big mail: `otrs-mailgate serve`'s peak RSS while big mails arrive at once.

    python bench/bigmail.py [--mails 10] [--mb 25] [--db sqlite|PG-ADMIN-URL]
                            [--config otrs-mailgate.toml.example]

Runs serve with the shipped example configuration (its queues, filters and SLAs; the
database, ports and sizes overridden by environment), sends one small mail to warm
it up, and reads its resident memory (the base). Then --mails LMTP sessions at once
each deliver a mail of --mb megabytes (a PDF-like attachment, base64: the bytes in
flight are the encoded size), and the peak RSS (VmHWM) is read: goal (issue 28) base +
2x the bytes in flight at most, and under 1 GB for 10 mails of 25 MB. Then the peak is
reset (/proc/PID/clear_refs) and a mail of 100 MB is sent against the 25 MB limit:
refused with 552, without the daemon reading it whole (goal: the peak grows by less
than the limit). Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import scratch_databases
from lab import cli, free_port, peak_rss_mb, serve, status

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "otrs-mailgate.toml.example"


def big_mail(size: int, n: int) -> bytes:
    """A mail of about `size` bytes: a short text and one base64 attachment."""
    raw_size = size * 3 // 4
    payload = base64.encodebytes(os.urandom(raw_size))  # 76-character lines, as mailers do
    head = (
        f"From: Big Sender <big{n}@customer.test>\r\nTo: hotline@example.com\r\n"
        f"Subject: Scan {n}\r\nMessage-ID: <big{n}.{time.time_ns()}@customer.test>\r\n"
        "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe scan is attached.\r\n"
        '--b\r\nContent-Type: application/pdf; name="scan.pdf"\r\n'
        'Content-Disposition: attachment; filename="scan.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    return head + payload.replace(b"\n", b"\r\n") + b"--b--\r\n"


def deliver(port: int, raw: bytes, results: list[str], size: bool = True) -> None:
    """One LMTP delivery; size=False leaves SIZE= out of MAIL FROM, so the daemon learns
    the size only from the data (as from a client that does not say it)."""
    try:
        with smtplib.LMTP("127.0.0.1", port, timeout=600) as lmtp:
            lmtp.ehlo()
            if not size:
                lmtp.esmtp_features.pop("size", None)
            refused = lmtp.sendmail("big@customer.test", ["hotline@example.com"], raw)
            results.append("250" if not refused else str(refused))
    except smtplib.SMTPResponseException as exc:
        results.append(f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace')}")
    except smtplib.SMTPException as exc:
        results.append(f"error: {exc}")


def run(config: Path, url: str, mails: int, mb: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bigmail-") as tmp:
        port = free_port()
        limit = int(mb * 1024 * 1024 * 1.05) + 64 * 1024  # the mails with their line ends
        env = {
            "OTRS_MAILGATE_DATABASE_URL": url,
            "OTRS_MAILGATE_LMTP_PORT": str(port),
            "OTRS_MAILGATE_LMTP_MAX_MESSAGE_SIZE": str(limit),
            "OTRS_MAILGATE_MILTER_PORT": str(free_port()),
            "OTRS_MAILGATE_WEB_PORT": str(free_port()),
            "OTRS_MAILGATE_SMTP_PORT": str(free_port()),  # nobody listens: mail waits
            "OTRS_MAILGATE_SYSTEM_AUDIT_KEYS": f"{tmp}/audit.keys",
        }
        os.environ.update(env)
        cli(config, "init")
        proc = serve(config, port, Path(tmp) / "serve.log", env=env)
        try:
            warm: list[str] = []
            deliver(port, big_mail(20_000, 0), warm)
            time.sleep(1)
            base = status(proc.pid, "VmRSS")
            size = len(big_mail(mb * 1024 * 1024, 0))
            bodies = [big_mail(mb * 1024 * 1024, n) for n in range(1, mails + 1)]
            results: list[str] = []
            threads = [
                threading.Thread(target=deliver, args=(port, raw, results)) for raw in bodies
            ]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.perf_counter() - started
            peak = peak_rss_mb(proc.pid)
            after = status(proc.pid, "VmRSS")
            flight = mails * size / 1024 / 1024
            print(
                f"{mails} concurrent mails of {size / 1024 / 1024:.1f} MB ({flight:.0f} MB in "
                f"flight) in {took:.1f} s: {results.count('250')} stored {sorted(set(results))}"
            )
            print(
                f"  RSS base {base:.0f} MB, peak {peak:.0f} MB (+{peak - base:.0f} MB = "
                f"{(peak - base) / flight:.2f}x the bytes in flight; goal <= 2x and < 1024 MB), "
                f"after {after:.0f} MB"
            )
            del bodies
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # the peak starts again
            before = status(proc.pid, "VmRSS")
            huge = big_mail(100 * 1024 * 1024, 999)
            answer: list[str] = []
            deliver(port, huge, answer, size=False)
            grown = peak_rss_mb(proc.pid) - before
            print(
                f"a {len(huge) / 1024 / 1024:.0f} MB mail against the {limit / 1024 / 1024:.0f} "
                f"MB limit: {answer[0][:60]!r}; peak grew {grown:.0f} MB (goal: at most the limit)"
            )
        finally:
            proc.terminate()
            with contextlib.suppress(Exception):
                proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, default=10)
    parser.add_argument("--mb", type=int, default=25)
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--config", type=Path, default=EXAMPLE)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bigmail-db-") as tmp,
        scratch_databases(args.db, tmp) as urls,
    ):
        run(args.config.resolve(), urls[0], args.mails, args.mb)


if __name__ == "__main__":
    main()
