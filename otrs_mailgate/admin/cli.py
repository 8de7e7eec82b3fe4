"""`otrs-mailgate`: the admin's command line.  Thin: parse options, call a module, print.

One module per command group (admin/*.py); this one only assembles them.
"""

from __future__ import annotations

import click

from otrs_mailgate.admin import (
    agents,
    customers,
    faq,
    mailflow,
    queues,
    reports,
    system,
    tickets,
)
from otrs_mailgate.admin.base import Ctx


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


for module in (system, mailflow, tickets, agents, queues, customers, reports, faq):
    for command in module.COMMANDS:
        main.add_command(command)


if __name__ == "__main__":
    main()
