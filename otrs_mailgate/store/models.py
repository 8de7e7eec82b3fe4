"""The database tables, as SQLAlchemy 2 models.

schema.sql is generated from these (`otrs-mailgate schema`) and alembic migrations
under migrations/ must produce the same tables; tests check both.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Always an aware UTC datetime in Python, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    __table__: ClassVar[Table]  # every model here is one table (Core statements use it)


def _partial_index(name: str, column: str) -> Index:
    """An index of the rows where column is set (both dialects know WHERE on an index)."""
    where = text(f"{column} IS NOT NULL")
    return Index(name, column, sqlite_where=where, postgresql_where=where)


class Queue(Base):
    __tablename__ = "queue"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Customer(Base):
    __tablename__ = "customer"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str] = mapped_column(String(8), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the customer's company (tickets/companies.py): by address as a member, else by domain
    company_id: Mapped[int | None] = mapped_column(ForeignKey("company.id"), index=True)


class Company(Base):
    """OTRS's customer company, Zammad's organisation: customers join it by their mail
    domain (never a free-mail one) or as named members (issue 30)."""

    __tablename__ = "company"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CompanyDomain(Base):
    __tablename__ = "company_domain"
    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id"), index=True)


class CompanyMember(Base):
    __tablename__ = "company_member"
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id"), index=True)


class Agent(Base):
    """Someone who works tickets by mail; identified by address, never by Reply-To."""

    __tablename__ = "agent"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # Key of the agent's reply-address tokens; rotating it voids every token at once.
    secret: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # OpenPGP fingerprints and S/MIME certificate SHA-256s, one a line, whose valid
    # signature proves the agent's command mail where DKIM cannot (issue 29)
    keys: Mapped[str] = mapped_column(Text, server_default="")


class AgentGroup(Base):
    __tablename__ = "agent_group"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)


class GroupMember(Base):
    __tablename__ = "group_member"
    group_id: Mapped[int] = mapped_column(ForeignKey("agent_group.id"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agent.id"), primary_key=True)


class QueueGrant(Base):
    """Access of an agent or a group to a queue: ro (read) or rw (work on it)."""

    __tablename__ = "queue_grant"
    __table_args__ = (UniqueConstraint("queue_id", "agent_id", "group_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queue.id"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("agent_group.id"))
    access: Mapped[str] = mapped_column(String(2))  # ro | rw


class Ticket(Base):
    __tablename__ = "ticket"
    # Most tickets have no owner and no lock: partial indexes cost new tickets nothing.
    __table_args__ = (
        _partial_index("ix_ticket_owner_id", "owner_id"),
        _partial_index("ix_ticket_lock_until", "lock_until"),
        _partial_index("ix_ticket_first_response_due", "first_response_due"),
        _partial_index("ix_ticket_update_due", "update_due"),
        _partial_index("ix_ticket_solution_due", "solution_due"),
        _partial_index("ix_ticket_escalation_at", "escalation_at"),
        _partial_index("ix_ticket_pending_until", "pending_until"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(Text, default="")
    queue_id: Mapped[int] = mapped_column(ForeignKey("queue.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), default="new", index=True)
    priority: Mapped[int] = mapped_column(Integer, default=3)
    language: Mapped[str] = mapped_column(String(8), default="")
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id"))
    # Locked to the owner while this lies in the future; a lapsed lock is swept by
    # locks.expire (history records it) and counts as unlocked meanwhile.
    lock_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    pending_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Service level (sla.py): when the first agent answer went out, and the three due
    # instants, recomputed on every event that moves them; NULL: no such clock runs.
    first_response_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    first_response_due: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    update_due: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    solution_due: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The next instant at which a warning or escalation level may fire (escalations.py):
    # the scheduler reads only tickets whose instant has come, never all open ones.
    escalation_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # the customer's company when the ticket was made or the company changed (issue 30)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("company.id"), index=True)

    queue: Mapped[Queue] = relationship(lazy="joined")
    customer: Mapped[Customer | None] = relationship(lazy="joined")
    owner: Mapped[Agent | None] = relationship(lazy="joined")
    company: Mapped[Company | None] = relationship(lazy="joined")


class TicketLink(Base):
    """A relation between two tickets: `follow-up-of` (a new ticket for a closed one),
    `child-of` (source is a child of target: closing the parent closes it)."""

    __tablename__ = "ticket_link"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Escalation(Base):
    """A warning (level 0) or escalation level that fired: one row per ticket, clock,
    deadline and level, inserted in the transaction that queues its mails, so the
    unique key makes it fire once however many schedulers run."""

    __tablename__ = "escalation"
    __table_args__ = (UniqueConstraint("ticket_id", "clock", "due", "level"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    clock: Mapped[str] = mapped_column(String(20))  # first_response | update | solution
    due: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    level: Mapped[int] = mapped_column(Integer)
    fired_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    recipients: Mapped[str] = mapped_column(Text, default="")


class TicketWatcher(Base):
    """An agent who follows a ticket without owning it (OTRS's ticket watch)."""

    __tablename__ = "ticket_watcher"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agent.id"), primary_key=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class TicketCc(Base):
    """Addresses that get a copy of every reply to the customer (cc+= / cc-=)."""

    __tablename__ = "ticket_cc"
    __table_args__ = (UniqueConstraint("ticket_id", "address"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    address: Mapped[str] = mapped_column(String(320))


class TimeEntry(Base):
    """Time accounted on a ticket (time=<duration>)."""

    __tablename__ = "time_entry"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agent.id"), index=True)
    minutes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContentAddressed:
    """Bytes stored once per SHA-256 (see ingest._blob_id)."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class RawMessage(ContentAddressed, Base):
    """The bytes as received, never re-serialised; shared by all articles of one message."""

    __tablename__ = "raw_message"


class Article(Base):
    __tablename__ = "article"
    __table_args__ = (_partial_index("ix_article_agent_id", "agent_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    raw_id: Mapped[int | None] = mapped_column(ForeignKey("raw_message.id"))
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    sender_type: Mapped[str] = mapped_column(String(10))  # customer | agent | system
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    message_id: Mapped[str] = mapped_column(String(998), default="")
    from_addr: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str] = mapped_column(String(200), default="")
    to_addrs: Mapped[str] = mapped_column(Text, default="")
    cc_addrs: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str] = mapped_column(Text, default="")
    content_language: Mapped[str] = mapped_column(String(8), default="")
    envelope_sender: Mapped[str] = mapped_column(String(320), default="")
    envelope_recipient: Mapped[str] = mapped_column(String(320), default="")
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id"))
    unparsed: Mapped[bool] = mapped_column(Boolean, default=False)
    problem: Mapped[str] = mapped_column(Text, default="")
    # OpenPGP / S/MIME: mail/parse.Protection as JSON ("" : neither encrypted nor signed)
    protection: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    attachments: Mapped[list[Attachment]] = relationship(lazy="selectin", order_by="Attachment.id")


class Blob(ContentAddressed, Base):
    """Attachment content, stored once per content hash."""

    __tablename__ = "blob"


class Attachment(Base):
    __tablename__ = "attachment"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("article.id"), index=True)
    blob_id: Mapped[int] = mapped_column(ForeignKey("blob.id"), index=True)
    filename: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    content_id: Mapped[str] = mapped_column(String(998), default="")
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    size: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")


class Delivery(Base):
    """One accepted (message, recipient): a retry finds its row and is not stored again."""

    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("dedup_key", "recipient"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(320))
    article_id: Mapped[int | None] = mapped_column(ForeignKey("article.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class MessageRef(Base):
    """Message-IDs we stored or sent, for In-Reply-To/References matching."""

    __tablename__ = "message_ref"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # in | out


class History(Base):
    """Append-only; each row hashes the previous row of its ticket (see history.py)."""

    __tablename__ = "history"
    __table_args__ = (UniqueConstraint("ticket_id", "prev_hash"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(320))
    type: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(16), server_default="")  # "": plain SHA-256


class Outbox(Base):
    """Mail to send, written in the transaction that decided to send it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_outbox_rcpt_to_created_at", "rcpt_to", "created_at"),  # the loop limit
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    mail_from: Mapped[str] = mapped_column(String(320))
    rcpt_to: Mapped[str] = mapped_column(Text)  # envelope recipients, one a line
    message_id: Mapped[str] = mapped_column(String(998), index=True)
    # A response (responses.Response as JSON) is rendered when it is sent and its
    # bytes kept in data from then on; mail composed up front has data at once.
    spec: Mapped[str | None] = mapped_column(Text)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(10), default="queued")  # queued|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Counter(Base):
    """Named counters for ticket numbers (`date:YYYYMMDD`, `autoincrement`)."""

    __tablename__ = "counter"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class WebSession(Base):
    """An agent's login on the status page: the cookie is random per login and only its
    SHA-256 is kept here; logout deletes the row, `session_hours` ends it."""

    __tablename__ = "web_session"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the cookie
    agent_id: Mapped[int] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class SiteSecret(Base):
    """Keys of this installation that are no agent's: `links` signs the customer's status
    page links.  Made by migration 0008 (or on first use), shared by every daemon."""

    __tablename__ = "site_secret"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


class FaqEntry(Base):
    """A knowledge base entry: agents insert it into replies (faq=<id>); queues that opt
    in suggest the best matches in the acknowledgement (faq.py keeps its index)."""

    __tablename__ = "faq"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8), default="en")
    queue: Mapped[str] = mapped_column(String(200), default="")  # "": every queue
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AnswerTemplate(Base):
    """A named answer (OTRS's templates): `template=<name>` sends it, in the ticket's
    language, with the acknowledgements' variables; `then` may set a state."""

    __tablename__ = "answer_template"
    __table_args__ = (UniqueConstraint("name", "queue", "language"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(200), default="")  # "": every queue
    language: Mapped[str] = mapped_column(String(8), default="en")
    text: Mapped[str] = mapped_column(Text)
    then: Mapped[str] = mapped_column(String(40), default="")  # "", close, pending=<duration>
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
