"""`otrs-mailgate`: the admin's command line.  Thin: parse options, call a module, print."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from otrs_mailgate.config import schema as config_mod


class Ctx:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: config_mod.Config | None = None

    @property
    def config(self) -> config_mod.Config:
        if self._config is None:
            try:
                self._config = config_mod.load(self.config_path)
            except config_mod.ConfigError as exc:
                click.echo(f"otrs-mailgate: config error: {exc}", err=True)
                sys.exit(2)
        return self._config

    def engine(self) -> Any:
        from otrs_mailgate.store.db import make_engine

        return make_engine(self.config.database.url, self.config.database.busy_timeout_ms)

    def session(self) -> Any:
        from otrs_mailgate.store.db import sessionmaker_for

        return sessionmaker_for(self.engine())()


pass_ctx = click.make_pass_decorator(Ctx)


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _database_errors(fn: Any) -> Any:
    """Turn a database that is down or uninitialised into one line and exit 1."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import OperationalError, ProgrammingError

        try:
            return fn(*args, **kwargs)
        except (OperationalError, ProgrammingError) as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            click.echo(
                f"otrs-mailgate: database error: {reason} (did you run `otrs-mailgate init`?)",
                err=True,
            )
            sys.exit(1)

    return wrapper


@click.group()
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    envvar="OTRS_MAILGATE_CONFIG",
    help="TOML config file (default: ./otrs-mailgate.toml, /etc/otrs-mailgate/...).",
)
@click.version_option(package_name="otrs-mailgate")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """A mail-native trouble ticket system."""
    ctx.obj = Ctx(config_path)


@main.command()
@pass_ctx
def init(ctx: Ctx) -> None:
    """Create or upgrade the database schema (data is kept)."""
    from otrs_mailgate.store.db import current_revision, upgrade

    engine = ctx.engine()
    try:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    except Exception as exc:
        reason = getattr(exc, "orig", None) or exc
        click.echo(f"otrs-mailgate: cannot initialise the database: {reason}", err=True)
        sys.exit(1)
    url = engine.url.render_as_string(hide_password=True)
    if before == after:
        click.echo(f"database {url} is up to date (revision {after})")
    else:
        click.echo(f"database {url} upgraded from {before or 'empty'} to revision {after}")


@main.command()
@pass_ctx
def serve(ctx: Ctx) -> None:
    """Run the daemon: LMTP server, group commit, outbox sender, scheduler, milter."""
    from otrs_mailgate.daemon import serve as run

    sys.exit(run(ctx.config_path, ctx.config))


@main.command()
@pass_ctx
def milter(ctx: Ctx) -> None:
    """Run only the milter (Postfix's smtpd_milters), e.g. on a separate MX host."""
    from otrs_mailgate.daemon import milter_only

    sys.exit(milter_only(ctx.config_path, ctx.config))


@main.group()
def outbox() -> None:
    """The mail we send."""


@outbox.command("send")
@pass_ctx
@_database_errors
def outbox_send(ctx: Ctx) -> None:
    """Send what is due, once (for cron, or while no daemon runs)."""
    from otrs_mailgate.outbound.outbox import PassResult, Sender
    from otrs_mailgate.store.db import sessionmaker_for

    sender = Sender(ctx.config, sessionmaker_for(ctx.engine()))
    total = PassResult()
    while True:
        result = sender.run_pass()
        total += result
        if result.sent + result.retried + result.failed == 0:
            break
    click.echo(f"sent: {total.sent}, deferred: {total.retried}, failed: {total.failed}")


@main.group()
def dkim() -> None:
    """DKIM keys for the mail we send."""


