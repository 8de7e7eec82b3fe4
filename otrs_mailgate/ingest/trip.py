"""One message for one recipient on its way through the stages (pipeline.STAGES).

Each stage reads what the stages before it found and adds its own finding; a stage
that ends the trip returns the Result or Failed that says why, and the loop in
pipeline.py handles that in one place.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import QueueConfig
from otrs_mailgate.ingest.auth import DNSFunc, Verdict
from otrs_mailgate.ingest.filters import Decision
from otrs_mailgate.ingest.outcome import Envelope, Failed, Item, Outcome, Result
from otrs_mailgate.mail.classify import Classification
from otrs_mailgate.mail.parse import NotAMail, ParsedMail
from otrs_mailgate.mail.spam import Reading as SpamReading
from otrs_mailgate.site import Site
from otrs_mailgate.store.models import utcnow
from otrs_mailgate.tickets.refs import TicketRef


@dataclass
class Trip:
    site: Site
    session: Session
    item: Item
    recipient: str | None
    envelope: Envelope
    parsed: ParsedMail | NotAMail | None  # parsed before the transaction, or None
    acknowledge: bool = True  # False: no automatic mail at all (an import)
    dns: DNSFunc | None = None  # DKIM key lookups past the pinned keys (tests answer here)
    clocks: bool = True  # set the SLA clocks of what it stores (off: an archive's mail)
    customer_ack: bool = True  # False: a new ticket's customer gets no acknowledgement
    now: dt.datetime = field(default_factory=utcnow)
    # What the stages find, in their order:
    queue: QueueConfig | None = None  # route
    key: str = ""  # route: the recipient as deliveries are recorded
    decision: Decision | None = None  # route: what the filters say
    kind: Classification | None = None  # classify
    spam: SpamReading | None = None  # spam: the filter's verdict, if believed
    junk: bool = False  # spam: filed in the Junk queue, silent
    verdict: Verdict | None = None  # authenticate: None without a reply token
    ticket: TicketRef | None = None  # match (or commands): the ticket the mail is filed on
    followed: TicketRef | None = None  # match: a closed ticket a new one follows up
    new: bool = False  # match: a new ticket is made
    company_id: int | None = None  # customer (article): the new ticket's company
    rejected: bool = False  # match: a follow-up the closed ticket's queue refuses
    internal: bool = False  # match: a refused reply-address mail, for agents' eyes only
    article_id: int | None = None  # article
    notes: list[str] = field(default_factory=list)
    customer_from: str = "From"  # the header (or "envelope sender") the customer came from
    dated_by: str = "arrival"  # what `now` is: the time it came, or (imports) the mail's own

    @property
    def mail(self) -> ParsedMail:
        assert isinstance(self.parsed, ParsedMail), "the parse stage comes first"
        return self.parsed

    @functools.cached_property
    def conn(self) -> Connection:
        """The transaction's connection (asking the Session each time costs more than
        many a statement)."""
        return self.session.connection()

    def result(self, status: Outcome = Outcome.STORED, *, number: str | None = None) -> Result:
        """The trip's Result as it stands: the ticket it reached and what was noted."""
        ticket = self.ticket
        return Result(
            self.key,
            status,
            number if number is not None else (ticket.number if ticket else ""),
            self.article_id,
            ticket.queue if ticket else (self.queue.name if self.queue else ""),
            self.new,
            self.notes,
        )


Stop = Result | Failed | None
"""A stage's answer: None goes on to the next stage; a Result or Failed ends the trip."""


class Stage(NamedTuple):
    name: str
    run: Callable[[Trip], Stop]
