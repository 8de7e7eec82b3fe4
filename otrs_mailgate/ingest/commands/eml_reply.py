"""reply / note / quiet: where the agent's text goes."""

from __future__ import annotations

from otrs_mailgate.ingest.commands.base import MailCommand, Plan, register


@register
class Reply(MailCommand):
    name = "reply"
    usage = "send your text to the customer (the default)"

    def check(self, plan: Plan) -> None:
        plan.mode = "reply"
        plan.ok(self.text, "your text goes to the customer")


@register
class Note(MailCommand):
    name = "note"
    usage = "keep your text internal, nothing goes to the customer"

    def check(self, plan: Plan) -> None:
        plan.mode = "note"
        plan.ok(self.text, "your text was kept internal")
