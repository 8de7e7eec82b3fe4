"""split / split=<article id>: an article becomes a new ticket."""

from __future__ import annotations

from otrs_mailgate.ingest import split
from otrs_mailgate.ingest.commands.base import MailCommand, Plan, register


def _article_id(value: str) -> str:
    return "" if value.isdigit() else "split takes no value or an article id (split=<id>)"


@register
class Split(MailCommand):
    name = "split"
    value = "optional"
    usage = (
        "split (in a reply to an article's notification) or split=<article id>: "
        "that article becomes a new ticket"
    )
    check_value = staticmethod(_article_id)

    def check(self, plan: Plan) -> None:
        m, t = self.mail, self.mail.ticket
        if self.command.value:
            article_id: int | None = int(self.command.value)
        else:
            named = [*m.mail.in_reply_to, *reversed(m.mail.references)]
            article_id = split.article_replied_to(m.session, t, named)
        if article_id is None:
            plan.error(
                self.text,
                "reply to the notification of the article to split off, or write "
                "split=<article id> (`otrs-mailgate ticket show` lists them)",
            )
            return
        try:
            split.article_of(m.session, t, article_id)
        except split.SplitError as exc:
            plan.error(self.text, str(exc))
            return
        plan.ok(self.text, f"article {article_id} copied to a new ticket")
        line = plan.lines[-1]

        def act() -> None:
            new = split.split(
                m.site, m.session, t, article_id, m.agent.address, m.now, tell=not plan.quiet
            )
            told = "" if plan.quiet else "; the customer was told its number"
            line.result = f"article {article_id} copied to the new ticket {new.number}{told}"

        plan.actions.append(act)
