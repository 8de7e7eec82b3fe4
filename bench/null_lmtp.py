"""The do-nothing baseline: a plain aiosmtpd LMTP server that answers 250 per recipient
and stores nothing.  Only for bench/lmtp.py; the product has no such mode.

    python bench/null_lmtp.py PORT
"""

from __future__ import annotations

import asyncio
import sys

from aiosmtpd.controller import UnthreadedController
from aiosmtpd.lmtp import LMTP


class Null:
    async def handle_DATA(self, server, session, envelope) -> str:
        return "\r\n".join("250 2.0.0 OK" for _ in envelope.rcpt_tos)


class _Controller(UnthreadedController):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


def main() -> None:
    loop = asyncio.new_event_loop()
    ctl = _Controller(
        Null(),
        hostname="127.0.0.1",
        port=int(sys.argv[1]),
        loop=loop,
        data_size_limit=None,
        decode_data=False,
    )
    ctl.begin()
    print("ready", flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
