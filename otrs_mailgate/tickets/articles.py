"""Articles: a received mail's row, its raw bytes and attachments (stored once per
SHA-256), its search document and its Message-ID for follow-ups; customers are
remembered on first contact."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import Connection, Table, delete, insert, select, update
from sqlalchemy.orm import Session

from otrs_mailgate.mail import addresses
from otrs_mailgate.mail.parse import ParsedMail
from otrs_mailgate.store import db, search
from otrs_mailgate.store.models import (
    Article,
    Attachment,
    Blob,
    MessageRef,
    RawMessage,
    utcnow,
)
from otrs_mailgate.tickets import companies
from otrs_mailgate.tickets.refs import TicketRef

MESSAGE_REFS = MessageRef.__table__


def store(
    session: Session,
    ticket: TicketRef,
    mail: ParsedMail,
    envelope_sender: str | None,
    recipient: str,
    *,
    sender_type: str = "customer",
    direction: str = "in",
    internal: bool = False,
    agent_id: int | None = None,
    body_text: str | None = None,
    at: dt.datetime | None = None,
    index_body: bool = True,
) -> int:
    """The article of a received mail (an agent's mail: what of it the customer sees);
    index_body=False: its text is not searchable (decrypted mail of a queue that keeps
    it so), its subject, addresses and file names are."""
    conn = session.connection()
    raw_id = blob_id(conn, RawMessage.__table__, mail.raw)
    subject = mail.subject or ("(unparsed message)" if mail.unparsed else "")
    text = mail.body_text if body_text is None else body_text
    article_id = _INS_ARTICLE_FAST.scalar(
        conn,
        {
            "ticket_id": ticket.id,
            "raw_id": raw_id,
            "direction": direction,
            "sender_type": sender_type,
            "internal": internal,
            "agent_id": agent_id,
            "message_id": mail.message_id[:998],
            "from_addr": mail.from_addr[:320],
            "from_name": mail.from_name[:200],
            "to_addrs": ", ".join(mail.to),
            "cc_addrs": ", ".join(mail.cc),
            "subject": subject,
            "body_text": text,
            "body_html": mail.body_html if body_text is None else "",
            "content_language": mail.content_language,
            "envelope_sender": (envelope_sender or "")[:320],
            "envelope_recipient": recipient[:320],
            "unparsed": mail.unparsed,
            "problem": mail.problem,
            "protection": _protection(mail, index_body),
            "created_at": at or utcnow(),
        },
    )
    if mail.attachments:
        conn.execute(
            _INS_ATTACHMENT,
            [
                {
                    "article_id": article_id,
                    "blob_id": blob_id(conn, Blob.__table__, part.data),
                    "filename": part.filename,
                    "content_type": part.content_type[:255],
                    "content_id": part.content_id[:998],
                    "inline": part.inline,
                    "size": len(part.data),
                    "sha256": part.sha256,
                }
                for part in mail.attachments
            ],
        )
    addresses = (mail.from_addr, mail.from_name, *mail.to, *mail.cc)
    names = (part.filename for part in mail.attachments)
    doc = search.document(subject, text if index_body else "", names, addresses)
    search.index(session, article_id, doc, ticket.language)
    if mail.message_id:
        db.defer_insert(
            session,
            MESSAGE_REFS,
            {"message_id": mail.message_id[:998], "ticket_id": ticket.id, "direction": "in"},
        )
    return int(article_id)


def copy(session: Session, article_id: int, ticket: TicketRef) -> int:
    """The article again on another ticket (a split): a new row with the same raw bytes
    and attachment blobs (no bytes are stored twice), indexed for search; the original
    stays where it was."""
    conn = session.connection()
    row = conn.execute(select(_A).where(_A.c.id == article_id)).one()._asdict()
    row.pop("id")
    row["ticket_id"] = ticket.id
    new_id = int(conn.execute(_INS_ARTICLE, row).scalar_one())
    parts = conn.execute(select(_AT).where(_AT.c.article_id == article_id)).all()
    if parts:
        copies = [{**p._asdict(), "article_id": new_id} for p in parts]
        for part in copies:
            part.pop("id")
        conn.execute(_INS_ATTACHMENT, copies)
    addresses = (row["from_addr"], row["from_name"], row["to_addrs"], row["cc_addrs"])
    names = (p.filename for p in parts)
    body = search.indexed_body(row["body_text"], row["protection"])
    doc = search.document(row["subject"], body, names, addresses)
    search.index(session, new_id, doc, ticket.language)
    return new_id


# -- attachments out: one rule for the CLI, the page and the notifications -------------


@dataclass(frozen=True)
class FileRef:
    """An attachment as it is listed: where it belongs, its name, type and size."""

    id: int
    article_id: int
    filename: str
    content_type: str
    size: int
    internal: bool


def files(
    conn: Connection, ticket_id: int, *, public: bool = False, article_id: int = 0
) -> list[FileRef]:
    """A ticket's attachments in order (of one article when article_id is given);
    public: only those of articles the customer sees (not internal, not system)."""
    stmt = (
        select(_AT.c.id, _AT.c.article_id, _AT.c.filename, _AT.c.content_type, _AT.c.size)
        .add_columns(_A.c.internal)
        .join(_A, _A.c.id == _AT.c.article_id)
        .where(_A.c.ticket_id == ticket_id)
        .order_by(_AT.c.id)
    )
    if article_id:
        stmt = stmt.where(_A.c.id == article_id)
    if public:
        stmt = stmt.where(_A.c.internal.is_(False), _A.c.sender_type.in_(("customer", "agent")))
    return [FileRef(*row) for row in conn.execute(stmt)]


def file_data(
    conn: Connection, ticket_id: int, attachment_id: int, *, public: bool = False
) -> tuple[FileRef, bytes] | None:
    """One attachment of this ticket and its bytes; None when it is not the ticket's (or,
    public, not the customer's to see)."""
    found = [f for f in files(conn, ticket_id, public=public) if f.id == attachment_id]
    if not found:
        return None
    data = conn.execute(
        select(Blob.__table__.c.data)
        .join(_AT, _AT.c.blob_id == Blob.__table__.c.id)
        .where(_AT.c.id == attachment_id)
    ).scalar_one()
    return found[0], bytes(data)


def blob_id(conn: Connection, table: Table, data: bytes) -> int:
    """Store bytes once per SHA-256 and return the row id."""
    digest = hashlib.sha256(data).hexdigest()
    stmt = db.upsert_stmt(conn.dialect.name, table, "sha256", ("id",))
    return int(db.prepared(stmt).scalar(conn, {"sha256": digest, "size": len(data), "data": data}))


def remember_customer(
    conn: Connection, mail: ParsedMail
) -> tuple[int | None, str | None, int | None]:
    """(id, stored language, company id) of the sender, created on first contact with
    its company (tickets/companies.py); none for an address longer than the column (cut
    short it would be somebody else's)."""
    if not mail.from_addr or len(mail.from_addr) > addresses.MAX_LENGTH:
        return None, None, None
    stmt = companies.customer_upsert(conn.dialect.name)
    customer_id, language, company_id = db.prepared(stmt).first(
        conn,
        {
            "address": mail.from_addr,
            "member": mail.from_addr,
            "domain": companies.domain_of(mail.from_addr),
            "name": mail.from_name[:200],
            "language": mail.content_language,
            "created_at": utcnow(),
        },
    )
    return customer_id, language, company_id


def _protection(mail: ParsedMail, index_body: bool) -> str:
    """The article's protection column: the mail's Protection, and whether its text was
    left out of the index (what reindex and unindex must know to make the same words)."""
    if mail.protection is None:
        return ""
    data = dict(mail.protection.__dict__)
    if not index_body:
        data["unindexed"] = True
    return json.dumps(data, sort_keys=True)


_A, _AT = Article.__table__, Attachment.__table__
_INS_ARTICLE = insert(_A).returning(_A.c.id)
_INS_ATTACHMENT = insert(_AT)
_INS_ARTICLE_FAST = db.Prepared(_INS_ARTICLE)  # every mail: on the driver's cursor


@dataclass(frozen=True)
class Received:
    """A ticket's first customer mail as it came: what `ham` files again."""

    raw: bytes
    envelope_sender: str
    envelope_recipient: str


def first_received(conn: Connection, ticket_id: int) -> Received | None:
    """The raw bytes and envelope of the ticket's first mail from outside, or None
    (purged, or none)."""
    r = RawMessage.__table__
    row = conn.execute(
        select(r.c.data, _A.c.envelope_sender, _A.c.envelope_recipient)
        .join(r, r.c.id == _A.c.raw_id)
        .where(_A.c.ticket_id == ticket_id, _A.c.direction == "in", _A.c.sender_type == "customer")
        .order_by(_A.c.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    return Received(bytes(row.data), row.envelope_sender, row.envelope_recipient)


def purge(conn: Connection, ticket_id: int) -> int:
    """Forget what a ticket's mail said (Junk after its days): text, HTML, raw bytes,
    attachments and the search index entries go; the rows, addresses, subjects and
    the history stay, so what was purged is still told. How many articles."""
    ids = list(
        conn.execute(
            select(_A.c.id).where(
                _A.c.ticket_id == ticket_id,
                (_A.c.raw_id.is_not(None)) | (_A.c.body_text != "") | (_A.c.body_html != ""),
            )
        ).scalars()
    )
    if not ids:
        return 0
    search.unindex(conn, ids)
    raw_ids = set(
        conn.execute(select(_A.c.raw_id).where(_A.c.id.in_(ids), _A.c.raw_id.is_not(None)))
        .scalars()
        .all()
    )
    blob_ids = set(conn.execute(select(_AT.c.blob_id).where(_AT.c.article_id.in_(ids))).scalars())
    conn.execute(delete(_AT).where(_AT.c.article_id.in_(ids)))
    conn.execute(update(_A).where(_A.c.id.in_(ids)).values(raw_id=None, body_text="", body_html=""))
    # bytes stored once per content: gone only where nothing else still points at them
    r, b = RawMessage.__table__, Blob.__table__
    if raw_ids:
        used = select(_A.c.raw_id).where(_A.c.raw_id.in_(raw_ids))
        conn.execute(delete(r).where(r.c.id.in_(raw_ids), r.c.id.not_in(used)))
    if blob_ids:
        used = select(_AT.c.blob_id).where(_AT.c.blob_id.in_(blob_ids))
        conn.execute(delete(b).where(b.c.id.in_(blob_ids), b.c.id.not_in(used)))
    return len(ids)
