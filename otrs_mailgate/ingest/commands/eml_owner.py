"""take / steal / owner=<agent> / unlock: who owns the ticket and holds its lock."""

from __future__ import annotations

from otrs_mailgate.ingest.commands.base import MailCommand, Plan, register
from otrs_mailgate.tickets import agents


@register
class Owner(MailCommand):
    name = "owner"
    tells = True
    value = "required"
    usage = "owner=<agent login or address>: give the ticket to that agent"

    def check(self, plan: Plan) -> None:
        m, value = self.mail, self.command.value
        other = agents.find(m.conn, value)
        if other is None or not other.enabled:
            plan.error(self.text, f"no enabled agent {value!r}")
        elif agents.access(m.conn, other.id, m.ticket.queue_id) != "rw":
            plan.error(self.text, f"{other.login} has no rw access to queue {m.ticket.queue}")
        else:
            plan.owner = other
            plan.ok(self.text, f"owner {other.login}, locked")


@register
class Take(MailCommand):
    name = "take"
    tells = True
    usage = "make yourself the owner and lock the ticket"

    def check(self, plan: Plan) -> None:
        plan.owner = self.mail.agent
        plan.ok(self.text, f"owner {self.mail.agent.login}, locked")


@register
class Unlock(MailCommand):
    name = "unlock"
    usage = "release your lock"

    def check(self, plan: Plan) -> None:
        plan.unlock = True
        plan.ok(self.text, "unlocked")


@register
class Steal(Take):
    """take, past another agent's lock (commandmail.py lets it through the lock check)."""

    name = "steal"
    usage = "take over a ticket locked by another agent"
