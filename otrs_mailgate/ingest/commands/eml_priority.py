"""priority=<1-5 or a name>."""

from __future__ import annotations

from otrs_mailgate.ingest.commands.base import MailCommand, Plan, register
from otrs_mailgate.mail import commands as grammar
from otrs_mailgate.tickets import state

PRIORITY_NAMES = {v: k for k, v in grammar.PRIORITIES.items()}


@register
class Priority(MailCommand):
    name = "priority"
    tells = True
    value = "required"
    usage = "priority=<1-5 or very-low, low, normal, high, very-high>"
    check_value = staticmethod(grammar.priority_problem)

    def check(self, plan: Plan) -> None:
        m = self.mail
        level = grammar.priority(self.command.value)
        plan.ok(
            self.text,
            f"priority {level} ({PRIORITY_NAMES[level]})",
            lambda: state.set_priority(
                m.session, m.ticket, level, actor=m.agent.address, now=m.now
            ),
        )
