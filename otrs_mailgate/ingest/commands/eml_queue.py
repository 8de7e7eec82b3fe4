"""queue=<name>: move the ticket."""

from __future__ import annotations

from otrs_mailgate.ingest.commands.base import MailCommand, Plan, register
from otrs_mailgate.outbound import notify
from otrs_mailgate.tickets import agents, state


@register
class Queue(MailCommand):
    name = "queue"
    tells = True
    value = "required"
    usage = "queue=<name>: move the ticket"

    def check(self, plan: Plan) -> None:
        m, value = self.mail, self.command.value
        target = m.site.config.queue_by_name(value)
        if target is None:
            known = ", ".join(q.name for q in m.site.config.queue)
            plan.error(self.text, f"no queue {value!r}; queues are: {known}")
            return
        target_id = m.site.queue_id(target.name)
        if agents.access(m.conn, m.agent.id, target_id) != "rw":
            plan.error(self.text, f"you have no rw access to queue {target.name}")
            return

        def move() -> None:
            m.events.append(("moved", {"new_queue": target.display_name or target.name}))
            old = m.ticket.queue
            state.move(
                m.session, m.ticket, target.name, target_id, actor=m.agent.address, now=m.now
            )
            notify.moved(m.site, m.session, m.ticket, old, m.agent.address)

        plan.ok(self.text, f"moved to queue {target.name}", move)
