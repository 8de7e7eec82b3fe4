"""Stages report and article: a delivery report becomes a note on the ticket whose mail
bounced; any other mail that is no accepted command becomes a customer article, on the
ticket it follows up or on a new one."""

from __future__ import annotations

import logging

from sqlalchemy import update

from otrs_mailgate.ingest import match
from otrs_mailgate.ingest.trip import Stop, Trip
from otrs_mailgate.mail import addresses, bounces
from otrs_mailgate.mail.classify import HUMAN, REPORT
from otrs_mailgate.outbound import notify
from otrs_mailgate.store.models import Outbox, TicketLink
from otrs_mailgate.tickets import agents, articles, companies, history, refs, sla, state
from otrs_mailgate.tickets.refs import TicketRef

log = logging.getLogger(__name__)


def report(trip: Trip) -> Stop:
    """A delivery report: a note on the ticket whose mail bounced, never a ticket of its
    own, never answered; the ticket's agents are told once."""
    if trip.kind is None or trip.kind.kind != REPORT:
        return None
    conn, mail = trip.conn, trip.mail
    found = bounces.read(mail)
    ticket = None
    if found.original_message_id:
        row = conn.execute(match.SEL_REFS, {"ids": [found.original_message_id]}).first()
        ticket = refs.load(conn, row.ticket_id) if row else None
    ticket = ticket or match.find(trip)
    if ticket is None:  # not about mail of ours we know: keep the bytes, make nothing
        return match.keep_raw(trip, "delivery report about no mail of ours")
    trip.ticket = ticket
    trip.article_id = articles.store(
        trip.session, ticket, mail, trip.envelope.sender, trip.key,
        sender_type="system", internal=True,
    )  # fmt: skip
    failures = [
        {
            "recipient": f.recipient,
            "action": f.action,
            "status": f.status,
            "diagnostic": f.diagnostic,
        }
        for f in found.failures
    ]
    history.append(
        trip.session, ticket.id, "Bounce", mail.from_addr or "MAILER-DAEMON",
        article_id=trip.article_id, original=found.original_message_id, failures=failures,
    )  # fmt: skip
    if found.original_message_id:
        reason = "; ".join(
            f"{f.recipient}: {f.status} {f.diagnostic}".strip() for f in found.failures
        )
        conn.execute(
            update(Outbox.__table__)
            .where(Outbox.__table__.c.message_id == found.original_message_id)
            .values(status="bounced", last_error=reason[:2000] or "bounced")
        )
    # Mail to agents that bounced (their notification, transcript, digest) is told to
    # nobody: telling an agent whose address fails sends one more mail that bounces, and
    # each bounce of it would be told again (a loop, found by docs/getting-started).
    failed = {addresses.ascii_lower(f.recipient) for f in found.failures}
    agents_failing = {a.address for a in agents.by_addresses(conn, failed)}
    if agents_failing:
        history.append(
            trip.session, ticket.id, "AgentMailBounced", "system",
            agents=sorted(agents_failing), reason="an agent's address refuses mail: check it",
        )  # fmt: skip
        log.warning(
            "mail to agent(s) %s bounced (ticket %s): their address refuses mail",
            ", ".join(sorted(agents_failing)), ticket.number,
        )  # fmt: skip
    if trip.acknowledge and not (failed and failed <= agents_failing):
        queue = trip.site.config.queue_by_name(ticket.queue) or trip.queue
        assert queue is not None
        notify.notify(
            trip.site, trip.session, ticket, mail, queue, new=False, bounce=found,
            skip=agents_failing,
        )  # fmt: skip
    trip.notes.append("delivery report")
    return trip.result()


def article(trip: Trip) -> Stop:
    """The customer's article, on a new ticket when the match stage found none."""
    mail, kind = trip.mail, trip.kind
    assert kind is not None
    if trip.ticket is None:
        trip.ticket = new_ticket(trip)
    ticket = trip.ticket
    shield = mail.protection
    queue = trip.site.config.queue_by_name(ticket.queue) or trip.queue
    trip.article_id = articles.store(
        trip.session, ticket, mail, trip.envelope.sender, trip.key, at=trip.now,
        internal=trip.internal,
        index_body=not (shield and shield.encrypted) or bool(queue and queue.index_encrypted),
    )  # fmt: skip
    history.append(
        trip.session,
        ticket.id,
        "EmailCustomer" if trip.new else ("RefusedMail" if trip.internal else "FollowUp"),
        mail.from_addr or "unknown",
        article_id=trip.article_id,
        message_id=mail.message_id,
        classification=kind.kind,
        reason=kind.reason,
        unparsed=mail.unparsed,
        **({} if trip.customer_from == "From" else {"customer_from": trip.customer_from}),
    )
    reading = trip.spam
    if reading is not None and (reading.verdict is not None or reading.ignored):
        verdict = reading.verdict
        history.append(
            trip.session, ticket.id, "SpamCheck", "system", article_id=trip.article_id,
            **({"filter": verdict.filter, "score": verdict.score, "spam": verdict.spam}
               if verdict else {}),
            **({"ignored": reading.ignored} if reading.ignored else {}),
            **({"filed_in": ticket.queue} if trip.junk else {}),
        )  # fmt: skip
    if trip.item.imported:
        history.append(
            trip.session, ticket.id, "Imported", "system",
            article_id=trip.article_id, dated=trip.now.isoformat(), by=trip.dated_by,
        )  # fmt: skip
    if not trip.new:
        state.touch(trip.session, ticket.id, trip.now)
    if ticket.state == "pending" and kind.kind == HUMAN and not trip.internal:
        state.set_state(
            trip.session, ticket, "open", actor="system", reason="the customer wrote", now=trip.now
        )
        trip.notes.append("pending ticket opened again")
    return None


def new_ticket(trip: Trip) -> TicketRef:
    site, session, mail, queue, decision = (
        trip.site,
        trip.session,
        trip.mail,
        trip.queue,
        trip.decision,
    )
    assert queue is not None
    conn = session.connection()
    # spam makes no customer: a sender known as one passes `new_tickets = "reject"`
    customer_id, customer_language, company_id = (
        (None, None, None) if trip.junk else articles.remember_customer(conn, mail)
    )
    trip.company_id = company_id
    language = site.responder.pick_language(
        decision.language if decision else None,
        mail.content_language,
        customer_language,
        queue.language,
        site.config.system.language,
    )
    config = site.config
    priority = decision.priority if decision and decision.priority else 3
    clocks: dict[str, object] = {}
    if trip.clocks and config.sla and not trip.junk:  # into its INSERT (pipeline.clocks)
        named = any(s.companies for s in config.sla)
        company = companies.name_of(conn, company_id) if named else ""
        clocks = dict(sla.initial(config, queue.name, priority, company, trip.now))
    ticket = state.open_ticket(
        session,
        site.config,
        queue=queue.name,
        queue_id=site.queue_id(queue.name),
        title=site.tags.remove(mail.subject) if mail.subject else "(no subject)",
        customer_id=customer_id,
        company_id=company_id,
        language=language,
        priority=priority,
        now=trip.now,
        clocks=clocks,
        actor=mail.from_addr or "unknown",
        **({"filter": decision.name} if decision else {}),
    )
    follows = trip.followed
    if follows is not None:
        conn.execute(
            _INS_LINK, {"source_id": ticket.id, "target_id": follows.id, "kind": "follow-up-of"}
        )
        history.append(session, ticket.id, "Link", "system", follow_up_of=follows.number)
        history.append(session, follows.id, "Link", "system", followed_by=ticket.number)
    return ticket


_INS_LINK = TicketLink.__table__.insert()
