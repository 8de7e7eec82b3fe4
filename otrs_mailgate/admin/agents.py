"""`otrs-mailgate agent`: who works tickets by mail."""

from __future__ import annotations

import sys
from typing import Any

import click

from otrs_mailgate.admin.base import (
    Ctx,
    _dump,
    agent_errors,
    pass_ctx,
)


@click.group()
def agent() -> None:
    """Agents: who works tickets by mail."""


def _agent_line(a: Any) -> str:
    state = "enabled" if a.enabled else "DISABLED"
    return f"{a.login}  <{a.address}>  {a.name}  [{state}]"


@agent.command("add")
@click.argument("login")
@click.argument("address")
@click.option("--name", default="", help="The agent's full name.")
@click.option("--group", "groups", multiple=True, help="Put the agent into this group.")
@pass_ctx
@agent_errors
def agent_add(ctx: Ctx, login: str, address: str, name: str, groups: tuple[str, ...]) -> None:
    """Add an agent; grant queues with `queue grant`."""
    from otrs_mailgate.tickets import agents

    with ctx.transaction() as session:
        added = agents.add(session, login, address, name, list(groups))
    click.echo(f"added {_agent_line(added)}")


@agent.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@agent_errors
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
    from otrs_mailgate.tickets import agents

    with ctx.transaction() as session:
        if action == "rotate":
            changed = agents.rotate_secret(session, who)
        else:
            changed = agents.set_enabled(session, who, action == "enable")
    click.echo(_agent_line(changed))


@agent.command("disable")
@click.argument("who")
@pass_ctx
@agent_errors
def agent_disable(ctx: Ctx, who: str) -> None:
    """Disable an agent (login or address): no notifications, every token dead at once."""
    _set_agent(ctx, who, "disable")


@agent.command("enable")
@click.argument("who")
@pass_ctx
@agent_errors
def agent_enable(ctx: Ctx, who: str) -> None:
    """Enable a disabled agent again."""
    _set_agent(ctx, who, "enable")


@agent.command("rotate-secret")
@click.argument("who")
@pass_ctx
@agent_errors
def agent_rotate(ctx: Ctx, who: str) -> None:
    """New token key for an agent: every reply address handed out before stops working."""
    _set_agent(ctx, who, "rotate")
    click.echo("secret rotated: reply addresses in earlier notifications no longer work")


@agent.command("link")
@click.argument("who")
@pass_ctx
@agent_errors
def agent_link(ctx: Ctx, who: str) -> None:
    """Mail an agent (login or address) a signed login link to the status page."""
    import otrs_mailgate.ingest.commands  # noqa: F401  (notifications list the commands)
    from otrs_mailgate.outbound import notify
    from otrs_mailgate.tickets import links

    if not ctx.config.web.enabled:
        click.echo("otrs-mailgate: the status page is switched off ([web] enabled)", err=True)
        sys.exit(1)
    with ctx.transaction() as session:
        agent, _url = notify.mail_login_link(session, ctx.config, who)
    until = links.link_expiry(ctx.config).isoformat()
    click.echo(f"login link for {agent.login} queued to {agent.address} (works until {until} UTC)")


@agent.command("digest")
@click.argument("who")
@pass_ctx
@agent_errors
def agent_digest(ctx: Ctx, who: str) -> None:
    """Mail an agent the open tickets of their queues, each with their own reply address
    (for an agent added after the tickets were made: nobody told them)."""
    import otrs_mailgate.ingest.commands  # noqa: F401  (notifications list the commands)
    from otrs_mailgate.outbound import notify

    pipeline = ctx.pipeline()
    with ctx.transaction() as session:
        agent, count = notify.digest(pipeline.site, session, who)
    click.echo(f"a list of {count} open ticket(s) queued to {agent.address}")


@agent.command("join")
@click.argument("who")
@click.argument("group")
@pass_ctx
@agent_errors
def agent_join(ctx: Ctx, who: str, group: str) -> None:
    """Put an agent into a group (made when first named)."""
    from otrs_mailgate.tickets import agents

    with ctx.transaction() as session:
        agents.join(session, who, group)
    click.echo(f"{who} is in group @{group.lstrip('@')}")


@agent.command("add-key")
@click.argument("who")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@pass_ctx
@agent_errors
def agent_add_key(ctx: Ctx, who: str, path: str) -> None:
    """An OpenPGP public key or S/MIME certificate of the agent: a valid signature by it
    proves their command mail where their domain does not DKIM-sign (the signature must
    cover the headers too: protected headers, as Thunderbird sends them)."""
    from pathlib import Path

    from otrs_mailgate.crypto.keyring import Keyring
    from otrs_mailgate.tickets import agents

    ring = Keyring.for_config(ctx.config)
    if ring is None:
        click.echo("otrs-mailgate: set [crypto] key_dir first", err=True)
        sys.exit(1)
    data = Path(path).read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        from otrs_mailgate.crypto import smime

        smime.import_pem(ring, data, None)
        fingerprints = [x509.load_pem_x509_certificate(data).fingerprint(hashes.SHA256()).hex()]
    else:
        fingerprints = ring.import_keys(data)
    if not fingerprints:
        click.echo(f"otrs-mailgate: {path}: no OpenPGP key or certificate in it", err=True)
        sys.exit(1)
    with ctx.transaction() as session:
        for fingerprint in fingerprints:
            found = agents.set_key(session, who, fingerprint, add=True)
    click.echo(f"{found.login}: key {', '.join(fingerprints)} proves their command mail")


@agent.command("remove-key")
@click.argument("who")
@click.argument("fingerprint")
@pass_ctx
@agent_errors
def agent_remove_key(ctx: Ctx, who: str, fingerprint: str) -> None:
    """Stop taking this key's signature as the agent's proof."""
    from otrs_mailgate.tickets import agents

    with ctx.transaction() as session:
        found = agents.set_key(session, who, fingerprint, add=False)
    click.echo(f"{found.login}: key {fingerprint} no longer proves their mail")


COMMANDS = [agent]
