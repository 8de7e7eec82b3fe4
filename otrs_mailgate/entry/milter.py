"""The milter server: Postfix's smtpd asks it about each message while the client waits.

The wire protocol (version 6) is parsed and packed by kilter.protocol, a sans-I/O
library: its FilterProtocol checks every answer is one the MTA may receive at that
stage.  This module is the small asyncio adapter around it (one task per MTA
connection, like aiosmtpd's server) and hands each event to smtpchecks.Message.

A check that crashes answers 451 4.3.0 for that message alone; the connection and
every other one go on.  The server is started by `serve` (one loop with LMTP) or
by `otrs-mailgate milter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Self

from kilter.protocol import messages as m
from kilter.protocol.buffer import SimpleBuffer
from kilter.protocol.core import FilterMessage, FilterProtocol

from otrs_mailgate.entry.smtpchecks import Edits, Gate, Message, Reply
from otrs_mailgate.ingest.pipeline import Pipeline

log = logging.getLogger("otrs_mailgate.entry.milter")

VERSION = 6
# Per connection.  Postfix sends body chunks of 64 KB and headers up to header_size_limit
# (100 KB); we ask for no larger packets (no MDS_* flag), and answer with small ones.
IN_BUFFER = 512 * 1024
OUT_BUFFER = 64 * 1024
ACTIONS = m.ActionFlags.ADD_HEADERS | m.ActionFlags.CHANGE_HEADERS
# Events we do not need are not sent at all; header values keep their leading space,
# so the message we rebuild for DKIM is the one that was sent.
SKIPPED = m.ProtocolFlags.NO_UNKNOWN
WANTED = m.ProtocolFlags.HEADER_LEADING_SPACE
TEMPFAIL = Reply("451", "4.3.0", "temporary problem checking this mail, try again later")


def _lenient(data: memoryview, codec: str) -> str:
    try:
        return bytes(data).decode(codec)
    except UnicodeError:
        return bytes(data).decode("utf-8", "replace")


class _Macro(m.Macro, ident=b"D"):
    """kilter reads macro values as ASCII, but Postfix passes the {mail_addr} of an
    SMTPUTF8 sender (`jörg@exämple.de`) in UTF-8: the whole connection failed, and every
    such mail was tempfailed until its sender gave up (issue 25).  Macros are read as
    UTF-8 here, never failing; registering the class under ident D replaces kilter's."""

    @classmethod
    def from_buffer(cls, buf: memoryview) -> Self:
        stage, rest, macros = buf[0], buf[1:], {}
        while len(rest) > 0:
            key, rest = m.split_cstring(rest)
            value, rest = m.split_cstring(rest)
            macros[_lenient(key, "utf-8")] = _lenient(value, "utf-8")
        return cls(stage, macros)


class _Helo(m.Helo, ident=b"H"):
    """The HELO name as it came (SPF checks it for a null sender): a name the IDNA codec
    refuses must not cost the connection."""

    @classmethod
    def from_buffer(cls, buf: memoryview) -> Self:
        name, _ = m.split_cstring(buf)
        return cls(_lenient(name, "idna"))


class _Connect(m.Connect, ident=b"C"):
    """The client's host name as IDNA where it is, else as it came: a name the codec
    refuses must not cost the connection."""

    @classmethod
    def from_buffer(cls, buf: memoryview) -> Self:
        name, rest = m.split_cstring(buf)
        hostname = _lenient(name, "idna")
        family = m.Family(rest[0:1].tobytes())
        if family == m.Family.UNKNOWN:
            return cls(hostname)
        port = int.from_bytes(rest[1:3], "big")
        addr, _ = m.split_cstring(rest[3:])
        text = _lenient(addr, "ascii")
        if family == m.Family.UNIX:
            return cls(hostname, Path(text), port)
        try:
            return cls(hostname, ip_address(text), port)
        except ValueError:
            return cls(hostname, None, port)


