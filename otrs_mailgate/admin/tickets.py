"""`otrs-mailgate` commands about tickets: list, show, create (by phone), search, and the
jobs cron may run (locks, escalations)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from otrs_mailgate.admin.base import (
    Ctx,
    _database_errors,
    _dump,
    _instant,
    pass_ctx,
)


@click.group()
def ticket() -> None:
    """Tickets: list and show them, create phone tickets, move, split, get attachments."""


@ticket.command("list")
@click.option("--state", default=None)
@click.option("--queue", default=None)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@_database_errors
def ticket_list(ctx: Ctx, state: str | None, queue: str | None, limit: int, as_json: bool) -> None:
    """The newest tickets first."""
    from otrs_mailgate.tickets import queries as tickets

    with ctx.session() as session:
        rows = tickets.list_tickets(session, state=state, queue=queue, limit=limit)
    if as_json:
        _dump(rows)
        return
    for r in rows:
        click.echo(
            f"{r['number']}  {r['state']:<8} {r['queue']:<12} {r['articles']:>3}  "
            f"{r['customer'] or '-':<30} {r['title']}"
        )


@ticket.command("show")
@click.argument("number")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@_database_errors
def ticket_show(ctx: Ctx, number: str, as_json: bool) -> None:
    """One ticket with its articles and history."""
    from otrs_mailgate.tickets import queries as tickets

    with ctx.session() as session:
        found = tickets.find(session, number)
        if found is None:
            click.echo(f"otrs-mailgate: no ticket {number}", err=True)
            sys.exit(1)
        data = tickets.show(session, found)
    if as_json:
        _dump(data)
        return
    click.echo(f"Ticket#{data['number']}  {data['title']}")
    click.echo(
        f"  queue {data['queue']}, state {data['state']}, priority {data['priority']}, "
        f"customer {data['customer']}, created {data['created_at']}"
    )
    if data["company"]:
        click.echo(f"  company {data['company']}")
    if data["watchers"]:
        click.echo(f"  watched by {', '.join(data['watchers'])}")
    for a in data["articles"]:
        click.echo(
            f"\n--- article {a['id']} ({a['direction']}, {a['sender_type']}) "
            f"{a['created_at']}\nFrom: {a['from_name']} <{a['from']}>\nSubject: {a['subject']}"
        )
        if a.get("protection"):
            from otrs_mailgate.mail.parse import Protection

            shield = Protection.from_json(json.dumps(a["protection"]))
            click.echo(f"Security: {shield.line() if shield else a['protection']}")
        for f in a["attachments"]:
            click.echo(f"Attachment: {f['filename']} ({f['content_type']}, {f['size']} bytes)")
        click.echo("\n" + a["body"])
    click.echo("\n--- history")
    for h in data["history"]:
        click.echo(f"{h['at']}  {h['type']:<22} {h['actor']:<30} {json.dumps(h['detail'])}")
    if data["outbox"]:
        click.echo("\n--- outbox")
        for o in data["outbox"]:
            click.echo(f"{o['created_at']}  {o['kind']:<18} {o['status']:<7} to {o['to']}")


@ticket.command("create")
@click.option("--customer", required=True, help="The customer's address (Name <addr> works).")
@click.option("--subject", required=True)
@click.option("--queue", "queue_name", required=True)
@click.option("--body", default="", help="The text; - reads it from stdin.")
@click.option("--no-ack", is_flag=True, help="Do not send the customer an acknowledgement.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@_database_errors
def ticket_create(
    ctx: Ctx, customer: str, subject: str, queue_name: str, body: str, no_ack: bool, as_json: bool
) -> None:
    """A ticket from a phone call: made exactly as if the customer had mailed the queue."""
    from otrs_mailgate.entry import phone

    if ctx.config.queue_by_name(queue_name) is None:
        raise click.BadParameter(f"no queue named {queue_name!r}", param_hint="--queue")
    text = sys.stdin.read() if body == "-" else body
    try:
        result = phone.create(ctx.config, customer, subject, queue_name, text, ack=not no_ack)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--customer") from None
    if as_json:
        _dump({"number": result.ticket_number, "queue": result.queue})
    else:
        click.echo(f"created ticket {result.ticket_number} in {result.queue}")


@ticket.command("move")
@click.argument("number")
@click.argument("queue_name", metavar="QUEUE")
@click.option("--quiet", is_flag=True, help="Do not tell the customer.")
@pass_ctx
@_database_errors
def ticket_move(ctx: Ctx, number: str, queue_name: str, quiet: bool) -> None:
    """Move a ticket to another queue (dispatch from the raw queue): the history says
    so, the new queue's agents are told, and the customer where the old queue's
    tell_customer lists "moved"."""
    import getpass

    import otrs_mailgate.ingest.commands  # noqa: F401  (notifications list the commands)
    from otrs_mailgate.outbound import notify
    from otrs_mailgate.site import Site
    from otrs_mailgate.store.models import utcnow
    from otrs_mailgate.tickets import refs, state

    target = ctx.config.queue_by_name(queue_name)
    if target is None:
        known = ", ".join(q.name for q in ctx.config.queue)
        raise click.BadParameter(f"no queue named {queue_name!r}; queues are: {known}")
    site = Site.build(ctx.config)
    site.ensure_queues(ctx.sessions())
    actor = f"{getpass.getuser()} (command line)"
    with ctx.transaction() as session:
        ticket_id = refs.id_of(session.connection(), number.strip())
        if ticket_id is None:
            click.echo(f"otrs-mailgate: no ticket {number}", err=True)
            sys.exit(1)
        ticket = refs.load(session.connection(), ticket_id)
        old = site.queue_of(ticket.queue)
        if ticket.queue == target.name:
            click.echo(f"ticket {ticket.number} is in {target.name} already")
            return
        state.move(
            session, ticket, target.name, site.queue_id(target.name), actor=actor, now=utcnow()
        )
        told = notify.moved(site, session, ticket, old.name, actor, tell=None if quiet else old)
    click.echo(
        f"ticket {ticket.number} moved from {old.name} to {target.name}; {told} agent(s) told"
    )


@ticket.command("watch")
@click.argument("number")
@click.argument("who", metavar="AGENT")
@pass_ctx
@_database_errors
def ticket_watch(ctx: Ctx, number: str, who: str) -> None:
    """AGENT (login or address) follows the ticket: gets the notifications its owner
    gets while holding a grant on its queue."""
    _watch_command(ctx, number, who, watch=True)


@ticket.command("unwatch")
@click.argument("number")
@click.argument("who", metavar="AGENT")
@pass_ctx
@_database_errors
def ticket_unwatch(ctx: Ctx, number: str, who: str) -> None:
    """AGENT stops following the ticket."""
    _watch_command(ctx, number, who, watch=False)


def _watch_command(ctx: Ctx, number: str, who: str, *, watch: bool) -> None:
    import getpass

    from otrs_mailgate.tickets import agents, refs, watchers

    actor = f"{getpass.getuser()} (command line)"
    with ctx.transaction() as session:
        conn = session.connection()
        ticket_id = refs.id_of(conn, number.strip())
        agent = agents.find(conn, who)
        problem = (
            f"no ticket {number}" if ticket_id is None
            else f"no agent {who!r}" if agent is None
            else ""
        )  # fmt: skip
        if not problem and watch and agent is not None and ticket_id is not None:
            queue_id = refs.load(conn, ticket_id).queue_id
            if agents.access(conn, agent.id, queue_id) is None:
                problem = f"{agent.login} has no grant on the ticket's queue: it would hear nothing"
        if problem:
            click.echo(f"otrs-mailgate: {problem}", err=True)
            sys.exit(1)
        assert agent is not None and ticket_id is not None
        change = watchers.watch if watch else watchers.unwatch
        done = change(session, ticket_id, agent, actor=actor)
    verb = "watches" if watch else "no longer watches"
    click.echo(f"{agent.login} {verb} ticket {number}" + ("" if done else " (no change)"))


@ticket.command("spam")
@click.argument("number")
@pass_ctx
@_database_errors
def ticket_spam(ctx: Ctx, number: str) -> None:
    """The ticket's mail is spam: to the Junk queue, closed, nothing to the customer,
    taught to the filter ([spam] rspamd_controller or learn_command)."""
    _junk_command(ctx, number, "spam")


@ticket.command("ham")
@click.argument("number")
@pass_ctx
@_database_errors
def ticket_ham(ctx: Ctx, number: str) -> None:
    """Not spam: a Junk ticket goes to the queue its mail routes to as a new ticket
    (acknowledged if the sender is authenticated, the agents told); on any other
    ticket, its held automatic answers go out."""
    _junk_command(ctx, number, "ham")


def _junk_command(ctx: Ctx, number: str, what: str) -> None:
    import getpass

    from otrs_mailgate.ingest import junk
    from otrs_mailgate.site import Site
    from otrs_mailgate.store.models import utcnow
    from otrs_mailgate.tickets import refs

    site = Site.build(ctx.config)
    site.ensure_queues(ctx.sessions())
    actor = f"{getpass.getuser()} (command line)"
    try:
        with ctx.transaction() as session:
            ticket_id = refs.id_of(session.connection(), number.strip())
            if ticket_id is None:
                raise junk.JunkError(f"no ticket {number}")
            ticket = refs.load(session.connection(), ticket_id)
            said = junk.check(site, session, ticket, what)
            notes = []
            if what == "spam":
                junk.spam(site, session, ticket, actor, utcnow())
            else:
                notes = junk.ham(site, session, ticket, actor, utcnow())
    except junk.JunkError as exc:
        click.echo(f"otrs-mailgate: ticket {number}: {exc}", err=True)
        sys.exit(1)
    click.echo(f"ticket {ticket.number}: {said}" + "".join(f"; {n}" for n in notes))


@ticket.command("attachment")
@click.argument("number")
@click.argument("attachment_id", metavar="[ID]", type=int, required=False)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Write it to this file (never over an existing one); default: stdout.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="The list as JSON.")
@pass_ctx
@_database_errors
def ticket_attachment(
    ctx: Ctx, number: str, attachment_id: int | None, output: Path | None, as_json: bool
) -> None:
    """List a ticket's attachments, or write one out (its bytes as they came)."""
    from otrs_mailgate.tickets import articles, refs

    with ctx.session() as session:
        conn = session.connection()
        ticket_id = refs.id_of(conn, number.strip())
        if ticket_id is None:
            click.echo(f"otrs-mailgate: no ticket {number}", err=True)
            sys.exit(1)
        if attachment_id is None:
            found = articles.files(conn, ticket_id)
            if as_json:
                _dump([f.__dict__ for f in found])
            for f in [] if as_json else found:
                note = " (internal)" if f.internal else ""
                click.echo(
                    f"{f.id:>6}  article {f.article_id:<6} {f.size:>10} B  "
                    f"{f.content_type:<28} {f.filename}{note}"
                )
            if not found and not as_json:
                click.echo(f"ticket {number} has no attachments")
            return
        got = articles.file_data(conn, ticket_id, attachment_id)
    if got is None:
        click.echo(f"otrs-mailgate: ticket {number} has no attachment {attachment_id}", err=True)
        sys.exit(1)
    ref, data = got
    if output is None:
        sys.stdout.buffer.write(data)
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # customer data
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except FileExistsError:
        click.echo(f"otrs-mailgate: {output} exists; give a new file", err=True)
        sys.exit(1)
    click.echo(f"{ref.filename} ({len(data)} bytes) written to {output}")


