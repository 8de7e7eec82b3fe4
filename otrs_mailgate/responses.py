"""Mails we write: templates per language, and the headers every one of them carries.

Every outgoing mail is marked as automatic (RFC 3834 Auto-Submitted, Precedence:
bulk, X-Auto-Response-Suppress, our X-Loop) so other responders leave it alone,
and header values are built through email.policy.default, which refuses CR/LF.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import jinja2

from .config import Config, QueueConfig
from .models import utcnow
from .parse import POLICY
from .subject import clean


def template_dirs(config: Config) -> list[Path]:
    """Configured folder first, then the checkout's templates/, then the installed copy."""
    dirs = []
    if config.system.templates:
        dirs.append(Path(config.system.templates))
    dirs.append(Path(__file__).resolve().parent.parent / "templates")
    dirs.append(Path(sys.prefix) / "share" / "otrs-mailgate" / "templates")
    return [d for d in dirs if d.is_dir()]


@dataclass(frozen=True)
class Composed:
    message: EmailMessage
    mail_from: str
    rcpt_to: list[str]

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"]).strip().strip("<>")


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
        )

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

    def compose(
        self,
        *,
        queue: QueueConfig,
        to: str,
        to_name: str,
        subject: str,
        body: str,
        language: str,
        auto_submitted: str = "auto-replied",
        in_reply_to: str = "",
        references: list[str] | None = None,
    ) -> Composed:
        sender = queue.addresses[0]
        msg = EmailMessage(policy=POLICY)
        msg["From"] = Address(clean(queue.display_name or queue.name), addr_spec=sender)
        msg["To"] = Address(clean(to_name), addr_spec=to) if to_name else to
        msg["Subject"] = clean(subject)
        msg["Date"] = format_datetime(utcnow())
        msg["Message-ID"] = make_msgid(domain=self.config.system.domain)
        if in_reply_to:
            msg["In-Reply-To"] = f"<{in_reply_to}>"
        refs = [r for r in (references or []) if r]
        if in_reply_to and in_reply_to not in refs:
            refs.append(in_reply_to)
        if refs:
            msg["References"] = " ".join(f"<{r}>" for r in refs[-10:])
        msg["Auto-Submitted"] = auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
        msg["Precedence"] = "bulk"
        msg["X-Loop"] = sender
        msg.set_content(body)  # clears Content-* headers, so Content-Language comes after
        msg["Content-Language"] = language
        return Composed(msg, sender, [to])
