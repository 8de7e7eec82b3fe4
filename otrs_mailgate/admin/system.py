"""`otrs-mailgate` commands that set up and look after an installation: init, serve, milter,
dkim, postfix-config, schema, backup, migrate-db, audit."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from otrs_mailgate.admin.base import (
    Ctx,
    _database_errors,
    pass_ctx,
)


@click.command()
@pass_ctx
def init(ctx: Ctx) -> None:
    """Create or upgrade the database schema (data is kept)."""
    from otrs_mailgate.store.db import current_revision, explain, upgrade

    engine = ctx.engine(create=True)
    try:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    except Exception as exc:
        click.echo(f"otrs-mailgate: cannot initialise the database: {explain(exc)}", err=True)
        sys.exit(1)
    url = engine.url.render_as_string(hide_password=True)
    if before == after:
        click.echo(f"database {url} is up to date (revision {after})")
    else:
        click.echo(f"database {url} upgraded from {before or 'empty'} to revision {after}")
    from otrs_mailgate.tickets import history

    path = history.key_path(ctx.config)
    if path is not None:  # made now, by the user who runs the daemon, not at the first mail
        try:
            keys = history.keys_for(ctx.config, rows=lambda: history.bounds(engine))
        except history.AuditKeyError as exc:
            click.echo(f"otrs-mailgate: {exc}", err=True)
            sys.exit(1)
        click.echo(f"audit keys {path} ({len(keys.keys)} key(s)); keep them with your backups")
    for problem in _loose_files(ctx):
        click.echo(f"otrs-mailgate: warning: {problem}", err=True)


def _loose_files(ctx: Ctx) -> list[str]:
    """Our files that hold secrets or customer data and others may read (made before
    they were made 0600, or chmod-ed since)."""
    from otrs_mailgate.store.db import loose_mode
    from otrs_mailgate.tickets.history import key_path

    config = ctx.config
    paths = []
    if config.database.url.startswith("sqlite:///"):
        paths.append(Path(config.database.url.removeprefix("sqlite:///")))
    keys = key_path(config)
    if keys is not None:
        paths.append(keys)
    if config.dkim.key_file:
        paths.append(Path(config.dkim.key_file))
    return [p for p in map(loose_mode, paths) if p]


_LOG_FORMAT = click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="One line per event: text, or one JSON object (journald, Loki).",
)  # fmt: skip


@click.command()
@click.option(
    "--workers", type=click.IntRange(1, 64), default=1, show_default=True,
    help="Daemons forked to share the ports (SO_REUSEPORT); for PostgreSQL.",
)  # fmt: skip
@_LOG_FORMAT
@pass_ctx
def serve(ctx: Ctx, workers: int, log_format: str) -> None:
    """Run the daemon: LMTP server, group commit, outbox sender, scheduler, milter.
    Speaks systemd's notify protocol when started by a Type=notify unit."""
    from otrs_mailgate.daemon import serve as run

    sys.exit(run(ctx.config_path, ctx.config, workers, log_format))


@click.command()
@_LOG_FORMAT
@pass_ctx
def milter(ctx: Ctx, log_format: str) -> None:
    """Run only the milter (Postfix's smtpd_milters), e.g. on a separate MX host."""
    from otrs_mailgate.daemon import milter_only

    sys.exit(milter_only(ctx.config_path, ctx.config, log_format))


@click.group()
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
@click.option(
    "--domain",
    default=None,
    help="The key's domain (default: dkim.domain or system.domain). An agents' domain "
    "gives a test key: the line for the agents.dkim_keys file is printed too.",
)
@pass_ctx
def dkim_keygen(ctx: Ctx, selector: str | None, key_file: Path | None, domain: str | None) -> None:
    """Make a 2048-bit RSA key and print the DNS TXT record to publish."""
    from otrs_mailgate.outbound.outbox import dkim_keygen as keygen

    config = ctx.config
    selector = selector or config.dkim.selector or "mailgate"
    path = key_file or (Path(config.dkim.key_file) if config.dkim.key_file else None)
    if path is None:
        raise click.UsageError("no --key-file and no dkim.key_file in the config")
    if path.exists():
        raise click.UsageError(f"{path} exists; move it away first (keys are never overwritten)")
    ours = config.dkim.domain or config.system.domain
    record = keygen(path, selector, domain or ours)
    click.echo(f"wrote {path} (mode 0600).")
    if domain and domain != ours:
        text = "".join(record.split("(", 1)[1].rsplit(")", 1)[0].split('"')[1::2])
        click.echo(
            f"A key for the agents' domain {domain}: publish the record below in its DNS, "
            "or, to try it out, pin it: add this line to the agents.dkim_keys file"
        )
        click.echo(f"  {selector}._domainkey.{domain} {text}")
        click.echo(f"and sign test mail with it: dkimsign {selector} {domain} {path} < MAIL")
    else:
        click.echo("Publish this record, then set in [dkim]:")
        click.echo(f'  selector = "{selector}"\n  key_file = "{path}"')
    click.echo(record)


