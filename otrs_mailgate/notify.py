"""Tell agents about customer mail: one notification per agent, each with its own reply address.

A new ticket goes to the agents with rw access to its queue; a follow-up goes to
the owner, or to the queue's agents while the ticket has no (enabled) owner.
The Reply-To of each notification is `<queue local>+<token>@<domain>`, a token
for that agent and that ticket: answering the notification is how an agent
works the ticket.  Customers never get these addresses.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from . import agents, bounces, tokens
from .agents import AgentRef
from .commands import VOCABULARY
from .config import QueueConfig
from .parse import ParsedMail
from .responses import Response

if TYPE_CHECKING:
    from .ingest import Pipeline, TicketRef

MAX_TEXT = 20_000  # characters of the customer's text quoted in a notification


def reply_address(
    pipeline: Pipeline, queue: QueueConfig, agent: AgentRef, ticket_id: int
) -> tuple[str, dt.date]:
    expires = dt.date.today() + dt.timedelta(days=pipeline.config.agents.token_days)
    token = tokens.make(agent.secret, agent.id, ticket_id, "command", expires)
    return tokens.address(queue.addresses[0], token), expires


def notify(
    pipeline: Pipeline,
    session: Session,
    ticket: TicketRef,
    mail: ParsedMail,
    queue: QueueConfig,
    *,
    new: bool,
    bounce: bounces.Report | None = None,
) -> int:
    """Queue the notifications for one customer mail; returns how many."""
    conn = session.connection()
    owner = agents.by_id(conn, ticket.owner_id) if ticket.owner_id and not new else None
    if owner is not None and owner.enabled:
        recipients = [owner]
    else:  # asked once per queue and transaction: a batch of mail to one queue asks once
        cache = session.info.setdefault("queue_workers", {})
        if ticket.queue_id not in cache:
            cache[ticket.queue_id] = agents.workers(conn, ticket.queue_id)
        recipients = cache[ticket.queue_id]
    template = "notification_new" if new else "notification_followup"
    if bounce is not None:
        template = "notification_bounce"
    customer = f"{mail.from_name} <{mail.from_addr}>" if mail.from_name else mail.from_addr
    text = (
        mail.body_text if len(mail.body_text) <= MAX_TEXT else mail.body_text[:MAX_TEXT] + "\n[...]"
    )
    for agent in recipients:
        address, expires = reply_address(pipeline, queue, agent, ticket.id)
        response = Response(
            template=template,
            language=pipeline.config.system.language,
            from_addr=queue.addresses[0],
            from_name=f"{queue.display_name or queue.name} (otrs-mailgate)",
            to=agent.address,
            to_name=agent.name,
            subject=pipeline.tags.build(ticket.number, mail.subject or ticket.title),
            vars={
                "number": ticket.number,
                "title": ticket.title,
                "state": ticket.state,
                "customer": customer or "(unknown sender)",
                "text": text,
                "queue_name": queue.display_name or queue.name,
                "queue_address": queue.addresses[0],
                "example_tag": f"[{pipeline.tags.hook}{pipeline.tags.divider}{ticket.number} "
                "close time=15m]",
                "commands": ", ".join(VOCABULARY),
                "expires": expires.isoformat(),
                "failures": [asdict(f) for f in bounce.failures] if bounce else [],
            },
            in_reply_to=mail.message_id,
            references=tuple(mail.references),
            auto_submitted="auto-generated",
            reply_to=address,
        )
        pipeline.send(session, ticket.id, template, response, "AgentNotified")
    return len(recipients)
