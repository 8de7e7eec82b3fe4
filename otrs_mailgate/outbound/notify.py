"""Tell agents about customer mail: one notification per agent, each with its own reply address.

A new ticket goes to the agents with rw access to its queue; a follow-up goes to
the owner, or to the queue's agents while the ticket has no (enabled) owner.
The Reply-To of each notification is `<queue local>+<token>@<domain>`, a token
for that agent and that ticket: answering the notification is how an agent
works the ticket.  Customers never get these addresses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import Config, QueueConfig
from otrs_mailgate.mail import bounces, tokens
from otrs_mailgate.mail.addresses import ascii_lower
from otrs_mailgate.mail.commands import VOCABULARY
from otrs_mailgate.mail.compose import Response, new_message_id
from otrs_mailgate.mail.parse import ParsedMail
from otrs_mailgate.outbound import outbox
from otrs_mailgate.site import Site
from otrs_mailgate.store.models import Article, Queue, Ticket
from otrs_mailgate.tickets import agents, articles, customers, history, links, state, watchers
from otrs_mailgate.tickets.agents import AgentRef
from otrs_mailgate.tickets.refs import OPEN_STATES, TicketRef

MAX_TEXT = 20_000  # characters of the customer's text quoted in a notification


def reply_address(
    site: Site, queue: QueueConfig, agent: AgentRef, ticket_id: int
) -> tuple[str, dt.date]:
    expires = dt.date.today() + dt.timedelta(days=site.config.agents.token_days)
    token = tokens.make(agent.secret, agent.id, ticket_id, "command", expires)
    return tokens.address(queue.addresses[0], token), expires


def queue_workers(session: Session, queue_id: int) -> list[AgentRef]:
    """The rw agents of a queue, asked once per queue and transaction (a batch of mail
    to one queue, or a scheduler pass over many of its tickets, asks once)."""
    cache = session.info.setdefault("queue_workers", {})
    if queue_id not in cache:
        cache[queue_id] = agents.workers(session.connection(), queue_id)
        known = session.info.setdefault(ACCESS, {})
        known.update({(a.id, queue_id): "rw" for a in cache[queue_id]})
    return cache[queue_id]


ACCESS = "agent_access"  # session.info: (agent id, queue id) -> rw | ro | None


def may_read(session: Session, agent: AgentRef, queue_id: int) -> bool:
    """The agent (enabled) holds a grant on the queue now: only then does a mail about one
    of its tickets go to the agent (issue 25: an owner kept getting the customer's text
    after the ticket moved to a queue the owner has no grant on)."""
    known = session.info.setdefault(ACCESS, {})
    key = (agent.id, queue_id)
    if key not in known:
        known[key] = agents.access(session.connection(), agent.id, queue_id)
    return known[key] is not None


def owner_or_queue(session: Session, owner_id: int | None, queue_id: int) -> list[AgentRef]:
    """The ticket's owner while enabled and allowed in its queue, else every rw agent of
    the queue."""
    owner = agents.by_id(session.connection(), owner_id) if owner_id else None
    if owner is not None and owner.enabled and may_read(session, owner, queue_id):
        return [owner]
    return queue_workers(session, queue_id)


def followers(session: Session, ticket: TicketRef) -> list[AgentRef]:
    """Who hears what the owner hears: the owner (or, without one, the queue's rw agents)
    and the ticket's watchers, each once; to_agents drops those without a grant."""
    found = {a.id: a for a in owner_or_queue(session, ticket.owner_id, ticket.queue_id)}
    for agent in watchers.of(session.connection(), ticket.id):
        if agent.enabled:
            found.setdefault(agent.id, agent)
    return list(found.values())


def to_agents(
    site: Site,
    session: Session,
    ticket: TicketRef,
    queue: QueueConfig,
    recipients: Iterable[AgentRef | str],
    *,
    template: str,
    subject: str,
    vars: dict[str, Any],
    history_type: str,
    in_reply_to: str = "",
    references: tuple[str, ...] = (),
) -> int:
    """One mail per recipient about a ticket; an agent's carries its own reply address
    (answering it is how the agent works the ticket), a plain address gets none.  An
    agent without a grant on the ticket's queue gets nothing (the history says so)."""
    assert VOCABULARY, "import otrs_mailgate.ingest.commands first: notifications list them"
    tags = site.tags
    common = {
        "number": ticket.number,
        "title": ticket.title,
        "state": ticket.state,
        "queue_name": queue.display_name or queue.name,
        "queue_address": queue.addresses[0],
        "example_tag": f"[{tags.hook}{tags.divider}{ticket.number} close time=15m]",
        "commands": ", ".join(VOCABULARY),
    }
    count = 0
    for recipient in recipients:
        if isinstance(recipient, AgentRef) and not may_read(session, recipient, ticket.queue_id):
            history.append(
                session, ticket.id, "AgentNotNotified", "system",
                agent=recipient.login, reason=f"no grant on queue {ticket.queue}",
            )  # fmt: skip
            continue
        if isinstance(recipient, AgentRef):
            reply_to, expires = reply_address(site, queue, recipient, ticket.id)
            to, to_name, until = recipient.address, recipient.name, expires.isoformat()
        else:
            reply_to, to, to_name, until = "", recipient, "", ""
        response = Response(
            template=template,
            language=site.config.system.language,
            from_addr=queue.addresses[0],
            from_name=f"{queue.display_name or queue.name} (otrs-mailgate)",
            to=to,
            to_name=to_name,
            subject=tags.build(ticket.number, subject),
            vars={**common, **vars, "expires": until, "agent": reply_to != ""},
            in_reply_to=in_reply_to,
            references=references,
            auto_submitted="auto-generated",
            reply_to=reply_to,
        )
        outbox.send(session, site, ticket.id, template, response, history_type)
        count += 1
    return count


def notify(
    site: Site,
    session: Session,
    ticket: TicketRef,
    mail: ParsedMail,
    queue: QueueConfig,
    *,
    new: bool,
    bounce: bounces.Report | None = None,
    article_id: int | None = None,
    skip: set[str] | frozenset[str] = frozenset(),
) -> int:
    """Queue the notifications for one customer mail (its article's attachments named,
    with their size and a link to the agents' page); returns how many."""
    recipients = queue_workers(session, ticket.queue_id) if new else followers(session, ticket)
    # An agent is not told of what it wrote itself: an agent's robot answering a
    # notification at the queue address would otherwise be notified of its own answer.
    recipients = [a for a in recipients if a.address != mail.from_addr and a.address not in skip]
    template = "notification_new" if new else "notification_followup"
    if bounce is not None:
        template = "notification_bounce"
    customer = f"{mail.from_name} <{mail.from_addr}>" if mail.from_name else mail.from_addr
    text = (
        mail.body_text if len(mail.body_text) <= MAX_TEXT else mail.body_text[:MAX_TEXT] + "\n[...]"
    )
    shield = mail.protection
    if shield is not None and shield.encrypted:
        # what came encrypted never leaves in plain text: the agent reads it on the page
        text = (
            "[The customer wrote encrypted; the text is not repeated in this mail. "
            "Read it on the status page, or with `otrs-mailgate ticket show`.]"
            if shield.decrypted
            else f"[Encrypted, and it could not be decrypted: {shield.problem}. The mail "
            "is stored as it came.]"
        )
    return to_agents(
        site,
        session,
        ticket,
        queue,
        recipients,
        template=template,
        subject=mail.subject or ticket.title,
        vars={
            "customer": customer or "(unknown sender)",
            "text": text,
            "protection": shield.line() if shield is not None else "",
            "failures": [asdict(f) for f in bounce.failures] if bounce else [],
            "files": _files(site, session, ticket, article_id),
        },
        history_type="AgentNotified",
        in_reply_to=mail.message_id,
        references=tuple(mail.references),
    )


def _files(
    site: Site, session: Session, ticket: TicketRef, article_id: int | None
) -> list[dict[str, Any]]:
    """An article's attachments as a notification lists them: name, size, and the
    download link on the agents' page (empty without a page)."""
    if article_id is None:
        return []
    web = site.config.web
    base = f"{web.base_url()}/agent/ticket/{ticket.number}/file/" if web.enabled else ""
    found = articles.files(session.connection(), ticket.id, article_id=article_id)
    return [
        {"name": f.filename, "size": f.size, "url": f"{base}{f.id}" if base else ""} for f in found
    ]


def changed(
    site: Site,
    session: Session,
    ticket: TicketRef,
    actor: AgentRef,
    changes: list[str],
    owner_before: int | None = None,
) -> int:
    """An agent changed the ticket (state, owner, queue, priority, ...): its owner (and
    the one it had before, if the change took it away) and its watchers hear it, not
    the one who did it; how many were told."""
    conn = session.connection()
    told = 0
    roles: list[tuple[AgentRef, str]] = []
    for owner_id in dict.fromkeys((ticket.owner_id, owner_before)):
        owner = agents.by_id(conn, owner_id) if owner_id else None
        if owner is not None:
            roles.append((owner, "owner" if owner_id == ticket.owner_id else "former owner"))
    roles += [(a, "watcher") for a in watchers.of(conn, ticket.id)]
    seen = {actor.id}
    queue = site.queue_of(ticket.queue)
    for agent, role in roles:
        if agent.id in seen or not agent.enabled:
            continue
        seen.add(agent.id)
        told += to_agents(
            site, session, ticket, queue, [agent],
            template="notification_changed", subject=ticket.title,
            vars={
                "changed_by": actor.display, "changes": changes, "role": role,
                "customer": customers.label(conn, ticket.customer_id),
            },
            history_type="AgentNotified",
        )  # fmt: skip
    return told


def moved(
    site: Site,
    session: Session,
    ticket: TicketRef,
    old_queue: str,
    actor: str,
    *,
    tell: QueueConfig | None = None,
) -> int:
    """After a ticket was moved (state.move): the new queue's agents are told (not the
    one who moved it), and the customer when `tell` (the queue whose tell_customer
    lists "moved") is given; the customer's notice comes from the new queue.  Returns
    how many agents were told."""
    target = site.queue_of(ticket.queue)
    if tell is not None and "moved" in tell.tell_customer:
        tell_customer(
            site, session, ticket, "customer_moved", target,
            new_queue=target.display_name or target.name,
        )  # fmt: skip
    workers = [
        a for a in queue_workers(session, ticket.queue_id) if a.address != ascii_lower(actor)
    ]
    told = to_agents(
        site, session, ticket, target, workers,
        template="notification_moved", subject=ticket.title,
        vars={
            "old_queue": old_queue,
            "moved_by": actor,
            "customer": customers.label(session.connection(), ticket.customer_id),
        },
        history_type="AgentNotified",
    )  # fmt: skip
    _moved_away(site, session, ticket, target, old_queue, actor)
    return told


def _moved_away(
    site: Site, session: Session, ticket: TicketRef, target: QueueConfig, old: str, actor: str
) -> None:
    """An owner without a grant on the new queue is told once that the ticket left their
    queues, with nothing of its content (no title, no customer, no reply address), and
    its lock is let go so the new queue's agents can take it."""
    owner = agents.by_id(session.connection(), ticket.owner_id) if ticket.owner_id else None
    if owner is None or not owner.enabled or owner.address == ascii_lower(actor):
        return
    if may_read(session, owner, ticket.queue_id):
        return
    if ticket.lock_until is not None:
        reason = f"moved out of {owner.login}'s queues"
        state.unlock(session, ticket.id, actor="system", reason=reason)
        ticket.lock_until = None
    words = MOVED_AWAY.get(site.config.system.language, MOVED_AWAY["en"])
    to_agents(
        site, session, ticket, target, [owner.address],
        template="notification_moved_away", subject=words,
        vars={"old_queue": old, "moved_by": actor, "title": "", "state": ""},
        history_type="AgentNotified",
    )  # fmt: skip


MOVED_AWAY = {
    "en": "moved to a queue you have no access to",
    "de": "in eine Queue verschoben, auf die Sie keinen Zugriff haben",
}


def tell_customer(
    site: Site,
    session: Session,
    ticket: TicketRef,
    template: str,
    fallback: QueueConfig,
    **extra: str,
) -> bool:
    """An automatic mail to a ticket's customer, in the customer's language; False when
    the ticket has no customer address."""
    conn = session.connection()
    to, name, language = customers.contact(conn, ticket.customer_id)
    if not to:
        return False
    queue = site.config.queue_by_name(ticket.queue) or fallback
    last = conn.execute(_SEL_LAST_REPLY, {"t": ticket.id}).scalar() or ""
    response = Response(
        template=template,
        language=site.responder.pick_language(language, ticket.language),
        from_addr=queue.addresses[0],
        from_name=queue.display_name or queue.name,
        to=to,
        to_name=name,
        subject=site.tags.build(ticket.number, ticket.title),
        vars={
            "tag": site.tags.tag(ticket.number),
            "title": ticket.title,
            "customer_name": name,
            "queue_name": queue.display_name or queue.name,
            "last_reply": last,
            **extra,
        },
        auto_submitted="auto-generated",
    )
    outbox.send(session, site, ticket.id, template, response, "CustomerNotified")
    return True


_SEL_OPEN_TICKETS = (
    select(
        Ticket.id, Ticket.number, Ticket.title, Ticket.state, Ticket.queue_id,
        Queue.name.label("queue"), Ticket.customer_id, Ticket.updated_at,
    )
    .join(Queue, Queue.id == Ticket.queue_id)
    .where(Ticket.state.in_(OPEN_STATES), Ticket.merged_into_id.is_(None))
    .order_by(Ticket.updated_at.desc())
    .limit(500)
)  # fmt: skip
_SEL_LAST_REPLY = (
    select(Article.body_text)
    .where(
        Article.ticket_id == bindparam("t"),
        Article.sender_type == "agent",
        Article.internal.is_(False),
    )
    .order_by(Article.id.desc())
    .limit(1)
)


def mail_login_link(session: Session, config: Config, who: str) -> tuple[AgentRef, str]:
    """Queue a mail with a login link to the agent (login or address); (agent, url)."""
    agent = agents.find(session.connection(), who)
    if agent is None:
        raise agents.AgentError(f"no agent {who!r}")
    if not agent.enabled:
        raise agents.AgentError(f"agent {agent.login} is disabled")
    url = links.agent_login_url(config, agent)
    queue = config.queue[0]
    response = Response(
        template="agent_login",
        language=config.system.language,
        from_addr=queue.addresses[0],
        from_name=queue.display_name or queue.name,
        to=agent.address,
        to_name=agent.name,
        subject="Your link to the status page",
        vars={
            "url": url,
            "until": links.link_expiry(config).isoformat(),
            "agent_name": agent.name or agent.login,
        },
        auto_submitted="auto-generated",
    )
    outbox.enqueue(session, None, "agent_login", response, new_message_id(config.system.domain))
    return agent, url


def digest(site: Site, session: Session, who: str) -> tuple[AgentRef, int]:
    """One mail to an agent listing the open tickets of the queues they hold a grant on,
    each with the agent's own reply address where they may work it (rw): for an agent
    added after those tickets were made, whose notifications went to others."""
    conn = session.connection()
    agent = agents.find(conn, who)
    if agent is None:
        raise agents.AgentError(f"no agent {who!r}")
    if not agent.enabled:
        raise agents.AgentError(f"agent {agent.login} is disabled")
    rows = conn.execute(_SEL_OPEN_TICKETS).all()
    entries = []
    for row in rows:
        queue = site.config.queue_by_name(row.queue)
        if queue is None:
            continue
        access = agents.access(conn, agent.id, row.queue_id)
        if access is None:
            continue
        address = reply_address(site, queue, agent, row.id)[0] if access == "rw" else ""
        entries.append(
            {
                "number": row.number,
                "tag": site.tags.tag(row.number),
                "title": row.title,
                "queue": queue.display_name or queue.name,
                "state": row.state,
                "customer": customers.label(conn, row.customer_id),
                "updated": row.updated_at.isoformat(timespec="minutes") if row.updated_at else "",
                "reply_to": address,
            }
        )
    queue = site.config.queue[0]
    response = Response(
        template="agent_digest",
        language=site.config.system.language,
        from_addr=queue.addresses[0],
        from_name=f"{queue.display_name or queue.name} (otrs-mailgate)",
        to=agent.address,
        to_name=agent.name,
        subject=f"Open tickets in your queues: {len(entries)}",
        vars={"agent_name": agent.name or agent.login, "tickets": entries},
        auto_submitted="auto-generated",
    )
    outbox.enqueue(
        session, None, "agent_digest", response, new_message_id(site.config.system.domain)
    )
    return agent, len(entries)
