"""The pipe entry for Postfix's pipe(8) transport: one message on stdin, a sysexits code out.

    0  stored (or already stored: a retry)      75 EX_TEMPFAIL: try again later
    65 EX_DATAERR: not a mail at all            67 EX_NOUSER: no queue has this address

A thin client first: when the daemon answers on its LMTP address, the message is
handed to it with the standard library only (smtplib), and its reply becomes the
exit code; SQLAlchemy and friends are imported only when no daemon runs and the
mail is stored here.  Whatever goes wrong inside (database down or locked, a
bug) is 75, so Postfix keeps the message; the one line on stderr ends up in
Postfix's log.
"""

from __future__ import annotations

import logging
import sys
from typing import BinaryIO

from otrs_mailgate.entry import outcomes
from otrs_mailgate.entry.outcomes import EX_DATAERR, EX_OK, EX_TEMPFAIL
from otrs_mailgate.mail import wire

__all__ = ["EX_DATAERR", "EX_OK", "EX_TEMPFAIL", "deliver", "forward", "main"]
MAX_SIZE = 100 * 1024 * 1024

log = logging.getLogger(__name__)


def forward(
    raw: bytes, recipient: str, sender: str | None, address: tuple[str, int, str]
) -> tuple[int, str] | None:
    """Hand the message to the running daemon; None when no daemon listens."""
    import smtplib

    host, port, socket_path = address
    try:
        client = smtplib.LMTP(socket_path) if socket_path else smtplib.LMTP(host, port)
    except OSError:
        return None
    try:
        client.ehlo()
        # LMTP wants CRLF lines; smtplib dot-stuffs them and ends the data. The daemon
        # stores this same canonical form whichever way a mail comes, and takes lines of
        # any length from its local clients, so nothing is lost or changed on the way.
        code, text = client.mail(sender or "")
        if code == 250:
            code, text = client.rcpt(recipient)
        if code in (250, 251):
            code, text = client.data(wire.canonical(raw))
        client.quit()
    except (OSError, smtplib.SMTPException) as exc:
        # The daemon may or may not have committed: Postfix retries, and the
        # retry is recognised as a duplicate if it had.
        return EX_TEMPFAIL, f"daemon connection lost, try again later: {exc}"
    return outcomes.from_reply(code, text.decode("utf-8", "replace"))


def deliver(
    config_path: str | None,
    stream: BinaryIO,
    recipient: str,
    sender: str | None,
    *,
    via_daemon: bool = True,
) -> tuple[int, str]:
    """Read, forward or store, and return (exit code, one line for stderr/stdout)."""
    raw = stream.read(MAX_SIZE + 1)
    if len(raw) > MAX_SIZE:
        return EX_DATAERR, f"message larger than {MAX_SIZE} bytes"
    if via_daemon:
        from otrs_mailgate.config import locate as configfile

        try:
            address = configfile.lmtp_address(config_path)
        except (OSError, ValueError) as exc:  # broken file: config.load says it properly
            address = None
            log.debug("no LMTP address: %s", exc)
        forwarded = forward(raw, recipient, sender, address) if address else None
        if forwarded is not None:
            return forwarded
    from otrs_mailgate.config.schema import ConfigError, load

    try:
        config = load(config_path)
    except ConfigError as exc:  # never bounce mail because the config is broken
        return EX_TEMPFAIL, f"config error: {exc}"
    from otrs_mailgate.ingest.pipeline import Pipeline  # only here: SQLAlchemy is slow to load

    try:
        pipeline = Pipeline(config)
        try:
            return outcomes.sysexit(pipeline.deliver(raw, recipient, sender))
        finally:
            pipeline.engine.dispose()
    except Exception as exc:
        log.exception("internal error while delivering")
        return EX_TEMPFAIL, f"internal error, try again later: {exc!r}"


def guarded(
    config_path: str | None,
    stream: BinaryIO,
    recipient: str,
    sender: str | None,
    *,
    via_daemon: bool = True,
) -> tuple[int, str]:
    """deliver, where anything unforeseen (a bug, a library missing) is 75: Postfix
    keeps the mail and tries again; it never bounces because of us."""
    try:
        return deliver(config_path, stream, recipient, sender, via_daemon=via_daemon)
    except Exception as exc:
        log.exception("internal error in the pipe entry")
        return EX_TEMPFAIL, f"internal error, try again later: {exc!r}"


def main(argv: list[str] | None = None) -> int:
    """`python -m otrs_mailgate.entry.pipe RECIPIENT [SENDER]`, for bin/otrs-mailgate-pipe."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: otrs-mailgate-pipe RECIPIENT [SENDER]", file=sys.stderr)
        return EX_TEMPFAIL
    code, line = guarded(None, sys.stdin.buffer, args[0], args[1] if len(args) > 1 else None)
    print(line, file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
