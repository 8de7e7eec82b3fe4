"""template=<name>: a named answer (tickets/answers.py) goes to the customer, below the
agent's own text if any, and may set a state after it (close, pending=<duration>)."""

from __future__ import annotations

import datetime as dt
import re

from jinja2 import TemplateError

from otrs_mailgate.ingest.commands import eml_state
from otrs_mailgate.ingest.commands.base import MailCommand, Plan, register
from otrs_mailgate.mail import commands as grammar
from otrs_mailgate.outbound import frames
from otrs_mailgate.tickets import answers


def _name(value: str) -> str:
    return "" if answers.NAME.match(value.lower()) else f"{value!r} is not a template name"


@register
class Template(MailCommand):
    name = "template"
    tells = True
    value = "required"
    usage = "template=<name>: send that answer template (`otrs-mailgate template list`)"
    check_value = staticmethod(_name)

    def check(self, plan: Plan) -> None:
        m, t = self.mail, self.mail.ticket
        others = [n for n in m.names if n in ("note", "quiet", "spam")]
        if others:
            plan.error(self.text, f"a template is an answer to the customer: leave out {others[0]}")
            return
        langs = (t.language, m.queue.language, m.site.config.system.language)
        answer = answers.find(m.conn, self.command.value, t.queue, *langs)
        if answer is None:
            plan.error(
                self.text,
                f"no template {self.command.value!r} for queue {t.queue} "
                f"(`otrs-mailgate template list --queue {t.queue}` shows them)",
            )
            return
        try:
            text = frames.render(m.site, answer.text, m.frame_context())
        except TemplateError as exc:
            plan.error(self.text, f"template {answer.name} cannot be written: {exc}")
            return
        states = [n for n in m.names if n in ("close", "reopen", "pending")]
        if answer.then and states:
            plan.error(
                self.text, f"template {answer.name} sets the state itself (then={answer.then}); "
                f"leave out {states[0]}",
            )  # fmt: skip
            return
        m.inserts.append(text)
        line = f"answer template {answer.name} ({answer.language}) added below your text"
        action = None
        if answer.then == "close":
            line += "; closed"
            action = lambda: eml_state.close(m)  # noqa: E731
        elif answer.then:
            minutes = grammar.duration_minutes(re.sub(r"^pending=", "", answer.then))
            until = m.now + dt.timedelta(minutes=minutes)
            line += f"; pending until {until.isoformat(timespec='minutes')}"
            action = lambda: m.set_state("pending", pending_until=until, reason="pending")  # noqa: E731
        plan.ok(self.text, line, action)
