"""Spam and ham, as an agent says it by mail (`spam`, `ham` in the subject tag) or an
admin on the command line (`ticket spam N`, `ticket ham N`): one piece of code for both.

`spam`: the ticket goes to the Junk queue, closed; automatic answers to its customer
not yet sent are dropped; the raw mail is taught to the filter as spam.
`ham` on a Junk ticket: its first mail is routed again (its envelope recipient, the
filters), the ticket moves to that queue as a new ticket, its customer is remembered,
the acknowledgement goes out if the sender is authenticated (else it is held like any
other), the queue's agents are told and the SLA clocks start; the mail is taught as
ham. `ham` on any other ticket vouches for the sender: held answers go out.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update
from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import QueueConfig
from otrs_mailgate.ingest import auth, route, senderauth
from otrs_mailgate.ingest.outcome import UnknownRecipient
from otrs_mailgate.mail.classify import classify
from otrs_mailgate.mail.parse import parse
from otrs_mailgate.outbound import learn, notify, outbox, replies
from otrs_mailgate.site import Site
from otrs_mailgate.store.models import Ticket
from otrs_mailgate.tickets import articles, history, sla, state
from otrs_mailgate.tickets.refs import TicketRef


class JunkError(ValueError):
    """Why spam/ham cannot be done; the message says it to the agent or admin."""


def junk_queue(site: Site) -> QueueConfig:
    name = site.config.spam.junk_queue
    queue = site.config.queue_by_name(name) if name else None
    if queue is None or not queue.junk:
        raise JunkError("there is no Junk queue: [spam] names no filter or no junk_queue")
    return queue


def in_junk(site: Site, ticket: TicketRef) -> bool:
    queue = site.config.queue_by_name(ticket.queue)
    return queue is not None and queue.junk


def check(site: Site, session: Session, ticket: TicketRef, what: str) -> str:
    """What `what` (spam | ham) will do to the ticket, or JunkError: checked before
    anything is applied, so a mail's commands are all done or none."""
    junk = junk_queue(site)
    taught = " and taught to the filter" if learn.configured(site.config.spam) else ""
    if what == "spam":
        if ticket.queue == junk.name and ticket.state == "closed":
            return f"was spam in {junk.name} already"
        return f"spam: moved to {junk.name}, closed, nothing sent to the customer{taught}"
    if not in_junk(site, ticket):
        return f"not spam: automatic answers held for the customer go out{taught}"
    if articles.first_received(session.connection(), ticket.id) is None:
        raise JunkError(f"its mail was purged from {junk.name}: nothing to file again")
    return f"not spam: filed again as a new ticket in {_target(site, session, ticket).name}{taught}"


def spam(site: Site, session: Session, ticket: TicketRef, actor: str, now: dt.datetime) -> None:
    junk = junk_queue(site)
    if ticket.queue == junk.name and ticket.state == "closed":
        return
    if ticket.queue != junk.name:
        state.move(session, ticket, junk.name, site.queue_id(junk.name), actor=actor, now=now)
    state.set_state(session, ticket, "closed", actor=actor, reason="spam", now=now)
    outbox.cancel(session, ticket.id, f"{actor} said it is spam")
    history.append(session, ticket.id, "MarkedSpam", actor)
    sla.recompute(session.connection(), site.config, ticket.id)
    _teach(site, session, ticket, "learn_spam")


def ham(
    site: Site,
    session: Session,
    ticket: TicketRef,
    actor: str,
    now: dt.datetime,
    dns: auth.DNSFunc | None = None,
) -> list[str]:
    """Apply `ham`; notes on what went out."""
    notes: list[str] = []
    if not in_junk(site, ticket):
        n = outbox.release_held(session, ticket.id, f"{actor} said it is not spam")
        history.append(session, ticket.id, "MarkedHam", actor)
        _teach(site, session, ticket, "learn_ham")
        return [f"{n} held automatic answer(s) released"]
    conn = session.connection()
    received = articles.first_received(conn, ticket.id)
    if received is None:
        raise JunkError("its mail was purged: nothing to file again")
    mail = parse(received.raw, site.config.lmtp.max_parts)
    queue = _target(site, session, ticket)
    state.move(session, ticket, queue.name, site.queue_id(queue.name), actor=actor, now=now)
    customer_id, _, company_id = articles.remember_customer(conn, mail)
    conn.execute(
        update(Ticket)
        .where(Ticket.id == ticket.id)
        .values(customer_id=customer_id, company_id=company_id)
    )
    ticket.customer_id = customer_id
    state.set_state(session, ticket, "new", actor=actor, reason="not spam", now=now)
    history.append(session, ticket.id, "MarkedHam", actor)
    # "" is how an unknown envelope sender is stored (an import): not a null return path
    sender = received.envelope_sender or None
    kind = classify(mail, sender, site.own_domains, site.own_addresses)
    if queue.acknowledge:
        dnsfunc = auth.dns_with_pins(site.dkim_keys, dns)
        authserv = site.config.agents.authserv_id
        replies.respond(
            session, site, ticket, mail, queue, kind, "acknowledgement", notes,
            vouched=lambda: senderauth.vouched(mail, authserv, dnsfunc),
        )  # fmt: skip
    told = notify.notify(site, session, ticket, mail, queue, new=True)
    notes.append(f"{told} agent(s) of {queue.name} told")
    sla.recompute(conn, site.config, ticket.id)
    _teach(site, session, ticket, "learn_ham")
    return notes


def _target(site: Site, session: Session, ticket: TicketRef) -> QueueConfig:
    """The queue a Junk ticket's first mail routes to now: its envelope recipient's (or
    its headers'), then the filters; the first queue where that is Junk or gone."""
    received = articles.first_received(session.connection(), ticket.id)
    fallback = next(q for q in site.config.queue if not q.junk)
    if received is None:
        return fallback
    mail = parse(received.raw, site.config.lmtp.max_parts)
    try:
        queue = route.queue_for_mail(site, received.envelope_recipient or None, mail)
    except UnknownRecipient:  # the address was retired since
        queue = fallback
    decision = route.decide(site, mail)
    if decision is not None and decision.queue:
        queue = site.config.queue_by_name(decision.queue) or queue
    return fallback if queue.junk else queue


def _teach(site: Site, session: Session, ticket: TicketRef, kind: str) -> None:
    if not learn.configured(site.config.spam):
        return
    received = articles.first_received(session.connection(), ticket.id)
    if received is not None:
        outbox.teach(session, ticket.id, kind, received.raw)
