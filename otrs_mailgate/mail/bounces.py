"""Delivery status notifications (RFC 3464): which of our mails bounced, for whom, and why.

A multipart/report carries a message/delivery-status part (one block of fields for
the report, one per recipient) and usually the returned message or its headers
(message/rfc822 or text/rfc822-headers), whose Message-ID names the mail of ours
that failed.  Nothing here raises: a report we cannot read yields what it could.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser

from otrs_mailgate.mail.parse import ParsedMail, decode_words

_MSGID = re.compile(r"<([^<>\s]+)>")


@dataclass(frozen=True)
class Failure:
    recipient: str
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # e.g. 5.1.1
    diagnostic: str


@dataclass
class Report:
    original_message_id: str = ""
    failures: list[Failure] = field(default_factory=list)
    reporting_mta: str = ""


def _field(block: Message, name: str) -> str:
    value = block.get(name)
    return " ".join(str(value).split()) if value is not None else ""


def _typed(value: str) -> str:
    """`rfc822; user@example.com` -> `user@example.com`."""
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    if isinstance(payload, str):  # some parsers leave it as text: split on blank lines
        parser = HeaderParser()
        return [parser.parsestr(chunk) for chunk in re.split(r"\r?\n\r?\n", payload) if chunk]
    return []


def _original_id(part: Message) -> str:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else inner
        if isinstance(inner, Message):
            found = _MSGID.findall(str(inner.get("Message-ID", "")))
            return found[0] if found else ""
        return ""
    text = part.get_payload(decode=True)
    if not isinstance(text, bytes):
        return ""
    headers = HeaderParser().parsestr(text.decode("utf-8", "replace"))
    found = _MSGID.findall(str(headers.get("Message-ID", "")))
    return found[0] if found else ""


def read(mail: ParsedMail) -> Report:
    report = Report()
    if mail.message is None:
        return report
    for part in mail.message.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers") and not report.original_message_id:
            with contextlib.suppress(Exception):
                report.original_message_id = _original_id(part)
        if ctype != "message/delivery-status":
            continue
        try:
            blocks = _blocks(part)
        except Exception:
            continue
        for block in blocks:
            if not report.reporting_mta and block.get("Reporting-MTA"):
                report.reporting_mta = _typed(_field(block, "Reporting-MTA"))
            recipient = _typed(
                _field(block, "Final-Recipient") or _field(block, "Original-Recipient")
            )
            if not recipient:
                continue
            report.failures.append(
                Failure(
                    recipient=recipient.lower(),
                    action=_field(block, "Action").lower() or "failed",
                    status=_field(block, "Status"),
                    diagnostic=decode_words(_typed(_field(block, "Diagnostic-Code"))),
                )
            )
    return report
