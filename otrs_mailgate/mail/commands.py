"""The command language of agents' mails: parsing only, no database.

Commands come from inside the subject tag (`[Ticket#N close time=15m]`) and
from `Name: value` lines at the very top of the body (`Command: close time=15m`
or `Pending: 2d`), which stop at the first other line.  A closed vocabulary;
every word is checked here, so a typo is an error in the transcript and never
a silent no-op.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from otrs_mailgate.mail import addresses

# name -> (takes a value, help shown in transcripts)
VOCABULARY: dict[str, tuple[bool, str]] = {
    "reply": (False, "send your text to the customer (the default)"),
    "note": (False, "keep your text internal, nothing goes to the customer"),
    "close": (False, "close the ticket"),
    "reopen": (False, "open a closed ticket again"),
    "pending": (True, "pending=<duration>, e.g. pending=3d: wait for the customer"),
    "owner": (True, "owner=<agent login or address>: give the ticket to that agent"),
    "take": (False, "make yourself the owner and lock the ticket"),
    "unlock": (False, "release your lock"),
    "steal": (False, "take over a ticket locked by another agent"),
    "queue": (True, "queue=<name>: move the ticket"),
    "priority": (True, "priority=<1-5 or very-low, low, normal, high, very-high>"),
    "time": (True, "time=<duration>, e.g. time=15m or time=1h30m: account time"),
    "merge": (True, "merge=<ticket number>: merge this ticket into that one"),
    "parent": (True, "parent=<ticket number>: make this ticket a child of that one"),
    "cc+": (True, "cc+=<address>: copy replies to that address"),
    "cc-": (True, "cc-=<address>: stop copying replies to that address"),
    "quiet": (False, "send no mail to the customer"),
    "faq": (True, "faq=<id>: put that knowledge base entry into your reply"),
    "spam": (False, "the mail is spam: to the Junk queue, closed, nothing to the customer"),
    "ham": (
        False,
        "not spam: a Junk ticket goes to its queue as a new ticket; held answers go out",
    ),
    "split": (
        False,
        "split (in a reply to an article's notification) or split=<article id>: "
        "that article becomes a new ticket",
    ),
}
OPTIONAL_VALUE = {"split": str.isdigit}  # a command that may take a value of this kind
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
    if name in ("cc", "cc+", "cc-") and not eq:
        return None, "write cc+=<address> or cc-=<address>"
    if name not in VOCABULARY:
        known = ", ".join(VOCABULARY)
        return None, f"unknown command {name!r}; known are: {known}"
    wants_value, usage = VOCABULARY[name]
    value = value.strip()
    if wants_value and not value:
        return None, f"{name} needs a value: {usage}"
    optional = OPTIONAL_VALUE.get(name)
    if optional is not None and value and optional(value):
        return Command(name, value, text.strip()), ""
    if not wants_value and value and value.lower() not in ("yes", "1", "true"):
        return None, f"{name} takes no value"
    problem = _check_value(name, value)
    if problem:
        return None, problem
    return Command(name, value if wants_value else "", text.strip()), ""


def _check_value(name: str, value: str) -> str:
    try:
        if name in ("pending", "time"):
            duration_minutes(value)
        elif name == "priority":
            priority(value)
        elif name == "faq" and not value.isdigit():
            return f"{value!r} is not a FAQ entry number (`otrs-mailgate faq list`)"
        elif name in ("cc+", "cc-"):
            if not addresses.is_address(value):
                return f"{value!r} is not a mail address"
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
        elif key in VOCABULARY and VOCABULARY[key][0]:
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
