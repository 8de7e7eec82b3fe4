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
    from otrs_mailgate.tickets import companies

    with ctx.transaction() as session:
        added = companies.add_domain(session, name, mail_domain)
    click.echo(f"{added} belongs to {name}")


@domain.command("remove")
@click.argument("name")
@click.argument("mail_domain", metavar="DOMAIN")
@pass_ctx
@_database_errors
@_errors
def domain_remove(ctx: Ctx, name: str, mail_domain: str) -> None:
    from otrs_mailgate.tickets import companies

    with ctx.transaction() as session:
        companies.remove_domain(session, name, mail_domain)
    click.echo(f"{mail_domain} no longer belongs to {name}")


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
    from otrs_mailgate.tickets import companies

    with ctx.transaction() as session:
        added = companies.add_member(session, name, address)
    click.echo(f"{added} is a member of {name}")


@member.command("remove")
@click.argument("name")
@click.argument("address")
@pass_ctx
@_database_errors
@_errors
def member_remove(ctx: Ctx, name: str, address: str) -> None:
    from otrs_mailgate.tickets import companies

    with ctx.transaction() as session:
        companies.remove_member(session, name, address)
    click.echo(f"{address} is no longer a member of {name}")


COMMANDS = [company]
