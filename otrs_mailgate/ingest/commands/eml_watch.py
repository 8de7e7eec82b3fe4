"""watch / unwatch: follow a ticket without owning it (tickets/watchers.py).

They touch only the agent's own view of the ticket, so a read grant is enough and
another agent's lock does not stand in the way (commandmail.py files such a mail as a
note).
"""

from __future__ import annotations

from otrs_mailgate.ingest.commands.base import MailCommand, Plan, register
from otrs_mailgate.tickets import watchers


@register
class Watch(MailCommand):
    name = "watch"
    usage = "follow the ticket: you get what its owner gets"
    access = "ro"

    def check(self, plan: Plan) -> None:
        # the owner may watch too: it keeps hearing after it hands the ticket on
        plan.ok(self.text, "you watch the ticket", self.apply)

    def apply(self) -> None:
        m = self.mail
        watchers.watch(m.session, m.ticket.id, m.agent, actor=m.agent.address)


@register
class Unwatch(MailCommand):
    name = "unwatch"
    usage = "stop following the ticket"
    access = "ro"

    def check(self, plan: Plan) -> None:
        plan.ok(self.text, "you no longer watch the ticket", self.apply)

    def apply(self) -> None:
        m = self.mail
        watchers.unwatch(m.session, m.ticket.id, m.agent, actor=m.agent.address)
