"""`otrs-mailgate company`: customer companies, their domains and members."""

from __future__ import annotations

import click

from otrs_mailgate.admin.base import Ctx, _database_errors, _dump, _refusals, pass_ctx


@click.group()
def company() -> None:
    """Customer companies: customers join by their mail domain or as named members."""


_errors = _refusals("otrs_mailgate.tickets.companies", "CompanyError")


@company.command("add")
@click.argument("name")
@click.option(
    "--domain", "domains", multiple=True, help="A mail domain of the company (repeatable)."
)
@pass_ctx
@_database_errors
@_errors
def company_add(ctx: Ctx, name: str, domains: tuple[str, ...]) -> None:
    """Add a company; customers at its domains join it, with their tickets."""
    from otrs_mailgate.tickets import companies

    with ctx.transaction() as session:
        companies.add(session, name, list(domains))
        info = next(c for c in companies.listing(session.connection()) if c.name == name.strip())
    click.echo(f"added company {info.name} ({', '.join(info.domains) or 'no domains'}); "
               f"{info.customers} customer(s) joined")  # fmt: skip


@company.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@_database_errors
def company_list(ctx: Ctx, as_json: bool) -> None:
    """Companies with their domains, members, customers and open tickets."""
    from otrs_mailgate.tickets import companies

    with ctx.session() as session:
        found = companies.listing(session.connection())
    if as_json:
        _dump([c.__dict__ for c in found])
        return
    for c in found:
        click.echo(
            f"{c.name:<24} {c.customers:>5} customer(s) {c.open_tickets:>5} open  "
            f"domains: {', '.join(c.domains) or '-'}  members: {', '.join(c.members) or '-'}"
        )
    if not found:
        click.echo("no companies (`otrs-mailgate company add NAME --domain example.com`)")


@company.command("remove")
@click.argument("name")
@pass_ctx
@_database_errors
@_errors
def company_remove(ctx: Ctx, name: str) -> None:
    """Remove a company: its customers and tickets keep everything but the company."""
    from otrs_mailgate.tickets import companies

    with ctx.transaction() as session:
        companies.remove(session, name)
    click.echo(f"removed company {name}")


def _change(ctx: Ctx, action: str, name: str, value: str, said: str) -> None:
    """One domain or member change: tickets/companies.<action>(session, name, value)."""
    from otrs_mailgate.tickets import companies

    with ctx.transaction() as session:
        done = getattr(companies, action)(session, name, value)
    click.echo(said.format(value=done or value, name=name))


@company.group("domain")
def domain() -> None:
    """A company's mail domains."""


@domain.command("add")
@click.argument("name")
@click.argument("mail_domain", metavar="DOMAIN")
@pass_ctx
@_database_errors
@_errors
def domain_add(ctx: Ctx, name: str, mail_domain: str) -> None:
    """Customers at DOMAIN join the company (never a free-mail domain)."""
    _change(ctx, "add_domain", name, mail_domain, "{value} belongs to {name}")


@domain.command("remove")
@click.argument("name")
@click.argument("mail_domain", metavar="DOMAIN")
@pass_ctx
@_database_errors
@_errors
def domain_remove(ctx: Ctx, name: str, mail_domain: str) -> None:
    """Customers at DOMAIN leave the company (unless they are members)."""
    _change(ctx, "remove_domain", name, mail_domain, "{value} no longer belongs to {name}")


@company.group("member")
def member() -> None:
    """A company's members by address (also at free-mail domains)."""


@member.command("add")
@click.argument("name")
@click.argument("address")
@pass_ctx
@_database_errors
@_errors
def member_add(ctx: Ctx, name: str, address: str) -> None:
    """The customer with ADDRESS belongs to the company, whatever its domain."""
    _change(ctx, "add_member", name, address, "{value} is a member of {name}")


@member.command("remove")
@click.argument("name")
@click.argument("address")
@pass_ctx
@_database_errors
@_errors
def member_remove(ctx: Ctx, name: str, address: str) -> None:
    """ADDRESS is no longer a member (it may still belong by its domain)."""
    _change(ctx, "remove_member", name, address, "{value} is no longer a member of {name}")


COMMANDS = [company]
