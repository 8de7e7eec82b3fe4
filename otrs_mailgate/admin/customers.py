"""`otrs-mailgate customer`: what an admin may change."""

from __future__ import annotations

import sys

import click

from otrs_mailgate.admin.base import (
    Ctx,
    _database_errors,
    pass_ctx,
)


@click.group()
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
    from otrs_mailgate.tickets import customers

    known = Responder(ctx.config).languages
    try:
        with ctx.transaction() as session:
            customers.set_language(session, address, language.lower(), known)
    except customers.CustomerError as exc:
        click.echo(f"otrs-mailgate: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{address}: mails in {language.lower()} from now on")


COMMANDS = [customer]
