"""Mails we write: templates per language, and the headers every one of them carries.

Every outgoing mail is marked as automatic (RFC 3834 Auto-Submitted, Precedence:
bulk, X-Auto-Response-Suppress, our X-Loop) so other responders leave it alone,
and header values are built through email.policy.default, which refuses CR/LF.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import jinja2

from otrs_mailgate.config.locate import template_dirs
from otrs_mailgate.config.schema import Config
from otrs_mailgate.mail import addresses
from otrs_mailgate.mail.parse import POLICY
from otrs_mailgate.mail.subject import clean

WIRE_POLICY = POLICY.clone(linesep="\r\n")
# RFC 6532: UTF-8 in header fields, for a mail to an address with a non-ASCII local part
# (sent only to an MTA that offers SMTPUTF8, outbox.Sender sees to that).
WIRE_POLICY_UTF8 = WIRE_POLICY.clone(utf8=True)
ADDRESS_HEADERS = ("From", "To", "Cc", "Reply-To")
MAX_SUBJECT = 250  # characters of a subject we write; the whole one is in the raw mail


@dataclass(frozen=True)
class Response:
    """An answer decided inside an ingest transaction, rendered only when it is sent.

    Rendering a template and serialising a MIME message cost more than all the
    database work of a delivery, and nothing in the transaction needs the text:
    the outbox row holds this spec, the Message-ID (fixed now, so a reply to the
    mail finds its ticket) and the time it was decided (the mail's Date).
    """

    template: str
    language: str
    from_addr: str
    from_name: str
    to: str
    to_name: str
    subject: str
    vars: dict[str, Any]
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    # auto-replied (acknowledgements), auto-generated (notifications, transcripts), or
    # "" for what a person wrote (an agent's reply): only automatic mail is marked.
    auto_submitted: str = "auto-replied"
    reply_to: str = ""
    cc: tuple[str, ...] = ()
    # OpenPGP / S/MIME (outbound/protect.py): encrypted to every recipient's key, signed
    # with the key of this queue address; decided with the row, applied when sent.
    encrypt: bool = False
    sign_as: str = ""

    @property
    def recipients(self) -> list[str]:
        return [self.to, *self.cc]

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Response:
        data = json.loads(text)
        data["references"] = tuple(data.get("references") or ())
        data["cc"] = tuple(data.get("cc") or ())
        return cls(**data)


class Responder:
    """Renders mail templates; one instance per process (the jinja2 cache lives here)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        dirs = template_dirs(config)
        if not dirs:
            raise RuntimeError("no templates folder found; set system.templates")
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in dirs]),
            autoescape=False,  # plain-text mail; the web page has its own environment
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,  # a line holding only {% ... %} leaves no blank line behind
            lstrip_blocks=True,
            # compiled once per Responder: SIGHUP makes a new one, so no stat of the
            # template file at every mail (issue 31)
            auto_reload=False,
        )
        self.env.filters["filesize"] = filesize

    @functools.cached_property
    def languages(self) -> frozenset[str]:
        """Languages with mail templates (read once; SIGHUP makes a new Responder)."""
        return frozenset(
            name.split("/")[1] for name in self.env.list_templates() if name.startswith("mail/")
        )

    def pick_language(self, *candidates: str | None) -> str:
        have = self.languages
        for lang in candidates:
            if lang and lang in have:
                return lang
        return "en"

    @functools.cached_property
    def sandbox(self) -> jinja2.Environment:
        """For texts that admins and agents write (queue frames, answer templates): no
        attribute access past the context's plain values."""
        from jinja2.sandbox import SandboxedEnvironment

        return SandboxedEnvironment(
            undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False
        )

    def render_text(self, source: str, context: dict[str, Any]) -> str:
        """A text template kept in the config or the database; compiled once per
        Responder (per configuration) and source."""
        compiled = self._compiled.get(source)
        if compiled is None:
            compiled = self._compiled[source] = self.sandbox.from_string(source)
        return compiled.render(context)

    @functools.cached_property
    def _compiled(self) -> dict[str, jinja2.Template]:
        return {}

    def render(self, name: str, language: str, **context: Any) -> str:
        template = self.env.get_template(f"mail/{language}/{name}.txt.j2")
        return template.render(**context)

    def compose(self, response: Response, message_id: str, date: dt.datetime) -> EmailMessage:
        """The mail of an outbox row; the same row always gives the same mail."""
        body = self.render(response.template, response.language, **response.vars)
        msg = EmailMessage(policy=POLICY)
        msg["From"] = address(response.from_name, response.from_addr)
        msg["To"] = address(response.to_name, response.to)
        if response.cc:
            msg["Cc"] = [address("", cc) for cc in response.cc]
        if response.reply_to:
            msg["Reply-To"] = address("", response.reply_to)
        msg["Subject"] = bounded(response.subject)
        msg["Date"] = format_datetime(date)
        msg["Message-ID"] = f"<{message_id}>"
        in_reply_to = response.in_reply_to if _fits(response.in_reply_to) else ""
        if in_reply_to:
            msg["In-Reply-To"] = f"<{in_reply_to}>"
        refs = [r for r in response.references if r and _fits(r)]
        if in_reply_to and in_reply_to not in refs:
            refs.append(in_reply_to)
        if refs:
            msg["References"] = " ".join(f"<{r}>" for r in refs[-10:])
        if response.auto_submitted:
            msg["Auto-Submitted"] = response.auto_submitted
            msg["X-Auto-Response-Suppress"] = "All"
            msg["Precedence"] = "bulk"
        msg["X-Loop"] = response.from_addr
        msg.set_content(body)  # clears Content-* headers, so Content-Language comes after
        msg["Content-Language"] = response.language
        return msg


def address(name: str, spec: str) -> Address:
    """A header address from what we stored: the canonical form (addresses.canonical,
    which raises Unanswerable for what no header can carry), built from its parts so
    no second parser has a say; the display name cleaned and cut."""
    local, domain = addresses.unquoted(addresses.canonical(spec))
    return Address(bounded(name, 120), local, domain)


MAX_ID = 250  # characters of a Message-ID we repeat: a longer one cannot be folded


def _fits(msgid: str) -> bool:
    """A Message-ID we can write into In-Reply-To/References: one line, no longer than
    MAX_ID (a header line of ours never passes 998 octets)."""
    return bool(msgid) and len(msgid) <= MAX_ID and msgid.isprintable() and " " not in msgid


def bounded(text: str, limit: int = MAX_SUBJECT) -> str:
    """A header text as we write it: one line, at most `limit` characters (a 900 KB
    subject is no title and no header line, issue 25)."""
    text = clean(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def needs_smtputf8(message: EmailMessage) -> bool:
    """Some address in its headers has a non-ASCII local part (RFC 6531/6532)."""
    for name in ADDRESS_HEADERS:
        header = message.get(name)
        if header is not None and any(not a.addr_spec.isascii() for a in header.addresses):
            return True
    return False


def wire(message: EmailMessage) -> bytes:
    """The bytes of a mail we send: CRLF lines, headers folded (no line over 78 where
    it can be folded, 998 at most), UTF-8 headers only where an address needs them."""
    return message.as_bytes(policy=WIRE_POLICY_UTF8 if needs_smtputf8(message) else WIRE_POLICY)


def filesize(size: int) -> str:
    """1234567 -> "1.2 MB": sizes as people read them (mail and page alike)."""
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def new_message_id(domain: str) -> str:
    """A Message-ID in our own domain, without the angle brackets."""
    return make_msgid(domain=domain).strip("<>")
