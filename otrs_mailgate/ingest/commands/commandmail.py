"""An agent's command mail, once auth.check has accepted it: commands, reply, lock, transcript.

All commands of a mail are checked first and applied only when every one of them
holds; otherwise nothing changes, the mail is kept on the ticket as an internal
note, and the transcript says what was wrong and how to fix it.  The agent's
text is what email-reply-parser leaves of the mail above our "reply above this
line" marker; it goes to the customer from the queue's address, with any of
our token addresses scrubbed out.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from otrs_mailgate.ingest import auth
from otrs_mailgate.ingest.commands.base import REGISTRY, Line, Plan
from otrs_mailgate.ingest.outcome import Result
from otrs_mailgate.ingest.trip import Stop, Trip
from otrs_mailgate.mail import addresses, commands, replytext
from otrs_mailgate.mail.classify import HUMAN, Classification
from otrs_mailgate.mail.compose import Response
from otrs_mailgate.mail.htmltext import html_to_text
from otrs_mailgate.mail.parse import ParsedMail
from otrs_mailgate.mail.subject import clean
from otrs_mailgate.outbound import frames, notify, outbox, protect, replies
from otrs_mailgate.site import Site
from otrs_mailgate.store.models import Article, Ticket, TicketCc, utcnow
from otrs_mailgate.tickets import agents, articles, customers, history, refs, sla, state
from otrs_mailgate.tickets.agents import AgentRef
from otrs_mailgate.tickets.refs import TicketRef


def agent_reply(mail: ParsedMail, customer_text: str = "") -> replytext.Found:
    """The agent's own words in a reply to our notification, in whatever shape the mail
    client gave it (mail/replytext.py): from the text/plain part, or from the HTML with
    its blockquotes read as quotes when there is no plain part."""
    source = html_to_text(mail.body_html, quotes=True) if mail.body_from_html else mail.body_text
    return replytext.find(source, customer_text)


def leak_patterns(site: Site) -> list[re.Pattern[str]]:
    """What of ours must never be in an answer to a customer: a reply token address of
    any queue address, and a link to the agents' page."""
    patterns = [
        re.compile(rf"{re.escape(local)}\+[a-z2-7]{{20,}}@{re.escape(domain)}", re.IGNORECASE)
        for local, _, domain in (a.partition("@") for a in site.own_addresses)
    ]
    web = site.config.web
    if web.enabled:
        patterns.append(re.compile(re.escape(web.base_url()) + r"/agent\b", re.IGNORECASE))
    patterns.append(re.compile(r"https?://[^\s<>]+/agent/(?:ticket|login|search)\b", re.I))
    return patterns


