"""`otrs-mailgate sla report` and `stats`: SLA and ticket statistics."""

from __future__ import annotations

import click

from otrs_mailgate.admin.base import (
    Ctx,
    _csv,
    _database_errors,
    _day,
    _dump,
    _instant,
    pass_ctx,
)


@click.group()
def sla() -> None:
    """Service level agreements."""


@sla.command("report")
@click.option("--from", "start", metavar="ISO-DATE", help="First day (default: 30 days ago).")
@click.option("--to", "end", metavar="ISO-DATE", help="End, not included (default: now).")
@click.option("--queue", help="Only this queue.")
@click.option("--json", "as_json", is_flag=True, help="JSON: a list of one object per queue.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line.")
@pass_ctx
@_database_errors
def sla_report(
    ctx: Ctx, start: str | None, end: str | None, queue: str | None, as_json: bool, as_csv: bool
) -> None:
    """Per queue: tickets within each SLA time, median and 90th percentile times."""
    import datetime as dt

    from otrs_mailgate.web import slareport

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if queue is not None and ctx.config.queue_by_name(queue) is None:
        raise click.BadParameter(f"no queue named {queue!r}", param_hint="--queue")
    until = _instant(end, "--to") if end else dt.datetime.now(dt.UTC)
    since = _instant(start, "--from") if start else until - dt.timedelta(days=30)
    with ctx.engine().connect() as conn:
        rows = slareport.build(conn, ctx.config, since, until, queue)
    if as_json:
        _dump(rows)
    elif as_csv:
        _csv(rows, list(rows[0]) if rows else ["queue", "tickets"])
    else:
        click.echo(slareport.text(rows))


@click.command("stats")
@click.option("--from", "start", metavar="YYYY-MM-DD", help="First day (default: 29 days ago).")
@click.option("--to", "end", metavar="YYYY-MM-DD", help="Last day, included (default: today).")
@click.option("--queue", help="Only this queue.")
@click.option(
    "--by",
    type=click.Choice(["day", "week", "month", "company"]),
    default="day",
    show_default=True,
    help="Periods, or the whole range by customer company.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON: periods, total, agents, senders.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV of the periods and the total.")
@pass_ctx
@_database_errors
def stats_cmd(
    ctx: Ctx,
    start: str | None,
    end: str | None,
    queue: str | None,
    by: str,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Tickets created, closed and open per period; times to first response and close;
    replies and accounted time per agent; top senders."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from otrs_mailgate.web import stats

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if queue is not None and ctx.config.queue_by_name(queue) is None:
        raise click.BadParameter(f"no queue named {queue!r}", param_hint="--queue")
    today = dt.datetime.now(ZoneInfo(ctx.config.system.timezone)).date()
    last = _day(end, "--to") or today
    first = _day(start, "--from") or last - dt.timedelta(days=29)
    if first > last:
        raise click.BadParameter("--from is after --to", param_hint="--from")
    with ctx.engine().connect() as conn:
        queues = [queue] if queue is not None else None
        period = "month" if by == "company" else by
        report = stats.build(conn, ctx.config, first, last, period, queues)  # type: ignore[arg-type]
    if by == "company":
        report["by"] = "company"
    if as_json:
        _dump(report)
    elif as_csv and by == "company":
        _csv(report["companies"], ["company", *list(stats.PERIOD_COLUMNS)[2:]])
    elif as_csv:
        _csv([*report["periods"], report["total"]], list(stats.PERIOD_COLUMNS))
    else:
        click.echo(stats.text(report))


COMMANDS = [sla, stats_cmd]
