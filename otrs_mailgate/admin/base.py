"""What every command module of the CLI shares: the context (config, engine and sessions
set up in one place), output helpers, and the decorators that turn errors into one line."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from otrs_mailgate.config import schema as config_mod


class Ctx:
    """The config, and the one engine a command uses (made on first use: commands that
    need no database, and `deliver`'s fast path, never import SQLAlchemy)."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: config_mod.Config | None = None
        self._engine: Any = None

    @property
    def config(self) -> config_mod.Config:
        if self._config is None:
            try:
                self._config = config_mod.load(self.config_path)
            except config_mod.ConfigError as exc:
                click.echo(f"otrs-mailgate: config error: {exc}", err=True)
                sys.exit(2)
            for warning in self._config.warnings:
                click.echo(f"otrs-mailgate: warning: {warning}", err=True)
        return self._config

    def engine(self, *, create: bool = False) -> Any:
        """The command's engine.  Only `init` creates a database (create=True): any
        other command on a SQLite path with no file says so instead of making one."""
        if self._engine is None:
            from otrs_mailgate.store.db import make_engine

            database = self.config.database
            self._engine = make_engine(database.url, database.busy_timeout_ms, create=create)
        return self._engine

    def sessions(self) -> Any:
        """A sessionmaker on the command's engine (its history rows keyed like the daemon's)."""
        from otrs_mailgate.store.db import sessionmaker_for
        from otrs_mailgate.tickets import history

        engine = self.engine()  # first: a database that is not there makes no key file
        keys = history.keys_for(self.config, rows=lambda: history.bounds(engine))
        return sessionmaker_for(engine, {history.INFO: keys})

    def session(self) -> Any:
        """A session for reading (the caller closes it, `with ctx.session() as s`)."""
        return self.sessions()()

    def transaction(self) -> Any:
        """A unit of work: commits at the end of the `with`, rolls back on an error."""
        from otrs_mailgate.store.db import transaction

        return transaction(self.sessions())

    def pipeline(self, *, acknowledge: bool = True, import_clocks: bool = False) -> Any:
        """The ingest pipeline on the command's engine."""
        from otrs_mailgate.ingest.pipeline import Pipeline

        return Pipeline(
            self.config, self.engine(), acknowledge=acknowledge, import_clocks=import_clocks
        )


pass_ctx = click.make_pass_decorator(Ctx)


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _database_errors(fn: Any) -> Any:
    """Turn a database that is down or uninitialised into one line and exit 1."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import DBAPIError

        from otrs_mailgate.store.db import DatabaseProblem, TemporaryFailure, explain

        try:
            return fn(*args, **kwargs)
        except (DBAPIError, DatabaseProblem, TemporaryFailure) as exc:
            click.echo(f"otrs-mailgate: database error: {explain(exc)}", err=True)
            sys.exit(1)

    return wrapper


def _refusals(module: str, name: str) -> Any:
    """A decorator: the module's exception for a request that cannot be done becomes one
    line on stderr and exit 1 (imported only when the command runs)."""
    import functools

    def decorate(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            import importlib

            error = getattr(importlib.import_module(module), name)
            try:
                return fn(*args, **kwargs)
            except error as exc:
                click.echo(f"otrs-mailgate: {exc}", err=True)
                sys.exit(1)

        return _database_errors(wrapper)

    return decorate


def _instant(text: str, hint: str) -> Any:
    """An ISO date or date-time; one without a zone is this machine's local time."""
    import datetime as dt

    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO date or time", param_hint=hint) from None
    return (value if value.tzinfo else value.astimezone()).astimezone(dt.UTC)


def _day(text: str | None, hint: str) -> Any:
    import datetime as dt

    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)", param_hint=hint) from None


def _csv(rows: list[dict[str, Any]], fields: list[str]) -> None:
    import csv

    writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


agent_errors = _refusals("otrs_mailgate.tickets.agents", "AgentError")
