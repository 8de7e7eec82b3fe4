"""The do-nothing baseline: an LMTP server that answers 250 per recipient and stores
nothing.  Only for bench/lmtp.py; the product has no such mode.

It is `serve`'s own LMTP server (entry/lmtp.py: the same aiosmtpd subclass, greeting
name, size and line limits, SMTPUTF8) with a handler that does nothing, so a ratio
against it measures our pipeline and nothing else.  (It used to be a bare aiosmtpd
LMTP without a server name: aiosmtpd then calls socket.getfqdn() on every connection,
which made the baseline about 10% slower and every ratio too kind.)

    python bench/null_lmtp.py PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from otrs_mailgate.entry.lmtp import controller


class Null:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "\r\n".join("250 2.0.0 OK" for _ in envelope.rcpt_tos)


def main() -> None:
    loop = asyncio.new_event_loop()
    ctl = controller(
        Null(),  # type: ignore[arg-type]
        loop,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        socket="",
        max_size=25 * 1024 * 1024,  # serve's default [lmtp] max_message_size
        server_name="mailgate.test",
    )
    ctl.begin()
    print("ready", flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
