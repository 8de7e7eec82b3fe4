"""faq=<id>: a knowledge base entry into the agent's text."""

from __future__ import annotations

from otrs_mailgate.ingest.commands.base import MailCommand, Plan, register
from otrs_mailgate.tickets import faq


def _number(value: str) -> str:
    return (
        "" if value.isdigit() else f"{value!r} is not a FAQ entry number (`otrs-mailgate faq list`)"
    )


@register
class Faq(MailCommand):
    name = "faq"
    value = "required"
    usage = "faq=<id>: put that knowledge base entry into your reply"
    check_value = staticmethod(_number)

    def check(self, plan: Plan) -> None:
        m, value = self.mail, self.command.value
        entry = faq.get(m.conn, int(value))
        if entry is None or entry.queue not in ("", m.ticket.queue):
            # another queue's entry is as unknown here as a missing one (issue 25):
            # neither its text nor its title reaches this queue's customers
            plan.error(
                self.text,
                f"no FAQ entry {value} for queue {m.ticket.queue} "
                f"(`otrs-mailgate faq list --queue {m.ticket.queue}` shows them)",
            )
            return
        m.inserts.append(entry.text)
        plan.ok(self.text, f"FAQ entry {entry.id} ({entry.title}) added to your text")
