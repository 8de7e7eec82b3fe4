"""quiet: nothing of this mail goes to the customer."""

from __future__ import annotations

from otrs_mailgate.ingest.commands.base import MailCommand, Plan, register


@register
class Quiet(MailCommand):
    name = "quiet"
    usage = "send no mail to the customer"

    def check(self, plan: Plan) -> None:
        plan.quiet = True
        plan.ok(self.text, "no mail to the customer")
