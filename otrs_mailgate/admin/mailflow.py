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
