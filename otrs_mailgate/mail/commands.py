"""The command language of agents' mails: parsing only, no database.

Commands come from inside the subject tag (`[Ticket#N close time=15m]`) and
from `Name: value` lines at the very top of the body (`Command: close time=15m`
or `Pending: 2d`), which stop at the first other line.  A closed vocabulary;
every word is checked here, so a typo is an error in the transcript and never
a silent no-op.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from otrs_mailgate.mail import addresses


@dataclass(frozen=True)
class Syntax:
    """The words of one command, as its class in ingest/commands/ declares them."""

    name: str
    value: str  # "none", "required" or "optional" (`split` or `split=<id>`)
    usage: str  # shown in transcripts and notifications
    check: Callable[[str], str] = lambda value: ""  # why a value is wrong, or ""


# name -> Syntax; filled by ingest/commands/ (one class per command registers its words),
# so the grammar and the commands it knows cannot drift apart
VOCABULARY: dict[str, Syntax] = {}
PRIORITIES = {"very-low": 1, "low": 2, "normal": 3, "high": 4, "very-high": 5}
_DURATION = re.compile(r"(\d+)\s*([wdhm])")
_UNITS = {"w": 7 * 24 * 60, "d": 24 * 60, "h": 60, "m": 1}
_LINE = re.compile(r"^([A-Za-z][A-Za-z+-]*)\s*:\s*(.*?)\s*$")


@dataclass(frozen=True)
class Command:
    name: str
    value: str
    text: str  # as the agent wrote it, for the transcript


@dataclass
class Parsed:
    commands: list[Command]
    errors: list[tuple[str, str]]  # (what the agent wrote, why it is wrong and how to fix it)
    body: str  # the body without the command lines


def duration_minutes(text: str) -> int:
    """`15m`, `2h`, `1h30m`, `3d`, `1w`, or plain minutes; ValueError otherwise."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    pos, total = 0, 0
    for match in _DURATION.finditer(text):
        if text[pos : match.start()].strip():
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not total or text[pos:].strip():
        raise ValueError(f"{text!r} is not a duration (use e.g. 15m, 2h, 1h30m, 3d, 1w)")
    return total


def priority(text: str) -> int:
    text = text.strip().lower()
    if text.isdigit() and 1 <= int(text) <= 5:
        return int(text)
    if text in PRIORITIES:
        return PRIORITIES[text]
    raise ValueError(f"{text!r} is not a priority (use 1-5 or {', '.join(PRIORITIES)})")


def _word(text: str) -> tuple[Command | None, str]:
    """One `name` or `name=value`; (command, "") or (None, reason)."""
    name, eq, value = text.partition("=")
    name = name.strip().lower()
    if not eq and f"{name}+" in VOCABULARY and name not in VOCABULARY:
        forms = [VOCABULARY[n].usage.partition(":")[0] for n in (f"{name}+", f"{name}-")]
        return None, f"write {' or '.join(forms)}"
    syntax = VOCABULARY.get(name)
    if syntax is None:
        return None, f"unknown command {name!r}; known are: {', '.join(VOCABULARY)}"
    value = value.strip()
    if syntax.value == "required" and not value:
        return None, f"{name} needs a value: {syntax.usage}"
    if syntax.value == "none" and value:
        if value.lower() not in ("yes", "1", "true"):
            return None, f"{name} takes no value"
        value = ""
    problem = syntax.check(value) if value else ""
    if problem:
        return None, problem
    return Command(name, value, text.strip()), ""


def duration_problem(value: str) -> str:
    try:
        duration_minutes(value)
    except ValueError as exc:
        return str(exc)
    return ""


def priority_problem(value: str) -> str:
    try:
        priority(value)
    except ValueError as exc:
        return str(exc)
    return ""


def address_problem(value: str) -> str:
    if not addresses.is_address(value):
        return f"{value!r} is not a mail address"
    try:
        addresses.canonical(value)  # Unanswerable (a ValueError) says why not
    except ValueError as exc:
        return str(exc)
    return ""


def _split(text: str) -> list[str]:
    """Words of a command string; `cc+ = a@b` and `time = 15m` become one word."""
    text = re.sub(r"\s*=\s*", "=", text.strip())
    return [w for w in text.split() if w]


def parse(tag_commands: str, body: str) -> Parsed:
    out = Parsed([], [], body)
    for word in _split(tag_commands):
        command, problem = _word(word)
        if command:
            out.commands.append(command)
        else:
            out.errors.append((word, problem))
    lines = body.split("\n")
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    while i < len(lines):
        match = _LINE.match(lines[i].strip())
        if not match:
            break
        key, value = match.group(1).lower(), match.group(2)
        if key == "command":
            words = _split(value)
        elif key in VOCABULARY and VOCABULARY[key].value == "required":
            words = [f"{key}={value}"]
        elif key in VOCABULARY and value.lower() in ("", "yes", "true", "1"):
            words = [key]
        else:
            break  # an ordinary line ("Note: the printer works again") ends the block
        for word in words:
            command, problem = _word(word)
            if command:
                out.commands.append(command)
            else:
                out.errors.append((lines[i].strip(), problem))
        i += 1
    out.body = "\n".join(lines[i:]).strip("\n")
    return out
