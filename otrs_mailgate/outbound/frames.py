"""The texts around and inside an agent's answer that the site writes: the queue's
salutation and signature, and answer templates (tickets/answers.py).

They are jinja templates with one set of names (config.schema.FRAME_SAMPLE: customer,
ticket, agent, queue, and the acknowledgements' flat names) and are rendered when the
answer is decided, inside its transaction, so the outbox row holds the very text that
goes out however the template is edited afterwards.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import Connection

from otrs_mailgate.config.schema import QueueConfig
from otrs_mailgate.site import Site
from otrs_mailgate.tickets import companies, customers
from otrs_mailgate.tickets.agents import AgentRef
from otrs_mailgate.tickets.refs import TicketRef

# A first line that greets already ("Hi Anna,", "Sehr geehrte Frau Meier,"): the
# queue's salutation is not put above it.
GREETING = re.compile(
    r"^\s*(dear|hello|hi|hey|good (morning|afternoon|evening)|greetings|hallo|"
    r"guten (tag|morgen|abend)|sehr geehrte[rs]?|liebe[rs]?|moin|servus|gr[üu](ß|ss) gott|"
    r"bonjour|bonsoir|salut|cher|ch[èe]re|madame|monsieur|hola|buongiorno|ciao)\b",
    re.IGNORECASE,
)


def context(
    conn: Connection, site: Site, ticket: TicketRef, agent: AgentRef | None
) -> dict[str, Any]:
    """The names a frame or an answer template may use, for this ticket and agent."""
    address, name, _ = customers.contact(conn, ticket.customer_id)
    company = companies.name_of(conn, companies.of_ticket(conn, ticket.id))
    queue = site.queue_of(ticket.queue)
    tag = site.tags.tag(ticket.number)
    return {
        "customer": {"name": name, "address": address, "company": company},
        "ticket": {
            "number": ticket.number, "title": ticket.title, "tag": tag, "queue": ticket.queue,
            "state": ticket.state, "priority": ticket.priority,
            "url": site.status_url(conn, ticket.id),
        },
        "agent": {
            "name": agent.name if agent else "", "login": agent.login if agent else "",
            "address": agent.address if agent else "",
        },
        "queue": {
            "name": queue.name, "display_name": queue.display_name or queue.name,
            "address": queue.addresses[0],
        },
        "customer_name": name, "number": ticket.number, "title": ticket.title, "tag": tag,
        "queue_name": queue.display_name or queue.name,
    }  # fmt: skip


def pick(texts: dict[str, str], *languages: str | None) -> str:
    """The text in the first of these languages that has one, else the one for any
    language (""), else none."""
    for language in (*languages, ""):
        if language is not None and language in texts:
            return texts[language]
    return ""


def render(site: Site, source: str, ctx: dict[str, Any]) -> str:
    """TemplateError (its message says what) when the text cannot be rendered."""
    return site.responder.render_text(source, ctx).strip("\n")


def frame(
    site: Site, queue: QueueConfig, language: str, ctx: dict[str, Any], text: str
) -> tuple[str, str, list[str]]:
    """(salutation, signature, problems) of the queue for an answer in `language`;
    either is "" when the queue has none, the text greets already, or it failed (the
    problem is said, the answer goes without it rather than not at all)."""
    langs = (language, queue.language, site.config.system.language)
    problems: list[str] = []
    out = []
    for kind, texts in (("salutation", queue.salutation), ("signature", queue.signature)):
        source = pick(texts, *langs)
        if not source or (kind == "salutation" and GREETING.match(text)):
            out.append("")
            continue
        try:
            out.append(render(site, source, ctx))
        except TemplateError as exc:
            problems.append(f"the queue's {kind} could not be written ({exc}); sent without")
            out.append("")
    return out[0], out[1], problems