@dkim.command("keygen")
@click.option(
    "--selector", default=None, help="DNS selector (default: dkim.selector or 'mailgate')."
)
@click.option(
    "--key-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the private key (default: dkim.key_file).",
)
@pass_ctx
def dkim_keygen(ctx: Ctx, selector: str | None, key_file: Path | None) -> None:
    """Make a 2048-bit RSA key and print the DNS TXT record to publish."""
    from otrs_mailgate.outbound.outbox import dkim_keygen as keygen

    config = ctx.config
    selector = selector or config.dkim.selector or "mailgate"
    path = key_file or (Path(config.dkim.key_file) if config.dkim.key_file else None)
    if path is None:
        raise click.UsageError("no --key-file and no dkim.key_file in the config")
    if path.exists():
        raise click.UsageError(f"{path} exists; move it away first (keys are never overwritten)")
    domain = config.dkim.domain or config.system.domain
    record = keygen(path, selector, domain)
    click.echo(f"wrote {path} (mode 0600). Publish this record, then set in [dkim]:")
    click.echo(f'  selector = "{selector}"\n  key_file = "{path}"')
    click.echo(record)


@main.command("postfix-config")
@click.option(
    "--write",
    "write_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write main.cf, transport and recipients files into this folder.",
)
@click.option(
    "--lmtp",
    "lmtp",
    multiple=True,
    metavar="inet:HOST:PORT|unix:/PATH",
    help="A `serve` process to deliver to; give it once per daemon to spread the mail "
    "over several (default: this config's [lmtp]).",
)
@pass_ctx
def postfix_config(ctx: Ctx, write_dir: Path | None, lmtp: tuple[str, ...]) -> None:
    """Print the Postfix settings and maps for the configured queues."""
    from otrs_mailgate.admin import postfix

    try:
        postfix.destinations(ctx.config, lmtp)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lmtp") from None
    parts = {
        "main.cf": postfix.main_cf(ctx.config, lmtp=lmtp),
        "transport": postfix.transport(ctx.config, lmtp),
        "recipients": postfix.recipients(ctx.config),
    }
    if write_dir is None:
        for name, text in parts.items():
            click.echo(f"### {name}\n{text}")
        return
    write_dir.mkdir(parents=True, exist_ok=True)
    for name, text in parts.items():
        (write_dir / name).write_text(text)
        click.echo(f"wrote {write_dir / name}")


@main.command()
def schema() -> None:
    """Print the schema generated from the models (what schema.sql holds)."""
    from otrs_mailgate.store.schema import schema_sql

    click.echo(schema_sql(), nl=False)


@main.command()
@click.option("--recipient", required=True, help="Envelope recipient (Postfix: ${recipient}).")
@click.option("--sender", default=None, help="Envelope sender (Postfix: ${sender}); empty for <>.")
@click.option("--direct", is_flag=True, help="Store here even when a daemon is running.")
@pass_ctx
def deliver(ctx: Ctx, recipient: str, sender: str | None, direct: bool) -> None:
    """Store one message from stdin (Postfix pipe transport).

    Handed to the running daemon over LMTP when one answers, else stored here.
    Exit status: 0 stored, 75 try again later, 67 unknown recipient, 65 not a mail.
    """
    from otrs_mailgate.entry.pipe import deliver as run

    code, line = run(ctx.config_path, sys.stdin.buffer, recipient, sender, via_daemon=not direct)
    click.echo(line, err=bool(code))
    sys.exit(code)