class CommandMail:
    """One accepted command mail inside the pipeline's transaction."""

    def __init__(self, trip: Trip, agent: AgentRef, ticket: TicketRef) -> None:
        self.trip = trip
        self.site = trip.site
        self.session = trip.session
        self.conn: Connection = trip.session.connection()
        self.mail = trip.mail
        self.agent = agent
        self.ticket = ticket
        self.now = utcnow()
        self.queue = self.site.queue_of(ticket.queue)
        self.names: list[str] = []  # the mail's commands by name, once plan() read them
        self.frame_notes: list[str] = []  # a queue salutation or signature that failed
        self._frame: dict[str, Any] | None = None

    def frame_context(self) -> dict[str, Any]:
        """What the queue's salutation and signature and answer templates may name."""
        if self._frame is None:
            self._frame = frames.context(self.conn, self.site, self.ticket, self.agent)
        return self._frame

    # -- checking ----------------------------------------------------------------------

    def plan(self, parsed: commands.Parsed) -> Plan:
        plan = Plan()
        for written, reason in parsed.errors:
            plan.error(written, reason)
        t = self.ticket
        names = self.names = [c.name for c in parsed.commands]
        # commands that only touch the agent's own view (watch) need a read grant and
        # pass another agent's lock; such a mail is filed as a note, never an answer
        passive = bool(names) and all(REGISTRY[n].access == "ro" for n in names)
        access = agents.access(self.conn, self.agent.id, t.queue_id)
        if access is None or (access == "ro" and not passive):
            what = "read-only access to" if access == "ro" else "no access to"
            plan.error("(any command)", f"you have {what} queue {t.queue}")
            return plan
        holder = self._lock_holder()
        locked_out = holder is not None and holder.id != self.agent.id
        if holder is not None and locked_out and "steal" not in names and not passive:
            until = t.lock_until.isoformat(timespec="minutes") if t.lock_until else ""
            plan.error(
                "(any command)",
                f"the ticket is locked by {holder.display} until {until}; "
                "add steal to take it over, or ask them to unlock it",
            )
            return plan
        if passive and (access == "ro" or locked_out):
            plan.mode = "note"
        if "reply" in names and "note" in names:
            plan.error("reply note", "a mail is either a reply or a note, not both")
        if "spam" in names and len(set(names) - {"spam", "note", "quiet", "time"}) > 0:
            others = " ".join(n for n in names if n not in ("spam", "note", "quiet", "time"))
            plan.error(f"spam {others}", "spam goes alone (with time= at most)")
        if len({n for n in names if n in ("close", "reopen", "pending")}) > 1:
            plan.error(" ".join(names), "choose one of close, reopen, pending")
        if "ham" in names and "reply" not in names:
            plan.mode = "note"  # the acknowledgement goes; the agent's words stay inside
        for command in parsed.commands:
            REGISTRY[command.name](self, command).check(plan)
        return plan

    def _lock_holder(self) -> AgentRef | None:
        t = self.ticket
        if t.owner_id is None or t.lock_until is None or t.lock_until <= self.now:
            return None
        return agents.by_id(self.conn, t.owner_id)

    def ticket_by_number(self, number: str) -> TicketRef | None:
        if not self.site.tags.find(f"[{self.site.tags.hook}{self.site.tags.divider}{number}]"):
            return None
        found = self.conn.execute(select(Ticket.id).where(Ticket.number == number)).scalar()
        return refs.load(self.conn, found) if found else None

    # -- applying -------------------------------------------------------------------------

    def history(self, ticket_id: int, type_: str, **detail: object) -> None:
        history.append(self.session, ticket_id, type_, self.agent.address, **detail)

    def set_state(
        self,
        new: str,
        *,
        reason: str,
        pending_until: dt.datetime | None = None,
        ticket: TicketRef | None = None,
    ) -> None:
        t = ticket or self.ticket
        event = state.set_state(
            self.session,
            t,
            new,
            actor=self.agent.address,
            reason=reason,
            now=self.now,
            pending_until=pending_until,
        )
        if t is self.ticket and event:
            until = pending_until.isoformat(timespec="minutes") if pending_until else ""
            self.events.append((event, {"until": until}))

    # -- the whole mail ------------------------------------------------------------------

    def run(self) -> Result:
        tag = next(iter(self.site.tags.find(self.mail.subject)), None)
        found = agent_reply(self.mail, self._customer_text())
        parsed = commands.parse(tag.commands if tag else "", found.head)
        self.closed_children: list[TicketRef] = []
        self.events: list[tuple[str, dict[str, str]]] = []  # what the customer may be told
        self.inserts: list[str] = []  # texts of faq=<id> commands, in their order
        plan = self.plan(parsed)
        own = found.text(parsed.body)
        text = "\n\n".join(t for t in [own.strip(), *self.inserts] if t)
        if plan.errors:
            article_id = self._store(text, internal=True)
            self.history(
                self.ticket.id, "CommandsRefused", article_id=article_id, errors=plan.errors
            )
            self._transcript(plan)
            self.trip.article_id = article_id
            self.trip.notes.append("commands refused")
            return self.trip.result()
        self._expire_lock()
        owner_before = self.ticket.owner_id
        for action in plan.actions:
            action()
        changes = [
            f"{line.command}: {line.result}"
            for command, line in zip(parsed.commands, plan.lines, strict=True)
            if REGISTRY[command.name].tells
        ]
        answer = plan.mode == "reply" and not plan.quiet
        held = ""
        if answer and found.problem and own.strip():
            held = f"{found.problem}; nothing was sent"
        elif answer and text:
            held = self._leak(text)
        replying = answer and bool(text) and not held
        if replying and plan.owner is None and self._lock_holder() in (None, self.agent):
            plan.owner = self.agent  # a reply locks the ticket to its author
        self._apply_lock(plan)
        internal = plan.mode == "note" or not replying
        article_id = self._store(text, internal=internal)
        self.history(
            self.ticket.id,
            "AgentNote" if internal else "AgentReply",
            article_id=article_id,
            commands=[c.text for c in parsed.commands],
            **({"held": held} if held else {}),
        )
        plan.lines = [ln for ln in plan.lines if ln.command not in ("reply", "note")]
        if replying:
            why_not = self._reply(text, found)
            if why_not:
                plan.lines.insert(0, Line("reply", f"NOT sent: {why_not} (kept on the ticket)"))
            else:
                plan.lines.insert(0, Line("reply", self._sent_line(found)))
                plan.lines[1:1] = [Line("reply", note) for note in self.frame_notes]
                state.first_response(self.session, self.ticket.id, self.now)
                # the agent vouches for the customer: a held acknowledgement goes too
                outbox.release_held(self.session, self.ticket.id, "the agent answered")
            if self.ticket.state == "new":
                self.set_state("open", reason="agent replied")
        elif held:
            plan.lines.insert(0, Line("reply", f"NOT sent: {held}. {RESEND}"))
        elif answer and found.problem and self._quoted_only():
            plan.lines.insert(0, Line("reply", f"NOT sent: {found.problem}. {RESEND}"))
        else:
            plan.lines.insert(0, Line("note", "your text was kept internal" if text else "no text"))
        for child in self.closed_children:
            sla.recompute(self.conn, self.site.config, child.id)
        if not plan.quiet:
            for child in self.closed_children:
                self._tell_customer(child, "closed_with_parent")
            if not replying:  # an answer in the same mail already tells the customer
                for event, extra in self.events:
                    if event in self.queue.tell_customer:
                        self._tell_customer(self.ticket, f"customer_{event}", **extra)
        state.touch(self.session, self.ticket.id, self.now)
        if changes:  # the owner and the watchers hear what another agent changed
            notify.changed(self.site, self.session, self.ticket, self.agent, changes, owner_before)
        self._transcript(plan)
        self.trip.article_id = article_id
        return self.trip.result()

    def _customer_text(self) -> str:
        """What the customer wrote lately: the quoted lines an interleaved answer keeps
        must be theirs."""
        rows = self.conn.execute(_SEL_CUSTOMER_TEXTS, {"t": self.ticket.id}).scalars()
        return "\n".join(rows)

    def _quoted_only(self) -> bool:
        """The mail holds quoted text (the agent sent the notification back) rather than
        nothing at all (a mail of commands only)."""
        return bool(self.mail.body_text.strip())

    def _leak(self, text: str) -> str:
        """Why an answer must be held: it carries something of ours no customer may see."""
        forbidden = [*NOTIFICATION_FRAME, self.agent.address]
        found = replytext.leaks(text, forbidden, leak_patterns(self.site))
        return f"your answer contains {found}, which no customer may see" if found else ""

    def _sent_line(self, found: replytext.Found) -> str:
        line = "your text went to the customer (queued; you are told if it cannot be delivered)"
        if found.style == "interleaved":
            line += "; with the customer's lines you answered quoted above each part"
        if found.signature and self.queue.agent_signature == "replace":
            line += "; your own signature was replaced by the queue's"
        files = [a for a in self.mail.attachments if a.content_type == "message/rfc822"]
        if files:
            line += "; the attached original mail was not forwarded"
        return line

    def _store(self, text: str, *, internal: bool) -> int:
        """The agent's mail as an article: raw as received, text as the customer sees it."""
        return articles.store(
            self.session,
            self.ticket,
            self.mail,
            self.trip.envelope.sender,
            self.trip.key,
            sender_type="agent",
            direction="in" if internal else "out",
            internal=internal,
            agent_id=self.agent.id,
            body_text=text,
        )

    def _expire_lock(self) -> None:
        t = self.ticket
        if t.owner_id is not None and t.lock_until is not None and t.lock_until <= self.now:
            state.unlock(self.session, t.id, actor=self.agent.address, reason="lock timed out")
            t.lock_until = None

    def _apply_lock(self, plan: Plan) -> None:
        lock_for = dt.timedelta(minutes=self.site.config.agents.lock_minutes)
        t = self.ticket
        actor = self.agent.address
        if plan.owner is not None:
            until = self.now + lock_for
            state.lock(self.session, t, plan.owner.id, plan.owner.login, until, actor=actor)
        elif t.owner_id == self.agent.id and t.lock_until is not None:
            state.extend_lock(self.session, t, self.now + lock_for)  # activity keeps it alive
        if plan.unlock and t.lock_until is not None:
            t.lock_until = None
            state.unlock(self.session, t.id, actor=actor, reason="unlock command")

    def _reply(self, text: str, found: replytext.Found) -> str:
        """The agent's answer into the outbox; why it cannot go, or ""."""
        queue_name = self.queue.display_name or self.queue.name
        to, name, _ = customers.contact(self.conn, self.ticket.customer_id)
        why = "the ticket has no customer address" if not to else ""
        try:
            to = addresses.canonical(to) if to else ""
        except addresses.Unanswerable as exc:
            why = f"the customer's address cannot be answered: {exc}"
        if why:
            self.history(self.ticket.id, "AgentReplyNotSent", reason=why)
            return why
        cc = tuple(
            a
            for a in self.conn.execute(
                select(TicketCc.address)
                .where(TicketCc.ticket_id == self.ticket.id)
                .order_by(TicketCc.id)
            ).scalars()
            if answerable(a)
        )
        last = self.conn.execute(_SEL_LAST_CUSTOMER_MID, {"t": self.ticket.id}).scalar() or ""
        language = self.ticket.language or "en"
        salutation, queue_signature, problems = frames.frame(
            self.site, self.queue, language, self.frame_context(), text
        )
        self.frame_notes.extend(problems)
        if found.signature and self.queue.agent_signature == "keep":
            signature = found.signature  # the agent's own, and not the queue's as well
        else:
            signature = queue_signature or clean(
                f"{self.agent.name or self.agent.login}, {queue_name}"
            )
        response = Response(
            template="agent_reply",
            language=language,
            from_addr=self.queue.addresses[0],
            from_name=self.queue.display_name or self.queue.name,
            to=to,
            to_name=name,
            subject=self.site.tags.build(self.ticket.number, self.ticket.title),
            vars={
                "salutation": salutation,
                "text": text,
                "signature": signature,
                # whom to tell when the mail cannot be delivered (outbox.Sender)
                "agent_address": self.agent.address,
            },
            in_reply_to=last,
            auto_submitted="",
            cc=cc,
        )
        _, sealed = protect.decide(self.session, self.site, self.ticket.id, True, response)
        if sealed:  # the customer wrote encrypted and we cannot answer so: the agent hears
            self.history(self.ticket.id, "AgentReplyNotSent", reason=sealed)
            return sealed
        outbox.send(
            self.session,
            self.site,
            self.ticket.id,
            "agent_reply",
            response,
            "SendAgentReply",
            self.agent.address,
            # what the agent attached goes along: not inline parts (logos of a signature),
            # not an attached original mail (Outlook's "attach original": our notification)
            files=[
                a
                for a in self.mail.attachments
                if not a.inline and a.content_type != "message/rfc822"
            ],
        )
        return ""

    def _tell_customer(self, ticket: TicketRef, template: str, **extra: str) -> None:
        notify.tell_customer(self.site, self.session, ticket, template, self.queue, **extra)

    def _transcript(self, plan: Plan) -> None:
        subject = clean(self.mail.subject) or "(no subject)"
        head = f"Processed (with {plan.errors} errors)" if plan.errors else "Processed"
        owner = agents.by_id(self.conn, self.ticket.owner_id) if self.ticket.owner_id else None
        response = Response(
            template="transcript",
            language=self.site.config.system.language,
            from_addr=self.queue.addresses[0],
            from_name=f"{self.queue.display_name or self.queue.name} (otrs-mailgate)",
            to=self.agent.address,
            to_name=self.agent.name,
            subject=f"{head}: {subject}",
            vars={
                "number": self.ticket.number,
                "title": self.ticket.title,
                "lines": [{"command": ln.command, "result": ln.result} for ln in plan.lines],
                "errors": plan.errors,
                "state": self.ticket.state,
                "owner": owner.login if owner else "nobody",
                "queue_name": self.ticket.queue,
                "priority": self.ticket.priority,
            },
            in_reply_to=self.mail.message_id,
            auto_submitted="auto-replied",
        )
        outbox.send(
            self.session, self.site, self.ticket.id, "transcript", response, "TranscriptQueued"
        )


