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
from otrs_mailgate.mail.parse import POLICY
from otrs_mailgate.mail.subject import clean


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

    def render(self, name: str, language: str, **context: Any) -> str:
        template = self.env.get_template(f"mail/{language}/{name}.txt.j2")
        return template.render(**context)

    def compose(self, response: Response, message_id: str, date: dt.datetime) -> EmailMessage:
        """The mail of an outbox row; the same row always gives the same mail."""
        body = self.render(response.template, response.language, **response.vars)
        msg = EmailMessage(policy=POLICY)
        msg["From"] = Address(clean(response.from_name), addr_spec=response.from_addr)
        msg["To"] = (
            Address(clean(response.to_name), addr_spec=response.to)
            if response.to_name
            else response.to
        )
        if response.cc:
            msg["Cc"] = ", ".join(response.cc)
        if response.reply_to:
            msg["Reply-To"] = response.reply_to
        msg["Subject"] = clean(response.subject)
        msg["Date"] = format_datetime(date)
        msg["Message-ID"] = f"<{message_id}>"
        in_reply_to = response.in_reply_to
        if in_reply_to:
            msg["In-Reply-To"] = f"<{in_reply_to}>"
        refs = [r for r in response.references if r]
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