@main.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--queue", default=None, help="File everything into this queue (else route by To).")
@click.option("--recipient", default=None, help="Treat every message as sent to this address.")
@click.option(
    "--ack/--no-ack",
    default=False,
    show_default=True,
    help="Send acknowledgements for new tickets (off: history is being imported).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
@_database_errors
def import_(
    ctx: Ctx, path: Path, queue: str | None, recipient: str | None, ack: bool, as_json: bool
) -> None:
    """Import an mbox file, a Maildir, or a folder of .eml files (resumable)."""
    from otrs_mailgate.entry import importer
    from otrs_mailgate.ingest.pipeline import Pipeline

    config = ctx.config
    if queue and config.queue_by_name(queue) is None:
        raise click.BadParameter(
            f"no queue named {queue!r} in {config.source}", param_hint="--queue"
        )
    pipeline = Pipeline(config, acknowledge=ack)
    total, items = importer.sources(path)
    with click.progressbar(length=total, label="importing", file=sys.stderr) as bar:
        summary = importer.run(
            pipeline, items, queue=queue, recipient=recipient, progress=bar.update
        )
    if as_json:
        _dump(summary.as_dict())
    else:
        click.echo(f"imported: {summary.imported} ({summary.new_tickets} new tickets)")
        click.echo(f"duplicates: {summary.duplicates}")
        click.echo(f"failed: {len(summary.failed)}")
        for where, reason in summary.failed:
            click.echo(f"  {where}: {reason}")
    if summary.stopped:
        click.echo(f"otrs-mailgate: import stopped: {summary.stopped}", err=True)
        sys.exit(75)
    sys.exit(1 if summary.failed else 0)


@main.group()
def ticket() -> None:
    """Look at tickets."""


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
    for a in data["articles"]:
        click.echo(
            f"\n--- article {a['id']} ({a['direction']}, {a['sender_type']}) "
            f"{a['created_at']}\nFrom: {a['from_name']} <{a['from']}>\nSubject: {a['subject']}"
        )
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


@main.group()
def agent() -> None:
    """Agents: who works tickets by mail."""


def _refusals(module: str, name: str) -> Any:
    """A decorator: the module's exception for a request that cannot be done becomes one
    line on stderr and exit 1 (imported only when the command runs)."""
    import functools

    def decorate(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            import importlib

            error = getattr(importlib.import_module(module), name)
            try:
                return fn(*args, **kwargs)
            except error as exc:
                click.echo(f"otrs-mailgate: {exc}", err=True)
                sys.exit(1)

        return _database_errors(wrapper)

    return decorate


_agent_errors = _refusals("otrs_mailgate.tickets.agents", "AgentError")


def _agent_line(a: Any) -> str:
    state = "enabled" if a.enabled else "DISABLED"
    return f"{a.login}  <{a.address}>  {a.name}  [{state}]"


@agent.command("add")
@click.argument("login")
@click.argument("address")
@click.option("--name", default="", help="The agent's full name.")
@click.option("--group", "groups", multiple=True, help="Put the agent into this group.")
@pass_ctx
@_agent_errors
def agent_add(ctx: Ctx, login: str, address: str, name: str, groups: tuple[str, ...]) -> None:
    """Add an agent; grant queues with `queue grant`."""
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import agents

    with db.transaction(db.sessionmaker_for(ctx.engine())) as session:
        added = agents.add(session, login, address, name, list(groups))
    click.echo(f"added {_agent_line(added)}")


@agent.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@_agent_errors
def agent_list(ctx: Ctx, as_json: bool) -> None:
    """Every agent, with groups and whether enabled."""
    from otrs_mailgate.tickets import agents

    with ctx.session() as session:
        rows = agents.listing(session.connection())
    if as_json:
        _dump(rows)
        return
    for r in rows:
        state = "enabled" if r["enabled"] else "DISABLED"
        groups = " ".join("@" + g for g in r["groups"])
        click.echo(f"{r['login']:<16} {r['address']:<32} {state:<9} {groups}  {r['name']}")


def _set_agent(ctx: Ctx, who: str, action: str) -> None:
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import agents

    with db.transaction(db.sessionmaker_for(ctx.engine())) as session:
        if action == "rotate":
            changed = agents.rotate_secret(session, who)
        else:
            changed = agents.set_enabled(session, who, action == "enable")
    click.echo(_agent_line(changed))


@agent.command("disable")
@click.argument("who")
@pass_ctx
@_agent_errors
def agent_disable(ctx: Ctx, who: str) -> None:
    """Disable an agent (login or address): no notifications, every token dead at once."""
    _set_agent(ctx, who, "disable")


@agent.command("enable")
@click.argument("who")
@pass_ctx
@_agent_errors
def agent_enable(ctx: Ctx, who: str) -> None:
    """Enable a disabled agent again."""
    _set_agent(ctx, who, "enable")


@agent.command("rotate-secret")
@click.argument("who")
@pass_ctx
@_agent_errors
def agent_rotate(ctx: Ctx, who: str) -> None:
    """New token key for an agent: every reply address handed out before stops working."""
    _set_agent(ctx, who, "rotate")
    click.echo("secret rotated: reply addresses in earlier notifications no longer work")


@agent.command("link")
@click.argument("who")
@pass_ctx
@_agent_errors
def agent_link(ctx: Ctx, who: str) -> None:
    """Mail an agent (login or address) a signed login link to the status page."""
    from otrs_mailgate.outbound import notify
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import links

    if not ctx.config.web.enabled:
        click.echo("otrs-mailgate: the status page is switched off ([web] enabled)", err=True)
        sys.exit(1)
    with db.transaction(db.sessionmaker_for(ctx.engine())) as session:
        agent, _url = notify.mail_login_link(session, ctx.config, who)
    until = links.link_expiry(ctx.config).isoformat()
    click.echo(f"login link for {agent.login} queued to {agent.address} (works until {until} UTC)")


@agent.command("join")
@click.argument("who")
@click.argument("group")
@pass_ctx
@_agent_errors
def agent_join(ctx: Ctx, who: str, group: str) -> None:
    """Put an agent into a group (made when first named)."""
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import agents

    with db.transaction(db.sessionmaker_for(ctx.engine())) as session:
        agents.join(session, who, group)
    click.echo(f"{who} is in group @{group.lstrip('@')}")


@main.group()
def queue() -> None:
    """Queues: their addresses (in the config file) and who may work them."""


@queue.command("add")
@click.argument("name")
@click.option("--address", "addresses", multiple=True, required=True)
@click.option("--language", default="", help="Language of its mails (en, de, ...).")
@click.option("--display-name", default="")
@pass_ctx
def queue_add(
    ctx: Ctx, name: str, addresses: tuple[str, ...], language: str, display_name: str
) -> None:
    """Add a queue to the config file; then update Postfix and reload the daemon."""
    from otrs_mailgate.admin import queues
    from otrs_mailgate.config import locate as configfile

    path = configfile.find(ctx.config_path)
    if path is None or not path.exists():
        click.echo(
            "otrs-mailgate: no config file to add the queue to; "
            "copy otrs-mailgate.toml.example to otrs-mailgate.toml first",
            err=True,
        )
        sys.exit(2)
    try:
        queues.add(path, name, [a.lower() for a in addresses], language, display_name)
    except config_mod.ConfigError as exc:
        click.echo(f"otrs-mailgate: queue not added: {exc}", err=True)
        sys.exit(2)
    click.echo(f"added queue {name} to {path}")
    click.echo("next: `otrs-mailgate postfix-config` for Postfix, then SIGHUP the daemon")


@queue.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@_agent_errors
def queue_list(ctx: Ctx, as_json: bool) -> None:
    """The configured queues, their addresses and grants."""
    from otrs_mailgate.tickets import agents

    with ctx.session() as session:
        grants = agents.grants(session.connection())
    rows = [
        {"name": q.name, "addresses": q.addresses, "grants": grants.get(q.name, [])}
        for q in ctx.config.queue
    ]
    if as_json:
        _dump(rows)
        return
    for r in rows:
        click.echo(f"{r['name']:<16} {', '.join(r['addresses']):<40} {' '.join(r['grants'])}")


@queue.command("grant")
@click.argument("name")
@click.argument("who")
@click.argument("access", type=click.Choice(["rw", "ro", "none"]))
@pass_ctx
@_agent_errors
def queue_grant(ctx: Ctx, name: str, who: str, access: str) -> None:
    """Give an agent (login or address) or a group (@name) rw, ro or no access to a queue."""
    from otrs_mailgate.ingest.pipeline import Pipeline
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import agents

    if ctx.config.queue_by_name(name) is None:
        raise click.BadParameter(f"no queue named {name!r}", param_hint="NAME")
    pipeline = Pipeline(ctx.config, ctx.engine())
    pipeline.ensure_queues()
    with db.transaction(pipeline.sessions) as session:
        label = agents.grant(session, pipeline.queue_id(name), who, access)
    click.echo(f"{label}: {access} on queue {name}")


@main.group()
def customer() -> None:
    """Customers (made by their first mail)."""


@customer.command("set-language")
@click.argument("address")
@click.argument("language")
@pass_ctx
@_database_errors
def customer_set_language(ctx: Ctx, address: str, language: str) -> None:
    """The language of the automatic mails this customer gets (en, de, ...)."""
    from otrs_mailgate.mail.compose import Responder
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import customers

    known = Responder(ctx.config).languages
    try:
        with db.transaction(db.sessionmaker_for(ctx.engine())) as session:
            customers.set_language(session, address, language.lower(), known)
    except customers.CustomerError as exc:
        click.echo(f"otrs-mailgate: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{address}: mails in {language.lower()} from now on")


@main.group()
def locks() -> None:
    """Ticket locks."""


@locks.command("expire")
@pass_ctx
@_database_errors
def locks_expire(ctx: Ctx) -> None:
    """Release locks that saw no activity for agents.lock_minutes (the daemon does it too)."""
    from otrs_mailgate.jobs import locks as locks_mod
    from otrs_mailgate.store import db

    with db.transaction(db.sessionmaker_for(ctx.engine())) as session:
        released = locks_mod.expire(session)
    click.echo(f"released {released} lock(s)")


@main.group()
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
    from otrs_mailgate.ingest.pipeline import Pipeline
    from otrs_mailgate.jobs.scheduler import Scheduler

    now = _instant(now_text, "--now") if now_text else None
    pipeline = Pipeline(ctx.config, ctx.engine())
    result = Scheduler(lambda: pipeline.site, pipeline.sessions).run_pass(now)
    click.echo(result.summary())
    sys.exit(1 if result.failed else 0)


def _instant(text: str, hint: str) -> Any:
    """An ISO date or date-time; one without a zone is this machine's local time."""
    import datetime as dt

    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO date or time", param_hint=hint) from None
    return (value if value.tzinfo else value.astimezone()).astimezone(dt.UTC)


@main.group()
def sla() -> None:
    """Service level agreements."""


@sla.command("report")
@click.option("--from", "start", metavar="ISO-DATE", help="First day (default: 30 days ago).")
@click.option("--to", "end", metavar="ISO-DATE", help="End, not included (default: now).")
@click.option("--queue", help="Only this queue.")
@click.option("--json", "as_json", is_flag=True, help="JSON: a list of one object per queue.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line.")
@pass_ctx
@_database_errors
def sla_report(
    ctx: Ctx, start: str | None, end: str | None, queue: str | None, as_json: bool, as_csv: bool
) -> None:
    """Per queue: tickets within each SLA time, median and 90th percentile times."""
    import datetime as dt

    from otrs_mailgate.web import slareport

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if queue is not None and ctx.config.queue_by_name(queue) is None:
        raise click.BadParameter(f"no queue named {queue!r}", param_hint="--queue")
    until = _instant(end, "--to") if end else dt.datetime.now(dt.UTC)
    since = _instant(start, "--from") if start else until - dt.timedelta(days=30)
    with ctx.engine().connect() as conn:
        rows = slareport.build(conn, ctx.config, since, until, queue)
    if as_json:
        _dump(rows)
    elif as_csv:
        _csv(rows, list(rows[0]) if rows else ["queue", "tickets"])
    else:
        click.echo(slareport.text(rows))


@main.command("search")
@click.argument("words", nargs=-1, required=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="JSON: tickets with the matching article.")
@pass_ctx
@_database_errors
def search_cmd(ctx: Ctx, words: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Find tickets: words, "phrases", prefix*, AND/OR/NOT, (), and filters queue:,
    state:, owner:, customer:, created:FROM..TO, closed:FROM..TO, priority:."""
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


def _day(text: str | None, hint: str) -> Any:
    import datetime as dt

    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)", param_hint=hint) from None


def _csv(rows: list[dict[str, Any]], fields: list[str]) -> None:
    import csv

    writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


@main.command("stats")
@click.option("--from", "start", metavar="YYYY-MM-DD", help="First day (default: 29 days ago).")
@click.option("--to", "end", metavar="YYYY-MM-DD", help="Last day, included (default: today).")
@click.option("--queue", help="Only this queue.")
@click.option("--by", type=click.Choice(["day", "week", "month"]), default="day", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON: periods, total, agents, senders.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV of the periods and the total.")
@pass_ctx
@_database_errors
def stats_cmd(
    ctx: Ctx,
    start: str | None,
    end: str | None,
    queue: str | None,
    by: str,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Tickets created, closed and open per period; times to first response and close;
    replies and accounted time per agent; top senders."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from otrs_mailgate.web import stats

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if queue is not None and ctx.config.queue_by_name(queue) is None:
        raise click.BadParameter(f"no queue named {queue!r}", param_hint="--queue")
    today = dt.datetime.now(ZoneInfo(ctx.config.system.timezone)).date()
    last = _day(end, "--to") or today
    first = _day(start, "--from") or last - dt.timedelta(days=29)
    if first > last:
        raise click.BadParameter("--from is after --to", param_hint="--from")
    with ctx.engine().connect() as conn:
        queues = [queue] if queue is not None else None
        report = stats.build(conn, ctx.config, first, last, by, queues)  # type: ignore[arg-type]
    if as_json:
        _dump(report)
    elif as_csv:
        _csv([*report["periods"], report["total"]], list(stats.PERIOD_COLUMNS))
    else:
        click.echo(stats.text(report))


@main.group()
def faq() -> None:
    """The knowledge base: entries agents insert with faq=<id>, queues may suggest."""


_faq_errors = _refusals("otrs_mailgate.tickets.faq", "FaqError")


def _faq_text(text: str | None) -> str | None:
    return sys.stdin.read() if text == "-" else text


def _faq_queue(ctx: Ctx, queue: str | None) -> str | None:
    if queue is not None and queue != "" and ctx.config.queue_by_name(queue) is None:
        raise click.BadParameter(f"no queue named {queue!r}", param_hint="--queue")
    return queue


def _faq_line(entry: Any) -> str:
    return f"{entry.id:>5}  {entry.language}  {entry.queue or '(every queue)':<16} {entry.title}"


_LANGUAGE = click.option("--language", help="Two letters, e.g. en or de.")


@faq.command("add")
@click.option("--title", required=True)
@click.option("--text", "body", required=True, help="The answer; - reads it from stdin.")
@_LANGUAGE
@click.option("--queue", help="Only for this queue (default: every queue).")
@pass_ctx
@_faq_errors
def faq_add(ctx: Ctx, title: str, body: str, language: str | None, queue: str | None) -> None:
    """Add an entry."""
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import faq as faq_mod

    language = _faq_language(language or ctx.config.system.language)
    queue = _faq_queue(ctx, queue) or ""
    with db.transaction(db.sessionmaker_for(ctx.engine())) as session:
        entry = faq_mod.add(session, title, _faq_text(body) or "", language, queue)
    click.echo(f"added {_faq_line(entry)}")


def _faq_language(language: str) -> str:
    import re

    if not re.fullmatch(r"[a-z]{2}", language):
        raise click.BadParameter(f"{language!r} is not two letters", param_hint="--language")
    return language


@faq.command("edit")
@click.argument("entry_id", type=int)
@click.option("--title")
@click.option("--text", "body", help="The new answer; - reads it from stdin.")
@_LANGUAGE
@click.option("--queue", help='Only for this queue; "" for every queue.')
@pass_ctx
@_faq_errors
def faq_edit(
    ctx: Ctx,
    entry_id: int,
    title: str | None,
    body: str | None,
    language: str | None,
    queue: str | None,
) -> None:
    """Change an entry; what is not given stays."""
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import faq as faq_mod

    if language is not None:
        language = _faq_language(language)
    queue = _faq_queue(ctx, queue)
    with db.transaction(db.sessionmaker_for(ctx.engine())) as session:
        entry = faq_mod.edit(
            session, entry_id, title=title, text=_faq_text(body), language=language, queue=queue
        )
    click.echo(f"changed {_faq_line(entry)}")


@faq.command("list")
@click.option("--queue", help="Entries for this queue (and for every queue).")
@_LANGUAGE
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@_faq_errors
def faq_list(ctx: Ctx, queue: str | None, language: str | None, as_json: bool) -> None:
    """The entries, oldest first."""
    from otrs_mailgate.tickets import faq as faq_mod

    with ctx.engine().connect() as conn:
        entries = faq_mod.listing(conn, _faq_queue(ctx, queue), language)
    if as_json:
        _dump([e.as_dict() for e in entries])
        return
    for entry in entries:
        click.echo(_faq_line(entry))


@faq.command("show")
@click.argument("entry_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@_faq_errors
def faq_show(ctx: Ctx, entry_id: int, as_json: bool) -> None:
    """One entry with its text."""
    from otrs_mailgate.tickets import faq as faq_mod

    with ctx.engine().connect() as conn:
        entry = faq_mod.get(conn, entry_id)
    if entry is None:
        raise faq_mod.FaqError(f"no FAQ entry {entry_id}")
    if as_json:
        _dump(entry.as_dict())
        return
    click.echo(f"{_faq_line(entry)}\n\n{entry.text}")


@main.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def backup(ctx: Ctx, file: Path) -> None:
    """A consistent copy of the SQLite database while `serve` runs (SQLite's online
    backup); PostgreSQL: use pg_dump."""
    from otrs_mailgate.store.db import backup_sqlite

    url = ctx.config.database.url
    if not url.startswith("sqlite"):
        click.echo("otrs-mailgate: backup copies SQLite; for PostgreSQL use pg_dump", err=True)
        sys.exit(2)
    if file.exists():
        click.echo(f"otrs-mailgate: backup: {file} exists; give a new file", err=True)
        sys.exit(1)
    try:
        pages = backup_sqlite(ctx.engine(), file)
    except Exception as exc:  # the database file missing, the disk full: one line
        file.unlink(missing_ok=True)
        click.echo(f"otrs-mailgate: backup failed, nothing kept: {exc}", err=True)
        sys.exit(1)
    click.echo(f"backup of {url} written to {file} ({pages} pages)")


@main.command("migrate-db")
@click.option("--to", "target_url", required=True, metavar="URL", help="The new database.")
@pass_ctx
def migrate_db(ctx: Ctx, target_url: str) -> None:
    """Copy everything into another (empty) database, e.g. from SQLite to PostgreSQL;
    then point database.url at it.  Stop `serve` first."""
    from sqlalchemy.exc import SQLAlchemyError

    from otrs_mailgate.admin.migratedb import MigrateError, migrate
    from otrs_mailgate.store.db import make_engine

    source = ctx.engine()
    try:
        target = make_engine(target_url)
        copied = migrate(source, target)
    except MigrateError as exc:
        click.echo(f"otrs-mailgate: migrate-db: {exc}", err=True)
        sys.exit(1)
    except (SQLAlchemyError, ValueError) as exc:
        reason = getattr(exc, "orig", None) or exc
        first = str(reason).strip().splitlines()[0] if str(reason).strip() else repr(reason)
        click.echo(f"otrs-mailgate: migrate-db: {first} (nothing was written)", err=True)
        sys.exit(1)
    for name, n in copied.tables.items():
        if n:
            click.echo(f"{name:<16} {n:>9}")
    where = target.url.render_as_string(hide_password=True)
    click.echo(f"copied {copied.rows} rows to {where}; now set database.url to it")


@main.group()
def audit() -> None:
    """Check the tamper-evident history."""


@audit.command("verify")
@pass_ctx
@_database_errors
def audit_verify(ctx: Ctx) -> None:
    """Walk every ticket's hash chain; exit 1 at a broken link."""
    from otrs_mailgate.tickets.history import Broken, verify

    broken = 0
    with ctx.session() as session:
        for item in verify(session):
            if isinstance(item, Broken):
                broken += 1
                click.echo(
                    f"BROKEN ticket id {item.ticket_id}, history row {item.history_id}: "
                    f"{item.reason}"
                )
            else:
                checked = item
    if broken:
        click.echo(f"{broken} broken link(s) in {checked} history rows", err=True)
        sys.exit(1)
    click.echo(f"ok: {checked} history rows, every chain intact")


if __name__ == "__main__":
    main()