def apply(trip: Trip) -> Stop:
    """Stage commands: an accepted command mail is applied whole (or not at all) and its
    trip ends here; any other mail goes on as customer mail."""
    verdict, kind = trip.verdict, trip.kind
    if verdict is not None and verdict.ok and kind is not None and kind.kind != HUMAN:
        # an agent's out-of-office answering a notification is no answer (item 8)
        verdict.reasons.append(f"machine mail ({kind.reason}): filed internally, not executed")
    if verdict is None or not verdict.ok:
        return None
    assert verdict.agent is not None and verdict.ticket_id is not None
    trip.ticket = refs.load(trip.conn, verdict.ticket_id)
    return CommandMail(trip, verdict.agent, trip.ticket).run()


def refused(
    site: Site,
    session: Session,
    ticket: TicketRef,
    mail: ParsedMail,
    verdict: auth.Verdict,
    kind: Classification,
) -> None:
    """A would-be command mail filed as an internal note: history, and tell the agent
    why (not a machine, and within the loop limit: an answer would only feed a loop)."""
    history.append(
        session, ticket.id, "CommandRefused", mail.from_addr or "unknown", reasons=verdict.reasons
    )
    agent = verdict.agent
    if agent is None or not agent.enabled:
        return  # nobody we may write to: the history says it all
    why_not = replies.why_not(session, site, kind, agent.address)
    if why_not:
        history.append(session, ticket.id, "AutoResponseSuppressed", "system", reason=why_not)
        return
    queue = site.queue_of(ticket.queue)
    response = Response(
        template="command_refused",
        language=site.config.system.language,
        from_addr=queue.addresses[0],
        from_name=f"{queue.display_name or queue.name} (otrs-mailgate)",
        to=agent.address,
        to_name=agent.name,
        subject=f"Not processed: {clean(mail.subject) or '(no subject)'}",
        vars={"subject": clean(mail.subject), "number": ticket.number, "reasons": verdict.reasons},
        auto_submitted="auto-replied",
    )
    outbox.send(session, site, ticket.id, "command_refused", response, "TranscriptQueued")


_SEL_CUSTOMER_TEXTS = (
    select(Article.body_text)
    .where(Article.ticket_id == bindparam("t"), Article.sender_type == "customer")
    .order_by(Article.id.desc())
    .limit(3)
)
RESEND = (
    "Write your answer above or below the quoted notification (or between its quoted "
    "lines) and send it as a new reply to the notification"
)
# Lines of our notifications' frame (en, de): never part of an answer to a customer.
NOTIFICATION_FRAME = (
    "Reply to this mail to answer the customer",
    "The reply address of this mail is yours alone",
    "Reply to this mail to work on the ticket",
    "Antworten Sie auf diese Mail, um dem Kunden zu antworten",
    "Antworten Sie auf diese Mail, um am Ticket zu arbeiten",
    "Die Antwortadresse dieser Mail gehört nur Ihnen",
)
_SEL_LAST_CUSTOMER_MID = (
    select(Article.message_id)
    .where(Article.ticket_id == bindparam("t"), Article.sender_type == "customer")
    .order_by(Article.id.desc())
    .limit(1)
)


def answerable(address: str) -> bool:
    try:
        addresses.canonical(address)
    except addresses.Unanswerable:
        return False
    return True
