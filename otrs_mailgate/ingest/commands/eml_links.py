"""merge=<number> / parent=<number>: this ticket and another one."""

from __future__ import annotations

from otrs_mailgate.ingest.commands.base import MailCommand, Plan, register
from otrs_mailgate.store import db
from otrs_mailgate.store.models import TicketLink
from otrs_mailgate.tickets import agents, state
from otrs_mailgate.tickets.refs import TicketRef


class _Relative(MailCommand):
    value = "required"

    def check(self, plan: Plan) -> None:
        m, value = self.mail, self.command.value
        other = m.ticket_by_number(value.strip())
        if other is None:
            plan.error(self.text, f"no ticket {value} (check the number and its check digit)")
        elif other.id == m.ticket.id:
            plan.error(self.text, "that is this ticket")
        elif agents.access(m.conn, m.agent.id, other.queue_id) != "rw":
            plan.error(self.text, f"you have no rw access to ticket {other.number}")
        else:
            self.ok(plan, other)

    def ok(self, plan: Plan, other: TicketRef) -> None:
        raise NotImplementedError


@register
class Merge(_Relative):
    name = "merge"
    tells = True
    usage = "merge=<ticket number>: merge this ticket into that one"

    def ok(self, plan: Plan, other: TicketRef) -> None:
        plan.ok(self.text, f"merged into {other.number}", lambda: self.apply(other))

    def apply(self, other: TicketRef) -> None:
        m = self.mail
        m.events.append(("merged", {"into_tag": m.site.tags.tag(other.number)}))
        state.merge(m.session, m.ticket, other, actor=m.agent.address, now=m.now)


@register
class Parent(_Relative):
    name = "parent"
    usage = "parent=<ticket number>: make this ticket a child of that one"

    def ok(self, plan: Plan, other: TicketRef) -> None:
        plan.ok(self.text, f"child of {other.number}", lambda: self.apply(other))

    def apply(self, other: TicketRef) -> None:
        m = self.mail
        db.insert_ignore(
            m.session, TicketLink, source_id=m.ticket.id, target_id=other.id,
            kind="child-of", created_at=m.now,
        )  # fmt: skip
        m.history(m.ticket.id, "Link", child_of=other.number)
        m.history(other.id, "Link", parent_of=m.ticket.number)
