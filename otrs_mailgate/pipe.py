"""The pipe entry for Postfix's pipe(8) transport: one message on stdin, a sysexits code out.

    0  stored (or already stored: a retry)      75 EX_TEMPFAIL: try again later
    65 EX_DATAERR: not a mail at all            67 EX_NOUSER: no queue has this address

Whatever goes wrong inside (database down or locked, a bug) is 75, so Postfix
keeps the message; the one line on stderr ends up in Postfix's log.
"""

from __future__ import annotations

import logging
import sys
from typing import BinaryIO

EX_OK, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL = 0, 65, 67, 75
MAX_SIZE = 100 * 1024 * 1024

log = logging.getLogger(__name__)


def deliver(
    config_path: str | None, stream: BinaryIO, recipient: str, sender: str | None
) -> tuple[int, str]:
    """Read, store, and return (exit code, one line for stderr/stdout)."""
    from .config import ConfigError, load

    raw = stream.read(MAX_SIZE + 1)
    if len(raw) > MAX_SIZE:
        return EX_DATAERR, f"message larger than {MAX_SIZE} bytes"
    try:
        config = load(config_path)
    except ConfigError as exc:  # never bounce mail because the config is broken
        return EX_TEMPFAIL, f"config error: {exc}"
    from .db import TemporaryFailure
    from .ingest import Pipeline, UnknownRecipient
    from .parse import NotAMail

    try:
        result = Pipeline(config).deliver_one(raw, recipient, sender)
    except NotAMail as exc:
        return EX_DATAERR, f"not a mail message: {exc}"
    except UnknownRecipient as exc:
        return EX_NOUSER, f"unknown recipient: {exc}"
    except TemporaryFailure as exc:
        return EX_TEMPFAIL, f"database unavailable, try again later: {exc}"
    except Exception as exc:
        log.exception("internal error while delivering")
        return EX_TEMPFAIL, f"internal error, try again later: {exc!r}"
    return EX_OK, f"{result.status}: ticket {result.ticket_number} article {result.article_id}"


def main(argv: list[str] | None = None) -> int:
    """`python -m otrs_mailgate.pipe RECIPIENT [SENDER]`, for bin/otrs-mailgate-pipe."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: otrs-mailgate-pipe RECIPIENT [SENDER]", file=sys.stderr)
        return EX_TEMPFAIL
    code, line = deliver(None, sys.stdin.buffer, args[0], args[1] if len(args) > 1 else None)
    print(line, file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
