"""`otrs-mailgate` mail in and out by hand: deliver (the pipe entry), import, outbox send."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from otrs_mailgate.admin.base import (
    Ctx,
    _database_errors,
    _dump,
    pass_ctx,
)


@click.group()
def outbox() -> None:
    """The mail we send."""


@outbox.command("send")
@pass_ctx
@_database_errors
def outbox_send(ctx: Ctx) -> None:
    """Send what is due, once (for cron, or while no daemon runs)."""
    from otrs_mailgate.outbound.outbox import PassResult, Sender

    sender = Sender(ctx.config, ctx.sessions())
    total = PassResult()
    while True:
        result = sender.run_pass()
        total += result
        if result.sent + result.retried + result.failed == 0:
            break
    click.echo(f"sent: {total.sent}, deferred: {total.retried}, failed: {total.failed}")


@outbox.command("list")
@click.option(
    "--status",
    type=click.Choice(["queued", "held", "sent", "failed", "bounced", "cancelled", "all"]),
    default="all",
    show_default=True,
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--held", is_flag=True, help="Only automatic answers held for their sender.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@_database_errors
def outbox_list(ctx: Ctx, status: str, limit: int, held: bool, as_json: bool) -> None:
    """The newest mails of the outbox: what went out, what waits, and why (held: an
    automatic answer to a sender nobody vouched for, sent when an agent answers)."""
    status = "held" if held else status
    from otrs_mailgate.outbound.outbox import listing

    with ctx.session() as session:
        rows = listing(session, "" if status == "all" else status, limit)
    if as_json:
        _dump(rows)
        return
    for r in rows:
        when = r["created_at"].replace("T", " ")[:16]
        line = f"{r['id']:>6} {when} {r['status']:<8} {r['kind']:<22} {', '.join(r['to'])}"
        if r["status"] == "queued":
            line += f"  (attempts {r['attempts']}, next {r['next_attempt_at']})"
        click.echo(line)
        if r["subject"]:
            click.echo(f"{'':>6} {r['subject'][:100]}")
        if r["last_error"] and r["status"] == "held":
            click.echo(f"{'':>6} held: {r['last_error'][:200]}")
        elif r["last_error"] and r["status"] != "sent":
            click.echo(f"{'':>6} {r['last_error'][:200]}")
    if not rows:
        click.echo("the outbox is empty" if status == "all" else f"no {status} mail")


@outbox.command("show")
@click.argument("row_id", metavar="ID", type=int)
@pass_ctx
@_database_errors
def outbox_show(ctx: Ctx, row_id: int) -> None:
    """One mail of the outbox as it goes (or went) out: headers and body, DKIM-signed
    when signing is set up."""
    from otrs_mailgate.outbound.outbox import Sender, render, row_by_id, split_recipients

    with ctx.session() as session:
        row = row_by_id(session, row_id)
    if row is None:
        click.echo(f"otrs-mailgate: no outbox mail {row_id} (`outbox list` shows them)", err=True)
        sys.exit(1)
    sender = Sender(ctx.config, ctx.sessions())
    to = ", ".join(split_recipients(row.rcpt_to))
    try:
        data = bytes(row.data) if row.data is not None else render(sender.responder, row)
    except Exception as exc:  # what the sender recorded as the row's failure, shown again
        click.echo(f"outbox mail {row.id}: {row.status}, from {row.mail_from} to {to}", err=True)
        click.echo(f"otrs-mailgate: cannot compose it: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    click.echo(f"outbox mail {row.id}: {row.status}, from {row.mail_from} to {to}", err=True)
    sys.stdout.buffer.write(sender.sign(data).replace(b"\r\n", b"\n"))


@outbox.command("retry")
@click.argument("row_ids", metavar="[ID]...", type=int, nargs=-1)
@click.option("--failed", "all_failed", is_flag=True, help="Every failed mail.")
@pass_ctx
@_database_errors
def outbox_retry(ctx: Ctx, row_ids: tuple[int, ...], all_failed: bool) -> None:
    """Send failed (or deferred) mails again, now, with a fresh count of attempts: after
    the cause was fixed (a template, the MTA's SMTPUTF8)."""
    from otrs_mailgate.outbound.outbox import retry

    if not row_ids and not all_failed:
        raise click.UsageError("name the mails (IDs from `outbox list`) or say --failed")
    with ctx.transaction() as session:
        count = retry(session, list(row_ids), all_failed)
    click.echo(f"{count} mail(s) due again; the daemon (or `outbox send`) sends them")


@click.command()
@click.option("--recipient", required=True, help="Envelope recipient (Postfix: ${recipient}).")
@click.option("--sender", default=None, help="Envelope sender (Postfix: ${sender}); empty for <>.")
@click.option("--direct", is_flag=True, help="Store here even when a daemon is running.")
@pass_ctx
def deliver(ctx: Ctx, recipient: str, sender: str | None, direct: bool) -> None:
    """Store one message from stdin (Postfix pipe transport).

    Handed to the running daemon over LMTP when one answers, else stored here.
    Exit status: 0 stored, 75 try again later, 67 unknown recipient, 65 not a mail.
    """
    from otrs_mailgate.entry.pipe import guarded as run

    code, line = run(ctx.config_path, sys.stdin.buffer, recipient, sender, via_daemon=not direct)
    click.echo(line, err=bool(code))
    sys.exit(code)


@click.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--queue", default=None, help="File everything into this queue (else route by To).")
@click.option("--recipient", default=None, help="Treat every message as sent to this address.")
@click.option(
    "--ack/--no-ack",
    default=False,
    show_default=True,
    help="Send acknowledgements for new tickets (off: history is being imported).",
)
@click.option(
    "--sla/--no-sla",
    default=False,
    show_default=True,
    help="Start SLA clocks for imported tickets (off: old mail escalates nothing).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
@_database_errors
def import_(
    ctx: Ctx,
    path: Path,
    queue: str | None,
    recipient: str | None,
    ack: bool,
    sla: bool,
    as_json: bool,
) -> None:
    """Import an mbox file, a Maildir, or a folder of .eml files (resumable).

    Each article keeps its mail's date (Date, else the newest Received), a new ticket
    the date of its first mail; the history says it was imported."""
    from otrs_mailgate.entry import importer

    config = ctx.config
    if queue and config.queue_by_name(queue) is None:
        raise click.BadParameter(
            f"no queue named {queue!r} in {config.source}", param_hint="--queue"
        )
    pipeline = ctx.pipeline(acknowledge=ack, import_clocks=sla)
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
    sys.exit(summary.exit_code)


COMMANDS = [outbox, deliver, import_]
