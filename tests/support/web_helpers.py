"""A ticket desk with a customer, agents and notes, the links the mails carry, and an
HTTP client that keeps the session cookie like a browser."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import urlsplit

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store.models import utcnow

from agent_helpers import Desk
from helpers import mail, outbox_mails

HOT = "hotline@example.com"
EVIL = "<script>alert('x')</script>"
URL = re.compile(r"https?://\S+")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str


class Browser:
    """urllib with a cookie jar: follows redirects, keeps cookies, never raises on 4xx."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path_or_url: str) -> Reply:
        parts = urlsplit(path_or_url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            with self.opener.open(self.base + path, timeout=30) as response:
                return Reply(response.status, dict(response.headers), response.read().decode())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers), exc.read().decode())


def link_in(message: EmailMessage) -> str:
    [url] = URL.findall(message.get_content())
    return url


def story(desk: Desk) -> tuple[str, str]:
    """A customer with a hostile name and subject writes; alice answers, bob notes
    internally.  (ticket number, the customer's link from the acknowledgement)."""
    p: Pipeline = desk.p
    raw = mail(
        f"{EVIL} Drucker kaputt",
        "Der Drucker druckt nur noch Streifen.",
        sender=f'"{EVIL} Eve" <eve@customer.test>',
    )
    number = p.deliver_one(raw, HOT).ticket_number
    desk.command("alice", number, "", "We replaced the toner; please try again.")
    desk.command("bob", number, "note", "Internal: third toner this month.")
    [ack] = [m for m in outbox_mails(p) if m["To"].addresses[0].addr_spec == "eve@customer.test"
             and "thank you for your message" in m.get_content()]  # fmt: skip
    return number, link_in(ack)


CUSTOMER = "cus@customer.test"


def with_files(subject: str, *files: tuple[str, str, bytes], sender: str = CUSTOMER) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, HOT, subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f"<{abs(hash((subject, sender)))}@customer.test>"
    msg.set_content("See the files.")
    for name, ctype, data in files:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()
