"""Articles: a received mail's row, its raw bytes and attachments (stored once per
SHA-256), its search document and its Message-ID for follow-ups; customers are
remembered on first contact."""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import Connection, Table, insert, select
from sqlalchemy.orm import Session

from otrs_mailgate.mail.parse import ParsedMail
from otrs_mailgate.store import db, search
from otrs_mailgate.store.models import (
    Article,
    Attachment,
    Blob,
    Customer,
    MessageRef,
    RawMessage,
    utcnow,
)
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
) -> int:
    """The article of a received mail (an agent's mail: what of it the customer sees)."""
    conn = session.connection()
    raw_id = blob_id(conn, RawMessage.__table__, mail.raw)
    subject = mail.subject or ("(unparsed message)" if mail.unparsed else "")
    text = mail.body_text if body_text is None else body_text
    article_id = conn.execute(
        _INS_ARTICLE,
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
            "created_at": at or utcnow(),
        },
    ).scalar_one()
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
    search.index(session, article_id, search.document(subject, text, names, addresses))
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
    search.index(
        session, new_id, search.document(row["subject"], row["body_text"], names, addresses)
    )
    return new_id


def blob_id(conn: Connection, table: Table, data: bytes) -> int:
    """Store bytes once per SHA-256 and return the row id."""
    digest = hashlib.sha256(data).hexdigest()
    stmt = db.upsert_stmt(conn.dialect.name, table, "sha256", ("id",))
    return int(conn.execute(stmt, {"sha256": digest, "size": len(data), "data": data}).scalar_one())


def remember_customer(conn: Connection, mail: ParsedMail) -> tuple[int | None, str | None]:
    """(id, stored language) of the sender, created on first contact."""
    if not mail.from_addr:
        return None, None
    row = conn.execute(
        db.upsert_stmt(conn.dialect.name, Customer.__table__, "address", ("id", "language")),
        {
            "address": mail.from_addr[:320],
            "name": mail.from_name[:200],
            "language": mail.content_language,
            "created_at": utcnow(),
        },
    ).one()
    return row.id, row.language


_A, _AT = Article.__table__, Attachment.__table__
_INS_ARTICLE = insert(_A).returning(_A.c.id)
_INS_ATTACHMENT = insert(_AT)
