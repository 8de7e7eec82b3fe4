"""The service manager's notify protocol (sd_notify(3)), spoken without libsystemd.

`Type=notify` units learn from these datagrams that the daemon is ready (READY=1 once
every socket listens and the database answered), what it is doing (STATUS=), that it
reloads (RELOADING=1 with MONOTONIC_USEC=, then READY=1) or stops (STOPPING=1), and
that its event loop still turns (WATCHDOG=1, sent by the loop itself, so a loop stuck
in a call is restarted).  Without $NOTIFY_SOCKET (a shell, a test) every call is a
no-op.  `serve --workers N` is one service: only the parent speaks, as MAINPID.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET", "")
        if self.address.startswith("@"):  # an abstract socket
            self.address = "\0" + self.address[1:]
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog = int(usec) / 1e6 if usec.isdigit() and mine else 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *lines: str) -> bool:
        """One datagram of NAME=value lines; whether it went."""
        if not self.address:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.connect(self.address)
                sock.sendall("\n".join(lines).encode())
            except OSError:
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the config")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping: finishing deliveries in flight")

    def ping(self) -> bool:
        return self.send("WATCHDOG=1")
