"""What became of one message for one recipient: the typed Outcome every entry point
turns into its own answer (entry/outcomes.py), and the records that carry it.

Standard library only: the pipe client maps the daemon's replies through the same
table without paying for the parser or SQLAlchemy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the annotations only; nothing here needs the parser at run time
    from otrs_mailgate.mail.parse import ParsedMail


class UnknownRecipient(LookupError):
    """No queue has this address: refuse it, store nothing."""


class Conflict(RuntimeError):
    """Concurrent writers collided on a unique key twice: nothing stored, try again later."""


class Outcome(enum.StrEnum):
    """Stored, duplicate and ignored are final successes; not-a-mail and unknown-recipient
    are final refusals; the rest mean "nothing stored, try again later"."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    NOT_A_MAIL = "not-a-mail"
    UNKNOWN_RECIPIENT = "unknown-recipient"
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"  # the database is down, locked, full or read-only
    ERROR = "error"  # a bug, logged

    @property
    def accepted(self) -> bool:
        return self in (Outcome.STORED, Outcome.DUPLICATE, Outcome.IGNORED)

    @property
    def temporary(self) -> bool:
        return self in (Outcome.CONFLICT, Outcome.UNAVAILABLE, Outcome.ERROR)


@dataclass
class Item:
    """One message as an entry point received it, for one or more recipients.

    A recipient None means "route by the headers" (import); queue forces a queue.
    """

    raw: bytes
    recipients: list[str | None]
    sender: str | None = None
    queue: str | None = None
    mail: ParsedMail | None = None  # parsed already by the entry point
    imported: bool = False  # from an archive: dated by the mail, no clocks unless asked


@dataclass
class Envelope:
    """What the MTA told us. sender None: unknown (an import); "": the null return path."""

    sender: str | None = None
    recipients: list[str] = field(default_factory=list)


@dataclass
class Result:
    """A recipient whose message was taken (stored, a known retry, or ignored by a filter)."""

    recipient: str
    status: Outcome
    ticket_number: str
    article_id: int | None
    queue: str
    new_ticket: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        return self.status


@dataclass
class Failed:
    """A recipient of an item that was not stored: what kind of failure, and the error."""

    recipient: str
    error: Exception
    outcome: Outcome = Outcome.ERROR
