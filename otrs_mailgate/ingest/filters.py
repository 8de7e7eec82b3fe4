"""PostMaster filters from the config file: match headers, then route, prioritise or drop.

Each [[filter]] matches when every header regex it names finds a match (case-
insensitive, in the decoded header; a missing header matches nothing); the
first matching filter wins.  Headers a sender sets to steer us (X-OTRS-Queue,
X-OTRS-Priority, X-OTRS-Ignore, as OTRS reads them) are believed only when the
topmost Received header says the mail came from the configured trusted relay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from otrs_mailgate.config.schema import Config, FilterConfig
from otrs_mailgate.mail.parse import ParsedMail

_FROM_HOST = re.compile(r"^\s*from\s+(\S+)", re.IGNORECASE)


@dataclass(frozen=True)
class Decision:
    name: str = ""  # the filter that decided, for the history and the log
    queue: str | None = None
    priority: int | None = None
    language: str | None = None
    ignore: bool = False
    auto: bool = False


def _matches(f: FilterConfig, mail: ParsedMail) -> bool:
    for header, pattern in f.match.items():
        value = mail.body_text if header.lower() == "body" else mail.header(header)
        if not value or not re.search(pattern, value, re.IGNORECASE):
            return False
    return True


def _trusted(config: Config, mail: ParsedMail) -> bool:
    relay = config.system.trusted_relay.lower()
    if not relay or mail.message is None:
        return False
    received = mail.header("Received")
    found = _FROM_HOST.match(received)
    return found is not None and found.group(1).lower().rstrip(".") == relay


def decide(config: Config, mail: ParsedMail) -> Decision | None:
    for f in config.filter:
        if _matches(f, mail):
            return Decision(f.name, f.queue, f.priority, f.language, f.ignore, f.auto)
    if _trusted(config, mail):
        queue = mail.header("X-OTRS-Queue").strip() or None
        priority = mail.header("X-OTRS-Priority").strip()
        ignore = mail.header("X-OTRS-Ignore").strip().lower() in ("yes", "1", "true")
        level = int(priority[0]) if priority[:1].isdigit() and 1 <= int(priority[0]) <= 5 else None
        if queue or level or ignore:
            return Decision("X-OTRS headers (trusted relay)", queue, level, None, ignore)
    return None
