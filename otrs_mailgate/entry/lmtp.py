"""The LMTP entry: aiosmtpd's LMTP protocol in front of the group committer.

RFC 2033 wants one reply per accepted recipient after DATA, always.  aiosmtpd
sends one reply for the whole message, also for its own errors (too much data,
line too long); LMTPServer repeats those per recipient, and the handler answers
each recipient from the committed outcome.  Nothing here raises into aiosmtpd,
whose fallback would be a single 500.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from email._header_value_parser import get_addr_spec, get_angle_addr
from typing import Any, AnyStr

from aiosmtpd.controller import UnixSocketUnthreadedController, UnthreadedController
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, Session
from aiosmtpd.smtp import Envelope as SMTPEnvelope

from otrs_mailgate.entry import outcomes
from otrs_mailgate.entry.committer import GroupCommitter
from otrs_mailgate.metrics import Metrics

log = logging.getLogger("otrs_mailgate.entry.lmtp")
# The session's read buffer: a line longer than this is read in pieces (any length is
# taken), and the socket stops being read while twice this waits, so a sender faster
# than we store holds at most that much here, not a whole mail (issue 28).
READ_LIMIT = 1 << 20
_QUEUE_ID = re.compile(rb"^Received:[^\n]*(?:\n[ \t][^\n]*)*?\bid ([0-9A-Za-z]+)", re.MULTILINE)
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^>\r\n]*)>", re.MULTILINE | re.IGNORECASE)


class LMTPServer(LMTP):
    """aiosmtpd's LMTP, with its own post-DATA errors answered once per recipient.

    Lines may be as long as a whole message: the clients are the local MTA (Postfix
    told not to fold long lines, `postfix-config`) and the pipe client, and a line
    they carry must arrive as it was, not as "500 Line too long" (RFC 5321's 1,000
    octets bind SMTP relays, not our own hand-over)."""

    def __init__(self, *args: Any, line_length_limit: int = 0, **kwargs: Any) -> None:
        if line_length_limit:
            self.line_length_limit = line_length_limit  # before aiosmtpd sizes its reader
        super().__init__(*args, **kwargs)
        self._data_recipients = 0
        self.handled = False

    # aiosmtpd's SMTP.__init__ runs inspect.getmembers() over the session and the
    # handler on every connection, evaluating every attribute, to find the smtp_,
    # auth_ and handle_ methods (about half of its 150 us); dir() is all it asks, so
    # the session answers with those names, found once per class.
    def __dir__(self) -> list[str]:
        return _method_names(type(self), ("smtp_", "auth_"))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's parse of a MAIL or RCPT address, without the typing.Protocol class
        it defines anew on every call, and a plain `<local@domain>` read by a regex
        before the full RFC 5322 parser (80 us a call upstream); same answers."""
        if not arg:
            return "", ""
        simple = _SIMPLE_PATH.match(arg)  # <dot-atom@domain> params: what Postfix sends
        if simple is not None:
            addr, rest = simple.group(1), simple.group(2) or ""
        else:
            try:
                parse = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
                address, rest = parse(arg)
                addr = address.addr_spec
            except Exception:  # HeaderParseError, and what the stdlib parser trips on
                return None, None
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest
        try:
            if arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
            addr = address.addr_spec
        except Exception:  # HeaderParseError, and what the stdlib parser trips on in garbage
            return None, None
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest

    async def smtp_DATA(self, arg: str) -> None:
        self._data_recipients = len(self.envelope.rcpt_tos) if self.envelope else 0
        self.handled = False  # the handler answered (and counted) this message itself
        try:
            await self._data(arg)
        finally:
            self._data_recipients = 0

    async def _data(self, arg: str) -> None:
        """aiosmtpd's DATA, with the message read into one growing buffer instead of a
        bytearray per line joined at the end (issue 28: that held about three times a
        big mail's size per session); the same replies, limits and dot-unstuffing."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        buf = bytearray()
        limit = self.data_size_limit
        size, state, line_start = 0, "", True  # state: "" | "long" | "much"
        while self.transport is not None:
            try:
                line: bytes = await self._reader.readuntil(b"\r\n")
            except asyncio.CancelledError:
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as exc:
                # A line longer than the reader's buffer (READ_LIMIT) comes in pieces; a
                # piece never ends inside the CRLF (asyncio keeps a trailing CR back).
                line = await self._reader.read(exc.consumed)
                if not line:
                    return  # the connection is gone
            if line_start and line == b".\r\n":
                break
            size += len(line)
            if not state and limit and size > limit:
                state = "much"  # read on to the end, keeping nothing (RFC 5321 4.2.5)
            if state:
                buf = bytearray()
            elif line_start and line.startswith(b"."):
                buf += memoryview(line)[1:]  # RFC 5321 4.5.2: the added dot goes
            else:
                buf += line
            line_start = line.endswith(b"\r\n")
        if state:
            await self.push("552 Error: Too much mail data")
            self._set_post_data_state()
            return
        content = bytes(buf)
        del buf
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, bytes):  # aiosmtpd pushes str; bytes pass through as they are
            await super().push(status)
            return
        count = self._data_recipients
        if count and not status.startswith("354") and "\r\n" not in status:
            if status.startswith("552"):
                status = "552 5.3.4 Message exceeds the size limit"
            if not self.handled and status[:1] in "45":  # aiosmtpd refused it whole
                metrics = getattr(self.event_handler, "metrics", None)
                for _ in range(count):
                    if metrics is not None:
                        metrics.reply(int(status[:3]))
                log.info("refused whole message rcpts=%d status=%s", count, status[:60])
            status = "\r\n".join([status] * count)
        await super().push(status)


def _method_names(cls: type, prefixes: tuple[str, ...]) -> list[str]:
    """The names of a class's methods with these prefixes, looked up once per class."""
    found = _NAMES.get(cls)
    if found is None:
        found = _NAMES[cls] = sorted(
            {n for k in cls.__mro__ for n in vars(k) if n.startswith(prefixes)}
        )
    return found