class MilterServer:
    def __init__(self, pipeline: Pipeline) -> None:
        self.gate = Gate(pipeline)
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[asyncio.Task[Any]] = set()

    async def start(self, host: str, port: int, socket: str = "", reuse_port: bool = False) -> None:
        if socket:
            with contextlib.suppress(FileNotFoundError):
                import os

                os.unlink(socket)
            self.server = await asyncio.start_unix_server(self._connection, socket)
        else:
            self.server = await asyncio.start_server(
                self._connection, host, port, reuse_port=reuse_port or None
            )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in list(self.connections):
            task.cancel()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await Connection(self.gate, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("milter connection failed")
        finally:
            self.connections.discard(task)
            writer.close()


class Connection:
    """One MTA connection: many SMTP sessions, one after the other."""

    def __init__(self, gate: Gate, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.gate = gate
        self.reader, self.writer = reader, writer
        self.protocol = FilterProtocol()
        self.inbuf = SimpleBuffer(IN_BUFFER)
        self.outbuf = SimpleBuffer(OUT_BUFFER)
        self.client_ip = ""
        self.helo = ""
        self.message: Message | None = None
        self.failed = False  # a check crashed: tempfail the rest of this message
        self.leading_space = False

    async def run(self) -> None:
        while True:
            if not self.inbuf.available:  # one packet larger than we ever asked for
                log.warning("milter packet over %d bytes; closing (Postfix tempfails)", IN_BUFFER)
                return
            data = await self.reader.read(min(65536, self.inbuf.available))
            if not data:
                return
            self.inbuf[:] = data
            for event in self.protocol.read_from(self.inbuf):
                if isinstance(event, m.Close):
                    return
                await self._event(event)
            await self.writer.drain()

    def _send(self, *answers: FilterMessage) -> None:
        for answer in answers:
            self.protocol.write_to(self.outbuf, answer)
        self.writer.write(self.outbuf[:].tobytes())
        del self.outbuf[:]

    async def _event(self, event: Any) -> None:
        if isinstance(event, m.Negotiate):
            self._negotiate(event)
            return
        if isinstance(event, m.Macro):
            return
        if isinstance(event, m.Abort):
            self.message, self.failed = None, False
            return
        try:
            answer = await self._check(event)
        except Exception:
            log.exception("milter check failed on %s; tempfail for this message", type(event))
            self.failed = True
            answer = _reply(TEMPFAIL)
        if self.protocol.needs_response(event):
            self._send(*answer)
        if isinstance(event, m.EndOfMessage):
            self.message, self.failed = None, False

    def _negotiate(self, offer: m.Negotiate) -> None:
        flags = (SKIPPED | WANTED) & offer.protocol_flags
        self.leading_space = m.ProtocolFlags.HEADER_LEADING_SPACE in flags
        self._send(m.Negotiate(VERSION, ACTIONS & offer.action_flags, flags))

    async def _check(self, event: Any) -> list[FilterMessage]:
        """The answer to one event: Continue, Accept (not ours: stop asking), or a reply."""
        if isinstance(event, m.Connect):
            self.client_ip = str(event.address or "")
            return [m.Continue()]
        if isinstance(event, m.Helo):
            self.helo = event.hostname
            return [m.Continue()]
        if self.failed:
            return _reply(TEMPFAIL)
        if isinstance(event, m.EnvelopeFrom):
            self.message = self.gate.message(self.client_ip, self.helo)
            args = [_str(a) for a in event.arguments]
            self.message.mail_from(_str(event.sender), args)
            return [m.Continue()]
        message = self.message
        if message is None:
            return [m.Continue()]
        if isinstance(event, m.EnvelopeRecipient):
            refused = await message.rcpt(_str(event.recipient))
            return _reply(refused) if refused else [m.Continue()]
        if isinstance(event, m.Data):
            return [m.Continue()] if message.ours else [m.Accept()]
        if isinstance(event, m.Header):
            value = bytes(event.value)
            refused = message.header(event.name, value if self.leading_space else b" " + value)
            return _reply(refused) if refused else [m.Continue()]
        if isinstance(event, m.Body):
            refused = message.body_chunk(bytes(event.content))
            return _reply(refused) if refused else [m.Continue()]
        if isinstance(event, m.EndOfMessage):
            if event.content:
                refused = message.body_chunk(bytes(event.content))
                if refused:
                    return _reply(refused)
            decision = await message.end()
            if isinstance(decision, Reply):
                log.info("refused %s -> %s: %s", message.sender, message.queues[0].name, decision)
                return _reply(decision)
            return [*self._edits(decision), m.Continue()]
        return [m.Continue()]

    def _edits(self, edits: Edits) -> list[FilterMessage]:
        space = b" " if self.leading_space else b""
        out: list[FilterMessage] = []
        for name, index in sorted(edits.delete, key=lambda d: -d[1]):  # last first
            out.append(m.ChangeHeader(index, name, b""))
        for name, value in edits.insert:
            out.append(m.InsertHeader(0, name, space + value.encode()))
        for name, value in edits.add:
            out.append(m.AddHeader(name, space + value.encode()))
        return out


def _reply(reply: Reply) -> list[FilterMessage]:
    text = str(reply).replace("%", "%%").replace("\r", " ").replace("\n", " ")
    return [m.ReplyCode(text.encode("utf-8", "replace") + b"\x00")]


def _str(value: bytes | memoryview | str) -> str:
    if isinstance(value, str):
        return value
    return bytes(value).decode("utf-8", "replace")
