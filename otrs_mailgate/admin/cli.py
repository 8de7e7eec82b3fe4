"""`otrs-mailgate`: the admin's command line.  Thin: parse options, call a module, print.

One module per command group (admin/*.py); this one only assembles them.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from otrs_mailgate.admin import (
    agents,
    answers,
    companies,
    customers,
    doctor,
    faq,
    keys,
    mailflow,
    manpage,
    queues,
    reports,
    system,
    tickets,
)
from otrs_mailgate.admin.base import Ctx


class _Main(click.Group):
    """Any command's database error is one line and exit 1 (commands name the cause
    with store.db.explain), never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not _database_error(exc):
                raise
            from otrs_mailgate.store.db import explain

            click.echo(f"otrs-mailgate: database error: {explain(exc)}", err=True)
            sys.exit(1)


def _database_error(exc: Exception) -> bool:
    """Asked without importing SQLAlchemy where a command never did (`deliver`)."""
    errors = sys.modules.get("sqlalchemy.exc")
    store = sys.modules.get("otrs_mailgate.store.db")
    if errors is not None and isinstance(exc, errors.DBAPIError):
        return True
    return store is not None and isinstance(exc, store.DatabaseProblem | store.TemporaryFailure)


@click.group(cls=_Main)
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


for module in (
    doctor,
    manpage,
    system,
    mailflow,
    tickets,
    agents,
    queues,
    customers,
    companies,
    reports,
    faq,
    answers,
    keys,
):
    for command in module.COMMANDS:
        main.add_command(command)


if __name__ == "__main__":
    main()
