"""Automatic answers to customers (acknowledgement, follow-up received or rejected,
new tickets rejected) and the rules that hold them back: RFC 3834 machine mail, our
own addresses, and the loop limit (answers to one address in a sliding 24 hours)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import QueueConfig
from otrs_mailgate.mail import addresses
from otrs_mailgate.mail.classify import HUMAN, Classification
from otrs_mailgate.mail.compose import Response, new_message_id
from otrs_mailgate.mail.parse import ParsedMail
from otrs_mailgate.outbound import outbox
from otrs_mailgate.site import Site
from otrs_mailgate.store.models import utcnow
from otrs_mailgate.tickets import customers, faq, history
from otrs_mailgate.tickets.refs import TicketRef

log = logging.getLogger("otrs_mailgate.outbound.replies")


def why_not(session: Session, site: Site, kind: Classification, to: str) -> str:
    """Why an automatic answer to this sender must not go out, or ""."""
    if kind.kind != HUMAN:
        return kind.reason
    if not to:
        return "no customer address"
    try:
        addresses.canonical(to)
    except addresses.Unanswerable as exc:
        return f"the address cannot be answered: {exc}"
    if site.is_own(to):
        return "sender is our own address"
    limit = site.config.system.auto_response_limit
    since = utcnow() - dt.timedelta(hours=24)
    if outbox.responses_since(session, to, since, limit) >= limit:
        return f"loop limit: {limit} automatic answers to {to} in the last 24 hours"
    return ""


def stranger(session: Session, ticket: TicketRef, to: str) -> str:
    """Why a word about an existing ticket must not go to this sender, or "": ticket
    numbers can be guessed, and the answer carries the ticket's title (issue 19, item 7)."""
    if customers.is_party(session.connection(), ticket.id, ticket.customer_id, to):
        return ""
    return f"{to} is not the ticket's customer (its title is not shown to others)"


def respond(
    session: Session,
    site: Site,
    ticket: TicketRef,
    mail: ParsedMail,
    queue: QueueConfig,
    kind: Classification,
    template: str,
    notes: list[str],
    *,
    enabled: bool = True,
    vouched: Vouched | None = None,
) -> None:
    """An automatic answer to the customer, unless the mail came from a machine.  Under
    the queue's `acknowledge = "authenticated"` a sender nobody vouched for (DMARC, SPF
    or DKIM: `vouched`) gets it held, not sent: an agent's answer or `ham` lets it go."""
    if not enabled:
        notes.append("no auto response (disabled for this run)")
        return
    to = mail.from_addr
    reason = why_not(session, site, kind, to)
    if not reason and template != "acknowledgement":
        reason = stranger(session, ticket, to)
    if reason:
        history.append(session, ticket.id, "AutoResponseSuppressed", "system", reason=reason)
        notes.append(f"no auto response: {reason}")
        return
    held = ""
    if queue.acknowledge == "authenticated" and vouched is not None:
        ok, why = vouched()
        held = "" if ok else why
    language = ticket.language or "en"
    suggestions = []
    if template == "acknowledgement" and queue.suggest_faq:
        found = faq.suggest(
            session.connection(), queue.name, language, mail.subject, mail.body_text
        )
        suggestions = [{"id": e.id, "title": e.title, "text": e.text} for e in found]
    response = Response(
        template=template,
        language=language,
        from_addr=queue.addresses[0],
        from_name=queue.display_name or queue.name,
        to=to,
        to_name=mail.from_name,
        subject=site.tags.build(ticket.number, mail.subject or ticket.title),
        vars={
            "number": ticket.number,
            "title": ticket.title,
            "tag": site.tags.tag(ticket.number),
            "customer_name": mail.from_name,
            "queue_name": queue.display_name or queue.name,
            "status_url": site.status_url(session.connection(), ticket.id),
            "link_days": site.config.web.customer_link_days,
            "faq": suggestions,
        },
        in_reply_to=mail.message_id,
        references=tuple(mail.references),
    )
    sealed = mail.protection is not None and mail.protection.encrypted  # what it answers
    if held:
        outbox.send(
            session, site, ticket.id, template, response, "AutoResponseHeld", held=held,
            encrypted=sealed,
        )  # fmt: skip
        notes.append(f"auto response held: {held}")
        return
    outbox.send(
        session, site, ticket.id, template, response, "AutoResponseQueued", encrypted=sealed
    )


Vouched = Callable[[], tuple[bool, str]]


def reject_new(
    session: Session,
    site: Site,
    mail: ParsedMail,
    queue: QueueConfig,
    kind: Classification,
    notes: list[str],
    *,
    enabled: bool = True,
    vouched: Vouched | None = None,
) -> None:
    """A queue that takes no new tickets answers a new sender once (if the classifier,
    the loop limit and, under "authenticated", the sender's authentication let it), from
    its own address; there is no ticket to file on, so nothing is held."""
    to = mail.from_addr
    reason = "" if enabled else "auto responses disabled for this run"
    reason = reason or why_not(session, site, kind, to)
    if not reason and queue.acknowledge == "authenticated" and vouched is not None:
        ok, why = vouched()
        reason = "" if ok else why
    if reason:
        notes.append(f"no rejection sent: {reason}")
        log.info("rejection to <%s> not sent: %s", to, reason)
        return
    config = site.config
    response = Response(
        template="new_ticket_rejected",
        language=site.responder.pick_language(
            mail.content_language, queue.language, config.system.language
        ),
        from_addr=queue.addresses[0],
        from_name=queue.display_name or queue.name,
        to=to,
        to_name=mail.from_name,
        subject="Re: " + (mail.subject or "(no subject)"),
        vars={
            "customer_name": mail.from_name,
            "subject": mail.subject,
            "queue_name": queue.display_name or queue.name,
        },
        in_reply_to=mail.message_id,
        references=tuple(mail.references),
        auto_submitted="auto-replied",
    )
    outbox.enqueue(
        session, None, "new_ticket_rejected", response, new_message_id(config.system.domain)
    )
    notes.append("new tickets rejected: the sender was told")
