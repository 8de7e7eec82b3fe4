"""close / reopen / pending=<duration>: the ticket's state."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from otrs_mailgate.ingest.commands.base import CommandContext, MailCommand, Plan, register
from otrs_mailgate.mail import commands as grammar
from otrs_mailgate.store.models import TicketLink
from otrs_mailgate.tickets import refs
from otrs_mailgate.tickets.refs import OPEN_STATES


@register
class Close(MailCommand):
    name = "close"
    tells = True
    usage = "close the ticket"

    def check(self, plan: Plan) -> None:
        done = self.mail.ticket.state == "closed"
        plan.ok(self.text, "was closed already" if done else "closed", self.apply)

    def apply(self) -> None:
        close(self.mail)


def close(m: CommandContext) -> None:
    """Close the ticket and its open children (OTRS: a parent closes its children)."""
    m.set_state("closed", reason="close")
    children = m.conn.execute(
        select(TicketLink.source_id).where(
            TicketLink.target_id == m.ticket.id, TicketLink.kind == "child-of"
        )
    ).scalars()
    for child_id in list(children):
        child = refs.load(m.conn, child_id)
        if child.state not in OPEN_STATES:
            continue
        m.set_state("closed", reason=f"parent {m.ticket.number} closed", ticket=child)
        m.closed_children.append(child)


@register
class Reopen(MailCommand):
    name = "reopen"
    tells = True
    usage = "open a closed ticket again"

    def check(self, plan: Plan) -> None:
        plan.ok(self.text, "open again", lambda: self.mail.set_state("open", reason="reopen"))


@register
class Pending(MailCommand):
    name = "pending"
    tells = True
    value = "required"
    usage = "pending=<duration>, e.g. pending=3d: wait for the customer"
    check_value = staticmethod(grammar.duration_problem)

    def check(self, plan: Plan) -> None:
        until = self.mail.now + dt.timedelta(minutes=grammar.duration_minutes(self.command.value))
        plan.ok(
            self.text,
            f"pending until {until.isoformat(timespec='minutes')}",
            lambda: self.mail.set_state("pending", pending_until=until, reason="pending"),
        )