@ticket.command("split")
@click.argument("number")
@click.option("--article", "article_id", type=int, required=True, help="The article to split off.")
@click.option("--quiet", is_flag=True, help="Do not tell the customer the new number.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@_database_errors
def ticket_split(ctx: Ctx, number: str, article_id: int, quiet: bool, as_json: bool) -> None:
    """An article becomes a ticket of its own (copied: the old ticket keeps it); both
    histories point at each other and the customer is told the new number."""
    import getpass

    from otrs_mailgate.ingest.split import SplitError, load, split
    from otrs_mailgate.site import Site
    from otrs_mailgate.store.models import utcnow

    site = Site.build(ctx.config)
    site.ensure_queues(ctx.sessions())
    actor = f"{getpass.getuser()} (command line)"
    try:
        with ctx.transaction() as session:
            old = load(session, number)
            new = split(site, session, old, article_id, actor, utcnow(), tell=not quiet)
    except SplitError as exc:
        click.echo(f"otrs-mailgate: {exc}", err=True)
        sys.exit(1)
    if as_json:
        _dump({"number": new.number, "split_from": old.number, "article": article_id})
    else:
        click.echo(f"article {article_id} of {old.number} copied to the new ticket {new.number}")


@click.group()
def locks() -> None:
    """Ticket locks."""


@locks.command("expire")
@pass_ctx
@_database_errors
def locks_expire(ctx: Ctx) -> None:
    """Release locks that saw no activity for agents.lock_minutes (the daemon does it too)."""
    from otrs_mailgate.jobs import locks as locks_mod

    with ctx.transaction() as session:
        released = locks_mod.expire(session)
    click.echo(f"released {released} lock(s)")


@click.group()
def escalations() -> None:
    """Service level escalations, pending reminders and lock time-outs."""


@escalations.command("check")
@click.option(
    "--now",
    "now_text",
    metavar="ISO-TIME",
    help="Pretend it is this instant (without a zone: this machine's local time).",
)
@pass_ctx
@_database_errors
def escalations_check(ctx: Ctx, now_text: str | None) -> None:
    """One pass of the daemon's scheduler: for cron, and for trying out an SLA."""
    from otrs_mailgate.jobs.scheduler import Scheduler

    now = _instant(now_text, "--now") if now_text else None
    pipeline = ctx.pipeline()
    result = Scheduler(lambda: pipeline.site, pipeline.sessions).run_pass(now)
    click.echo(result.summary())
    sys.exit(1 if result.failed else 0)


@click.command("search")
@click.argument("words", nargs=-1, required=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="JSON: tickets with the matching article.")
@pass_ctx
@_database_errors
def search_cmd(ctx: Ctx, words: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Find tickets: words, "phrases", prefix*, AND/OR/NOT, (), and filters queue:,
    state:, owner:, customer:, company:, created:FROM..TO, closed:FROM..TO, priority:."""
    from otrs_mailgate.store.searchquery import QueryError
    from otrs_mailgate.tickets import queries

    source = " ".join(words)
    with ctx.session() as session:
        try:
            rows, more = queries.results(session, ctx.config, source, limit)
        except QueryError as exc:
            click.echo(f"otrs-mailgate: bad query: {exc}", err=True)
            click.echo(f"  {source}\n  {' ' * (exc.position - 1)}^", err=True)
            sys.exit(2)
    if as_json:
        _dump({"tickets": rows, "more": more})
        return
    for r in rows:
        click.echo(f"{r['number']}  {r['state']:<8} {r['queue']:<12} {r['title']}")
        if "article" in r:
            click.echo(f"    {r['article']['snippet']}")
    shown = f"{len(rows)} ticket{'s' if len(rows) != 1 else ''}"
    click.echo(f"{shown}{', more: raise --limit' if more else ''}", err=True)


@click.group("spam")
def spam_cmd() -> None:
    """The Junk queue ([spam])."""


@spam_cmd.command("purge")
@pass_ctx
@_database_errors
def spam_purge(ctx: Ctx) -> None:
    """Purge the text, raw mail and files of Junk tickets untouched for [spam] keep_days
    (the daemon does it daily; this is for cron without one)."""
    from otrs_mailgate.jobs import junkpurge
    from otrs_mailgate.site import Site

    site = Site.build(ctx.config)
    site.ensure_queues(ctx.sessions())
    n = junkpurge.purge(site, ctx.sessions())
    click.echo(f"{n} Junk ticket(s) purged (older than {ctx.config.spam.keep_days} days)")


COMMANDS = [ticket, locks, escalations, search_cmd, spam_cmd]
