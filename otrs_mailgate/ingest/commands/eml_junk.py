"""spam / ham (ingest/junk.py): checked now, applied with the rest."""

from __future__ import annotations

from otrs_mailgate.ingest import junk
from otrs_mailgate.ingest.commands.base import MailCommand, Plan, register


class _Junk(MailCommand):
    def check(self, plan: Plan) -> None:
        m = self.mail
        try:
            result = junk.check(m.site, m.session, m.ticket, self.name)
        except junk.JunkError as exc:
            plan.error(self.text, str(exc))
            return
        self.prepare(plan)
        plan.ok(self.text, result, self.apply)

    def prepare(self, plan: Plan) -> None:
        pass

    def apply(self) -> None:
        raise NotImplementedError


@register
class Spam(_Junk):
    name = "spam"
    tells = True
    usage = "the mail is spam: to the Junk queue, closed, nothing to the customer"

    def prepare(self, plan: Plan) -> None:
        plan.mode, plan.quiet = "note", True  # nothing of this mail to the customer

    def apply(self) -> None:
        m = self.mail
        junk.spam(m.site, m.session, m.ticket, m.agent.address, m.now)


@register
class Ham(_Junk):
    name = "ham"
    tells = True
    usage = "not spam: a Junk ticket goes to its queue as a new ticket; held answers go out"

    def apply(self) -> None:
        m = self.mail
        m.trip.notes.extend(
            junk.ham(m.site, m.session, m.ticket, m.agent.address, m.now, m.trip.dns)
        )
