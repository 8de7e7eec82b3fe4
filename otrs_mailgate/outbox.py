"""The outbox: mail we decided to send, stored in the same transaction as the decision.

Nothing is sent from inside an ingest transaction; a sender task delivers the
rows afterwards.  The Message-ID of every row is remembered, so a reply to our
mail finds its ticket through In-Reply-To/References.
"""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.orm import Session

from .models import MessageRef, Outbox
from .parse import POLICY
from .responses import Composed

SMTP_POLICY = POLICY.clone(linesep="\r\n")


def enqueue(session: Session, ticket_id: int | None, kind: str, composed: Composed) -> None:
    conn = session.connection()
    conn.execute(
        _INSERT,
        {
            "ticket_id": ticket_id,
            "kind": kind,
            "mail_from": composed.mail_from,
            "rcpt_to": ",".join(composed.rcpt_to),
            "message_id": composed.message_id,
            "data": composed.message.as_bytes(policy=SMTP_POLICY),
            "status": "queued",
            "attempts": 0,
        },
    )
    if ticket_id is not None:
        conn.execute(
            _INSERT_REF,
            {"message_id": composed.message_id, "ticket_id": ticket_id, "direction": "out"},
        )


_INSERT = insert(Outbox.__table__)
_INSERT_REF = insert(MessageRef.__table__)
