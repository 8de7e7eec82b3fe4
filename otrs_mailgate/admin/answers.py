"""`otrs-mailgate template`: answer templates, sent with template=<name> in a reply."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from otrs_mailgate.admin.base import Ctx, _database_errors, _dump, _refusals, pass_ctx


@click.group("template")
def template() -> None:
    """Answer templates (OTRS's Templates): named answers per queue and language."""


_errors = _refusals("otrs_mailgate.tickets.answers", "AnswerError")


def _queue(ctx: Ctx, queue: str | None) -> str:
    if queue and ctx.config.queue_by_name(queue) is None:
        known = ", ".join(q.name for q in ctx.config.queue)
        raise click.BadParameter(
            f"no queue named {queue!r}; queues are: {known}", param_hint="--queue"
        )
    return queue or ""


def _line(a: Any) -> str:
    then = f"  then {a.then}" if a.then else ""
    first = a.text.strip().splitlines()[0] if a.text.strip() else ""
    return f"{a.name:<20} {a.language}  {a.queue or '(every queue)':<16}{then}  {first[:50]}"


@template.command("add")
@click.argument("name")
@click.option("--text", "body", help="The answer (jinja: {{ customer.name }}, ...); - reads stdin.")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the answer from this file (UTF-8).",
)
@click.option("--queue", help="Only for this queue (default: every queue).")
@click.option("--language", help="Two letters (default: the system's language).")
@click.option("--then", "then", default="", help="Set a state after sending: close or pending=3d.")
@pass_ctx
@_database_errors
@_errors
def template_add(
    ctx: Ctx, name: str, body: str | None, path: Path | None, queue: str | None,
    language: str | None, then: str,
) -> None:  # fmt: skip
    """Add a template, or replace the text of one with the same name, queue and language."""
    from otrs_mailgate.tickets import answers

    if (body is None) == (path is None):
        raise click.UsageError("give the answer with --text or --file (one of them)")
    text = path.read_text("utf-8") if path else (sys.stdin.read() if body == "-" else body or "")
    with ctx.transaction() as session:
        answer, new = answers.save(
            session, name, _queue(ctx, queue), language or ctx.config.system.language, text, then
        )
    click.echo(f"{'added' if new else 'replaced'} {_line(answer)}")


@template.command("list")
@click.option("--queue", help="Those a ticket of this queue can use.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@_database_errors
def template_list(ctx: Ctx, queue: str | None, as_json: bool) -> None:
    """The templates, by name."""
    from otrs_mailgate.tickets import answers

    with ctx.session() as session:
        found = answers.listing(session.connection(), _queue(ctx, queue) if queue else None)
    if as_json:
        _dump([a.__dict__ for a in found])
        return
    for a in found:
        click.echo(_line(a))
    if not found:
        click.echo("no templates (`otrs-mailgate template add NAME --text ...`)")


@template.command("show")
@click.argument("name")
@click.option("--queue", help="As a ticket of this queue would get it.")
@click.option("--language", help="In this language, if it has one.")
@pass_ctx
@_database_errors
def template_show(ctx: Ctx, name: str, queue: str | None, language: str | None) -> None:
    """One template's text, as a ticket of the queue would pick it."""
    from otrs_mailgate.tickets import answers

    with ctx.session() as session:
        found = answers.find(
            session.connection(), name, _queue(ctx, queue), language, ctx.config.system.language
        )
    if found is None:
        click.echo(
            f"otrs-mailgate: no template {name!r}" + (f" for queue {queue}" if queue else ""),
            err=True,
        )
        sys.exit(1)
    click.echo(_line(found))
    click.echo("")
    click.echo(found.text.rstrip("\n"))


@template.command("remove")
@click.argument("name")
@click.option("--queue", help='Only the one of this queue ("" for the one of every queue).')
@click.option("--language", help="Only the one in this language.")
@pass_ctx
@_database_errors
@_errors
def template_remove(ctx: Ctx, name: str, queue: str | None, language: str | None) -> None:
    """Remove a template (every queue's and language's of that name unless narrowed)."""
    from otrs_mailgate.tickets import answers

    with ctx.transaction() as session:
        gone = answers.remove(
            session, name, None if queue is None else _queue(ctx, queue), language
        )
    click.echo(f"removed {gone} template(s) named {name}")


COMMANDS = [template]
