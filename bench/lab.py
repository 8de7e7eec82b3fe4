"""What the benchmarks share: ports, the daemon as a process, and what /proc says of it."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# One port picker for the tests and the benchmarks (re-exported from here).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from lmtp_helpers import free_port as free_port

CLI = [sys.executable, "-m", "otrs_mailgate.admin.cli"]


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}") from None
            time.sleep(0.05)
    raise SystemExit("server did not start")


def cli(config: Path, *args: str) -> None:
    """One `otrs-mailgate` command with this config; its output is not wanted."""
    env = dict(os.environ, OTRS_MAILGATE_CONFIG=str(config))
    subprocess.run([*CLI, *args], env=env, check=True, stdout=subprocess.DEVNULL)


def serve(
    config: Path,
    port: int,
    log: Path,
    env: Mapping[str, str] | None = None,
    args: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    """`otrs-mailgate serve` with this config (and OTRS_MAILGATE_* overrides, and more
    arguments), once it listens on its LMTP port; its log goes to `log`."""
    full = dict(os.environ, OTRS_MAILGATE_CONFIG=str(config), **(env or {}))
    with open(log, "ab") as out:
        proc = subprocess.Popen([*CLI, "serve", *(args or [])], env=full, stderr=out)
    wait_listening(port, proc)
    return proc


def status(pid: int, key: str) -> float:
    """A size from /proc/PID/status (VmHWM: peak RSS, VmRSS: now), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb(pid: int) -> float:
    return status(pid, "VmHWM")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def latency_line(what: str, values_ms: list[float]) -> str:
    """Median, 99th percentile and worst of a set of latencies, as one line."""
    cuts = statistics.quantiles(values_ms, n=100, method="inclusive")
    return (
        f"{what}: {len(values_ms)} deliveries, median {statistics.median(values_ms):.1f} ms, "
        f"p99 {cuts[98]:.1f} ms, worst {max(values_ms):.1f} ms"
    )


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MachineLoad:
    """How busy all the machine's cores were between start() and busy()."""

    def start(self) -> None:
        self._then = self._times()

    def busy(self) -> float:
        now = self._times()
        total = sum(now) - sum(self._then)
        idle = (now[3] + now[4]) - (self._then[3] + self._then[4])
        return 1 - idle / total if total else 0.0

    @staticmethod
    def _times() -> list[int]:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def cpu_of(command: str) -> float:
    """CPU seconds of every process whose name is `command` (e.g. all of PostgreSQL's
    backends and helpers), those alive now."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == command:
                total += cpu_seconds(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


EXAMPLE = Path(__file__).resolve().parents[1] / "otrs-mailgate.toml.example"


def settings(source: Path | None, url: str, tmp: Path, **ports: int) -> dict[str, Any]:
    """What a benchmark runs with: `source` (the shipped example, as issue 31 asks: a
    bare configuration hides what real users pay) with this run's database, ports and
    key paths, and every queue acknowledging every sender (the benchmark's senders are
    not authenticated, and a held answer would send nothing); None: the bare
    configuration (one queue, no filters, no SLA), the second figure."""
    if source is None:
        data: dict[str, Any] = {
            "system": {"domain": "mailgate.test"},
            "queue": [{"name": "Hotline", "addresses": ["hotline@example.com"]}],
        }
    else:
        data = tomllib.loads(source.read_text())
    data.setdefault("database", {})["url"] = url
    for section, port in ports.items():  # lmtp=..., smtp=..., milter=..., web=...
        data.setdefault(section, {}).update({"host": "127.0.0.1", "port": port})
    data.setdefault("crypto", {}).update(
        {"key_dir": str(tmp / "keys"), "passphrase_file": str(tmp / "passphrases")}
    )
    data.setdefault("dkim", {})["key_file"] = ""
    for queue in data["queue"]:
        queue["acknowledge"] = "always"
    return data


def write_settings(path: Path, data: dict[str, Any]) -> Path:
    import tomlkit

    path.write_text(tomlkit.dumps(data))
    return path
