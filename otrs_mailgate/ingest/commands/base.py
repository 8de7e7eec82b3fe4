"""What every mail command is: a small class with its words, its check and its action.

Each command is a class in one `eml_*.py` module, registered here by name (as GNU
Mailman's commands/eml_*.py are).  The class says what it takes (its Syntax, which the
grammar in mail/commands.py reads), checks one written command against the ticket and
the agent (grants, locks, values) and records in the Plan what it will do and the
transcript line that says so.  The Plan runs the actions only when no command of the
mail failed: all or none, in one place (commandmail.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import QueueConfig
from otrs_mailgate.ingest.trip import Trip
from otrs_mailgate.mail import commands as grammar
from otrs_mailgate.mail.commands import Command
from otrs_mailgate.mail.parse import ParsedMail
from otrs_mailgate.site import Site
from otrs_mailgate.tickets.agents import AgentRef
from otrs_mailgate.tickets.refs import TicketRef


class CommandContext(Protocol):
    """What a command sees of the mail it is in (commandmail.CommandMail is one): the
    ticket, the agent, the transaction, and the few helpers every command shares."""

    trip: Trip
    site: Site
    session: Session
    conn: Connection
    mail: ParsedMail
    agent: AgentRef
    ticket: TicketRef
    queue: QueueConfig
    now: dt.datetime
    names: list[str]  # the mail's commands by name
    events: list[tuple[str, dict[str, str]]]  # what the customer may be told
    inserts: list[str]  # texts to put below the agent's own (faq=, template=)
    closed_children: list[TicketRef]

    def set_state(
        self,
        new: str,
        *,
        reason: str,
        pending_until: dt.datetime | None = None,
        ticket: TicketRef | None = None,
    ) -> None: ...

    def history(self, ticket_id: int, type_: str, **detail: object) -> None: ...

    def ticket_by_number(self, number: str) -> TicketRef | None: ...

    def frame_context(self) -> dict[str, Any]: ...


@dataclass
class Line:
    command: str
    result: str


@dataclass
class Plan:
    """What a mail asks for, checked; `actions` run only if `errors` stays empty."""

    lines: list[Line] = field(default_factory=list)
    errors: int = 0
    actions: list[Callable[[], None]] = field(default_factory=list)
    mode: str = "reply"
    quiet: bool = False
    owner: AgentRef | None = None  # who owns and holds the lock afterwards
    unlock: bool = False

    def ok(self, command: str, result: str, action: Callable[[], None] | None = None) -> None:
        self.lines.append(Line(command, result))
        if action is not None:
            self.actions.append(action)

    def error(self, command: str, reason: str) -> None:
        self.lines.append(Line(command, f"ERROR: {reason}"))
        self.errors += 1


class MailCommand:
    """One command of an agent's mail.  Subclasses set the class attributes and
    `check`; `check` calls plan.ok (with the action that applies it) or plan.error."""

    name: ClassVar[str]
    value: ClassVar[str] = "none"  # "none", "required" or "optional"
    usage: ClassVar[str]
    access: ClassVar[str] = "rw"  # the grant it needs on the ticket's queue: "rw" or "ro"
    tells: ClassVar[bool] = False  # a change the owner and watchers hear of (notify.changed)

    def __init__(self, mail: CommandContext, command: Command) -> None:
        self.mail = mail
        self.command = command

    @staticmethod
    def check_value(value: str) -> str:
        """Why a written value is wrong (the grammar asks, before any database), or ""."""
        return ""

    def check(self, plan: Plan) -> None:
        raise NotImplementedError

    @property
    def text(self) -> str:
        return self.command.text


REGISTRY: dict[str, type[MailCommand]] = {}


def register(cls: type[MailCommand]) -> type[MailCommand]:
    """Class decorator: the command by its name, and its words in the grammar."""
    assert cls.name not in REGISTRY, f"two commands named {cls.name}"
    REGISTRY[cls.name] = cls
    grammar.VOCABULARY[cls.name] = grammar.Syntax(cls.name, cls.value, cls.usage, cls.check_value)
    return cls
