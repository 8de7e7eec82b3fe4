"""`otrs-mailgate queue`: add (to the config file), list, grant."""

from __future__ import annotations

import sys

import click

from otrs_mailgate.admin.base import (
    Ctx,
    _dump,
    agent_errors,
    pass_ctx,
)
from otrs_mailgate.config import schema as config_mod


@click.group()
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
    from otrs_mailgate.admin import queuefile as queues
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


@queue.group("address")
def queue_address() -> None:
    """A queue's addresses: add a new one, retire an old one (still taken, never sent
    from), remove one (refused from then on)."""


def _address_command(action: str, doc: str) -> None:
    @queue_address.command(action, help=doc)
    @click.argument("name")
    @click.argument("address")
    @pass_ctx
    def command(ctx: Ctx, name: str, address: str) -> None:
        from otrs_mailgate.admin import queuefile
        from otrs_mailgate.config import locate as configfile

        path = configfile.find(ctx.config_path)
        if path is None or not path.exists():
            click.echo("otrs-mailgate: no config file to change", err=True)
            sys.exit(2)
        try:
            said = queuefile.address(path, name, address, action)
        except config_mod.ConfigError as exc:
            click.echo(f"otrs-mailgate: nothing changed: {exc}", err=True)
            sys.exit(1)
        click.echo(said)
        click.echo("next: `otrs-mailgate postfix-config` for Postfix, then SIGHUP the daemon")


_address_command("add", "Add an address to a queue (mail to it lands there).")
_address_command(
    "retire",
    "Keep taking mail at an address (replies to old acknowledgements, agents' open reply "
    "addresses) while the queue sends from its other addresses.",
)
_address_command("remove", "Stop taking mail at an address (refused with 550 5.1.1).")


@queue.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@agent_errors
def queue_list(ctx: Ctx, as_json: bool) -> None:
    """The configured queues, their addresses and grants."""
    from otrs_mailgate.tickets import agents

    with ctx.session() as session:
        grants = agents.grants(session.connection())
    rows = [
        {
            "name": q.name,
            "addresses": q.addresses,
            "retired_addresses": q.retired_addresses,
            "grants": grants.get(q.name, []),
        }
        for q in ctx.config.queue
    ]
    if as_json:
        _dump(rows)
        return
    for r in rows:
        shown = ", ".join([*r["addresses"], *(f"({a}, retired)" for a in r["retired_addresses"])])
        click.echo(f"{r['name']:<16} {shown:<40} {' '.join(r['grants'])}")


@queue.command("grant")
@click.argument("name")
@click.argument("who")
@click.argument("access", type=click.Choice(["rw", "ro", "none"]))
@pass_ctx
@agent_errors
def queue_grant(ctx: Ctx, name: str, who: str, access: str) -> None:
    """Give an agent (login or address) or a group (@name) rw, ro or no access to a queue."""
    from otrs_mailgate.store import db
    from otrs_mailgate.tickets import agents

    if ctx.config.queue_by_name(name) is None:
        raise click.BadParameter(f"no queue named {name!r}", param_hint="NAME")
    pipeline = ctx.pipeline()
    pipeline.ensure_queues()
    with db.transaction(pipeline.sessions) as session:
        label = agents.grant(session, pipeline.queue_id(name), who, access)
    click.echo(f"{label}: {access} on queue {name}")


COMMANDS = [queue]