_NAMES: dict[type, list[str]] = {}
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(
    rf"^<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?:[ \t]+(\S.*))?$"
)


class Handler:
    """aiosmtpd handler hooks: routing at RCPT, the pipeline at DATA."""

    def __dir__(self) -> list[str]:  # see LMTPServer.__dir__
        return _method_names(type(self), ("handle_", "auth_"))

    def __init__(self, committer: GroupCommitter, metrics: Metrics | None = None) -> None:
        self.committer = committer
        self.metrics = metrics or Metrics()
        self.in_flight = 0

    async def handle_RCPT(
        self,
        server: LMTP,
        session: Session,
        envelope: SMTPEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.committer.pipeline.site.accepts(address) is None:
            log.info("rejected rcpt=%s status=550 reason=unknown-recipient", address)
            self.metrics.reply(550)
            return f"550 5.1.1 <{address}>: Recipient address rejected: unknown queue address"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: LMTP, session: Session, envelope: SMTPEnvelope) -> str:
        if isinstance(server, LMTPServer):
            server.handled = True
        started = time.monotonic()
        raw = envelope.original_content or b""
        recipients = list(envelope.rcpt_tos)
        sender = envelope.mail_from or ""
        limit = self.committer.pipeline.config.lmtp.max_header_size
        if header_too_big(raw, limit):
            log.info("refused whole message rcpts=%d reason=header-over-%d", len(recipients), limit)
            for _ in recipients:
                self.metrics.reply(552)
            reply = f"552 5.3.4 message header too big (over {limit} bytes)"
            return "\r\n".join([reply] * len(recipients))
        self.in_flight += 1
        try:
            replies = await self.committer.submit(raw, recipients, sender)
        except Exception:
            log.exception("internal error before commit")
            replies = [outcomes.tempfail(r, "internal error") for r in recipients]
        finally:
            self.in_flight -= 1
        elapsed = time.monotonic() - started
        elapsed_ms = elapsed * 1000
        self.metrics.latency.observe(elapsed)
        qid = _QUEUE_ID.search(raw[:8192])
        mid = _MESSAGE_ID.search(raw[:65536])
        for outcome in replies:
            self.metrics.reply(outcome.code)
            log.info(
                "delivery queue_id=%s message_id=<%s> rcpt=%s ticket=%s status=%s "
                "detail=%s duration_ms=%.1f",
                qid.group(1).decode() if qid else "-",
                mid.group(1).decode("ascii", "replace") if mid else "",
                outcome.recipient,
                outcome.ticket or "-",
                outcome.code,
                outcome.detail.replace(" ", "_"),
                elapsed_ms,
            )
        return "\r\n".join(o.reply for o in replies)


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def header_too_big(raw: bytes, limit: int) -> bool:
    """The header block (up to the first empty line) is longer than limit (issue 25: a
    900 KB Subject); a mail without a body counts whole."""
    if len(raw) <= limit:
        return False
    return _BLANK_LINE.search(raw, 0, limit + 4) is None


def controller(
    handler: Handler,
    loop: Any,
    *,
    host: str,
    port: int,
    socket: str,
    max_size: int,
    server_name: str,
    reuse_port: bool = False,
) -> UnthreadedController | UnixSocketUnthreadedController:
    """An unthreaded aiosmtpd controller on the daemon's loop, making LMTPServer sessions.

    server_name is the name in the greeting; without it aiosmtpd would look up the
    host's FQDN for every connection (Postfix opens one per delivery by default).
    reuse_port: several processes listen on one TCP port (serve --workers).
    """
    kwargs = {
        "loop": loop,
        "server_hostname": server_name,
        "data_size_limit": max_size,
        "enable_SMTPUTF8": True,
        "decode_data": False,
        "ident": "otrs-mailgate",
    }
    base: Any = UnixSocketUnthreadedController if socket else UnthreadedController

    class _Controller(base):
        def factory(self) -> LMTPServer:
            return LMTPServer(self.handler, line_length_limit=READ_LIMIT, **self.SMTP_kwargs)

        def _create_server(self) -> Any:
            if socket or not reuse_port:
                return super()._create_server()
            # serve --workers: every worker listens on the port; the kernel spreads
            # the connections (SO_REUSEPORT).  aiosmtpd's documented override point.
            return self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port, reuse_port=True
            )

    if socket:
        return _Controller(handler, unix_socket=socket, **kwargs)
    return _Controller(handler, hostname=host, port=port, **kwargs)