@click.command("postfix-config")
@click.option(
    "--write",
    "write_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write otrs-mailgate-main.cf (lines to merge into main.cf), otrs-mailgate-transport "
    "and otrs-mailgate-recipients into this folder; the lines name the maps there.",
)
@click.option("--force", is_flag=True, help="Replace files --write finds changed.")
@click.option(
    "--postfix-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The Postfix whose own transport_maps, relay_domains, milters... the lines keep "
    "(postconf -c DIR; default: the --write folder when it has a main.cf, else /etc/postfix).",
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
def postfix_config(
    ctx: Ctx, write_dir: Path | None, force: bool, postfix_dir: Path | None, lmtp: tuple[str, ...]
) -> None:
    """Print (or write) the Postfix settings and maps for the configured queues: lines to
    merge into main.cf (`postconf -e` each, never a whole main.cf), and two maps."""
    import difflib

    from otrs_mailgate.admin import postfix

    try:
        postfix.destinations(ctx.config, lmtp)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lmtp") from None
    folder = write_dir.absolute() if write_dir is not None else Path(postfix.MAPS_DIR)
    transport = folder / postfix.TRANSPORT_NAME
    recipients = folder / postfix.RECIPIENTS_NAME
    if postfix_dir is None:
        postfix_dir = write_dir if write_dir and (write_dir / "main.cf").exists() else None
    site = postfix.current(str(postfix_dir or postfix.MAPS_DIR))
    classes = postfix.domain_classes(ctx.config, str(postfix_dir or postfix.MAPS_DIR))
    aliases = folder / postfix.ALIASES_NAME
    try:
        main_lines = postfix.main_cf(
            ctx.config, str(transport), str(recipients), lmtp, site, classes, str(aliases)
        )
    except postfix.CannotFit as exc:
        click.echo(f"otrs-mailgate: {exc}", err=True)
        sys.exit(1)
    for domain, kind in sorted(classes.items()):
        if kind != "none":
            click.echo(
                f"# {domain}: your Postfix serves it already ({kind}); only the queue "
                "addresses are routed to us, the rest of the domain stays yours",
                err=True,
            )
    parts = {
        folder / postfix.MAIN_NAME: main_lines,
        transport: postfix.transport(ctx.config, lmtp),
        recipients: postfix.recipients(ctx.config, postfix.open_relay_domains(site)),
    }
    if "virtual_alias" in classes.values():
        parts[aliases] = postfix.aliases(ctx.config)
    if write_dir is None:
        for path, text in parts.items():
            click.echo(f"### {path}\n{text}")
        click.echo(postfix.next_steps(*list(parts)[1:]))
        return
    changed = [p for p, text in parts.items() if p.exists() and p.read_text() != text]
    if changed and not force:
        for path in changed:
            diff = difflib.unified_diff(
                path.read_text().splitlines(), parts[path].splitlines(),
                str(path), f"{path} (new)", lineterm="",
            )  # fmt: skip
            click.echo("\n".join(diff), err=True)
        names = ", ".join(str(p) for p in changed)
        click.echo(
            f"otrs-mailgate: {names} exist and differ (above); nothing was written. "
            "Merge by hand, or --force to replace them.",
            err=True,
        )
        sys.exit(1)
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in parts.items():
        if path.exists() and path.read_text() == text:
            click.echo(f"unchanged {path}")
            continue
        path.write_text(text)
        click.echo(f"wrote {path}")
    click.echo(postfix.next_steps(*list(parts)[1:]))


@click.command()
def schema() -> None:
    """Print the schema generated from the models (what schema.sql holds)."""
    from otrs_mailgate.store.schema import schema_sql

    click.echo(schema_sql(), nl=False)


@click.command("backup")
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
    from otrs_mailgate.tickets.history import key_path

    keys = key_path(ctx.config)
    if keys is not None:  # the database alone cannot prove its history
        click.echo(f"keep the audit keys {keys} with it: `audit verify` needs them")


@click.command("migrate-db")
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


@click.group()
def audit() -> None:
    """Check the tamper-evident history."""


@audit.command("verify")
@click.option("--head", "head_text", default="", help="a head `audit head` printed earlier")
@pass_ctx
@_database_errors
def audit_verify(ctx: Ctx, head_text: str) -> None:
    """Walk every ticket's hash chain; exit 1 at a broken link or a missing row."""
    from otrs_mailgate.tickets.history import Broken, Head, keys_for, verify

    try:
        published = Head.parse(head_text) if head_text else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--head") from exc
    keys = keys_for(ctx.config, create=False)
    broken, checked, now = 0, 0, None
    with ctx.session() as session:
        for item in verify(session, keys, published):
            if isinstance(item, Broken):
                broken += 1
                click.echo(
                    f"BROKEN ticket id {item.ticket_id}, history row {item.history_id}: "
                    f"{item.reason}"
                )
            elif isinstance(item, Head):
                now = item
            else:
                checked = item
    if broken:
        click.echo(f"{broken} broken link(s) in {checked} history rows", err=True)
        sys.exit(1)
    if not keys.keys:
        click.echo(
            "warning: no audit key (system.audit_keys): the chain is plain SHA-256, and "
            "whoever can write the database can recompute it",
            err=True,
        )
    click.echo(f"ok: {checked} history rows, every chain intact; head {now}")


@audit.command("head")
@pass_ctx
@_database_errors
def audit_head(ctx: Ctx) -> None:
    """Print the history's head (last row and a digest of every chain's tail); keep it
    elsewhere, and `audit verify --head` shows whether rows up to it went missing."""
    from otrs_mailgate.tickets.history import head

    with ctx.session() as session:
        click.echo(str(head(session)))


@audit.command("rotate-key")
@pass_ctx
def audit_rotate_key(ctx: Ctx) -> None:
    """Add a new audit key: it signs new history rows; older keys stay to verify.
    Restart or SIGHUP the daemons so they sign with it."""
    from otrs_mailgate.tickets.history import AuditKeyError, add_key, key_path

    path = key_path(ctx.config)
    if path is None:
        click.echo("otrs-mailgate: set system.audit_keys to a file path first", err=True)
        sys.exit(1)
    try:
        key_id = add_key(path)
    except AuditKeyError as exc:
        click.echo(f"otrs-mailgate: {exc}", err=True)
        sys.exit(1)
    click.echo(f"audit key {key_id} added to {path}; it signs from the next daemon start")


COMMANDS = [init, serve, milter, dkim, postfix_config, schema, backup, migrate_db, audit]
