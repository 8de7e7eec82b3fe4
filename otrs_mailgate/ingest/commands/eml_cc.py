"""cc+=<address> / cc-=<address>: who gets copies of the replies."""

from __future__ import annotations

from sqlalchemy import delete

from otrs_mailgate.ingest.commands.base import MailCommand, Plan, register
from otrs_mailgate.mail import addresses
from otrs_mailgate.mail import commands as grammar
from otrs_mailgate.store import db
from otrs_mailgate.store.models import TicketCc


class _Cc(MailCommand):
    value = "required"
    check_value = staticmethod(grammar.address_problem)
    add: bool

    def check(self, plan: Plan) -> None:
        address = addresses.canonical(self.command.value)  # checked by the grammar already
        gets = "gets" if self.add else "no longer gets"
        plan.ok(self.text, f"{address} {gets} copies of replies", lambda: self.apply(address))

    def apply(self, address: str) -> None:
        m = self.mail
        if self.add:
            db.insert_ignore(m.session, TicketCc, ticket_id=m.ticket.id, address=address)
        else:
            m.conn.execute(
                delete(TicketCc).where(
                    TicketCc.ticket_id == m.ticket.id, TicketCc.address == address
                )
            )
        m.history(
            m.ticket.id, "CcUpdate", **({"added": address} if self.add else {"removed": address})
        )


@register
class CcAdd(_Cc):
    name = "cc+"
    usage = "cc+=<address>: copy replies to that address"
    add = True


@register
class CcRemove(_Cc):
    name = "cc-"
    usage = "cc-=<address>: stop copying replies to that address"
    add = False
