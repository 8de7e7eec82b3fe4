"""`otrs-mailgate faq`: the knowledge base."""

from __future__ import annotations

import sys
from typing import Any

import click

from otrs_mailgate.admin.base import (
    Ctx,
    _dump,
    _refusals,
    pass_ctx,
)


@click.group()
def faq() -> None:
    """The knowledge base: entries agents insert with faq=<id>, queues may suggest."""


_faq_errors = _refusals("otrs_mailgate.tickets.faq", "FaqError")


def _faq_text(text: str | None) -> str | None:
    return sys.stdin.read() if text == "-" else text


def _faq_queue(ctx: Ctx, queue: str | None) -> str | None:
    if queue is not None and queue != "" and ctx.config.queue_by_name(queue) is None:
        raise click.BadParameter(f"no queue named {queue!r}", param_hint="--queue")
    return queue


def _faq_line(entry: Any) -> str:
    return f"{entry.id:>5}  {entry.language}  {entry.queue or '(every queue)':<16} {entry.title}"


_LANGUAGE = click.option("--language", help="Two letters, e.g. en or de.")


@faq.command("add")
@click.option("--title", required=True)
@click.option("--text", "body", required=True, help="The answer; - reads it from stdin.")
@_LANGUAGE
@click.option("--queue", help="Only for this queue (default: every queue).")
@pass_ctx
@_faq_errors
def faq_add(ctx: Ctx, title: str, body: str, language: str | None, queue: str | None) -> None:
    """Add an entry."""
    from otrs_mailgate.tickets import faq as faq_mod

    language = _faq_language(language or ctx.config.system.language)
    queue = _faq_queue(ctx, queue) or ""
    with ctx.transaction() as session:
        entry = faq_mod.add(session, title, _faq_text(body) or "", language, queue)
    click.echo(f"added {_faq_line(entry)}")


def _faq_language(language: str) -> str:
    import re

    if not re.fullmatch(r"[a-z]{2}", language):
        raise click.BadParameter(f"{language!r} is not two letters", param_hint="--language")
    return language


@faq.command("edit")
@click.argument("entry_id", type=int)
@click.option("--title")
@click.option("--text", "body", help="The new answer; - reads it from stdin.")
@_LANGUAGE
@click.option("--queue", help='Only for this queue; "" for every queue.')
@pass_ctx
@_faq_errors
def faq_edit(
    ctx: Ctx,
    entry_id: int,
    title: str | None,
    body: str | None,
    language: str | None,
    queue: str | None,
) -> None:
    """Change an entry; what is not given stays."""
    from otrs_mailgate.tickets import faq as faq_mod

    if language is not None:
        language = _faq_language(language)
    queue = _faq_queue(ctx, queue)
    with ctx.transaction() as session:
        entry = faq_mod.edit(
            session, entry_id, title=title, text=_faq_text(body), language=language, queue=queue
        )
    click.echo(f"changed {_faq_line(entry)}")


@faq.command("list")
@click.option("--queue", help="Entries for this queue (and for every queue).")
@_LANGUAGE
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@_faq_errors
def faq_list(ctx: Ctx, queue: str | None, language: str | None, as_json: bool) -> None:
    """The entries, oldest first."""
    from otrs_mailgate.tickets import faq as faq_mod

    with ctx.engine().connect() as conn:
        entries = faq_mod.listing(conn, _faq_queue(ctx, queue), language)
    if as_json:
        _dump([e.as_dict() for e in entries])
        return
    for entry in entries:
        click.echo(_faq_line(entry))


@faq.command("show")
@click.argument("entry_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@_faq_errors
def faq_show(ctx: Ctx, entry_id: int, as_json: bool) -> None:
    """One entry with its text."""
    from otrs_mailgate.tickets import faq as faq_mod

    with ctx.engine().connect() as conn:
        entry = faq_mod.get(conn, entry_id)
    if entry is None:
        raise faq_mod.FaqError(f"no FAQ entry {entry_id}")
    if as_json:
        _dump(entry.as_dict())
        return
    click.echo(f"{_faq_line(entry)}\n\n{entry.text}")


COMMANDS = [faq]
