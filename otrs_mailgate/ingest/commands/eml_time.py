"""time=<duration>: account the agent's time on the ticket."""

from __future__ import annotations

from otrs_mailgate.ingest.commands.base import MailCommand, Plan, register
from otrs_mailgate.mail import commands as grammar
from otrs_mailgate.store.models import TimeEntry


@register
class Time(MailCommand):
    name = "time"
    value = "required"
    usage = "time=<duration>, e.g. time=15m or time=1h30m: account time"
    check_value = staticmethod(grammar.duration_problem)

    def check(self, plan: Plan) -> None:
        minutes = grammar.duration_minutes(self.command.value)
        plan.ok(self.text, f"{minutes} minutes accounted", lambda: self.apply(minutes))

    def apply(self, minutes: int) -> None:
        m = self.mail
        m.conn.execute(
            TimeEntry.__table__.insert(),
            {"ticket_id": m.ticket.id, "agent_id": m.agent.id, "minutes": minutes,
             "created_at": m.now},
        )  # fmt: skip
        m.history(m.ticket.id, "TimeAccounting", minutes=minutes)
