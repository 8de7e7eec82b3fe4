"""The one mapping from what became of a mail (an Outcome) to each entry point's answer:
an LMTP reply line, a sysexits(3) code for Postfix's pipe(8), a line of `import`.

A refusal is final (5xx, 65/67) only when the daemon meant it: not a mail at all,
or no queue for the address. Anything else keeps the mail at Postfix (4xx, 75).
Standard library only, so the pipe client can use it too.
"""

from __future__ import annotations

from typing import NamedTuple

from otrs_mailgate.ingest.outcome import Failed, Outcome, Result

EX_OK, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL = 0, 65, 67, 75


class Answer(NamedTuple):
    code: int  # the LMTP reply code
    status: str  # its enhanced status code (RFC 3463)
    exit: int  # the pipe entry's exit code


ANSWERS: dict[Outcome, Answer] = {
    Outcome.STORED: Answer(250, "2.0.0", EX_OK),
    Outcome.DUPLICATE: Answer(250, "2.0.0", EX_OK),
    Outcome.IGNORED: Answer(250, "2.0.0", EX_OK),
    Outcome.NOT_A_MAIL: Answer(550, "5.6.0", EX_DATAERR),
    Outcome.UNKNOWN_RECIPIENT: Answer(550, "5.1.1", EX_NOUSER),
    Outcome.CONFLICT: Answer(451, "4.3.0", EX_TEMPFAIL),
    Outcome.UNAVAILABLE: Answer(451, "4.3.0", EX_TEMPFAIL),
    Outcome.ERROR: Answer(451, "4.3.0", EX_TEMPFAIL),
}


class Reply(NamedTuple):
    """One recipient's LMTP answer, and what the daemon logs of it."""

    recipient: str
    code: int
    reply: str
    ticket: str = ""
    detail: str = ""


def tempfail(recipient: str, detail: str) -> Reply:
    """451 for a recipient whose batch never reached a verdict (database, bug)."""
    return Reply(recipient, 451, f"451 4.3.0 <{recipient}>: try again later", "", detail)


def lmtp(x: Result | Failed) -> Reply:
    """The LMTP reply for one recipient."""
    answer = ANSWERS[x.outcome]
    r = x.recipient
    if isinstance(x, Result):
        verb = "already stored" if x.status is Outcome.DUPLICATE else "stored"
        text = f"<{r}> {verb} in ticket {x.ticket_number}"
        if x.status is Outcome.IGNORED or not x.ticket_number:
            text = f"<{r}> accepted: {'; '.join(x.notes)}"
        return Reply(
            r, answer.code, f"{answer.code} {answer.status} {text}", x.ticket_number, x.status
        )
    error, outcome = x.error, x.outcome
    if outcome is Outcome.NOT_A_MAIL:
        return Reply(r, 550, f"550 5.6.0 <{r}>: not a mail message: {error}", "", outcome)
    if outcome is Outcome.UNKNOWN_RECIPIENT:
        return Reply(r, 550, f"550 5.1.1 <{r}>: unknown queue address")
    if outcome is Outcome.CONFLICT:
        return tempfail(r, "conflict")
    if outcome is Outcome.UNAVAILABLE:
        return tempfail(r, f"database: {error}")
    return tempfail(r, f"internal error {type(error).__name__}")


def sysexit(x: Result | Failed) -> tuple[int, str]:
    """The pipe entry's exit code and its one line (stdout, or stderr when not 0)."""
    if isinstance(x, Result):
        return EX_OK, f"{x.status}: ticket {x.ticket_number} article {x.article_id}"
    error, outcome = x.error, x.outcome
    text = {
        Outcome.NOT_A_MAIL: f"not a mail message: {error}",
        Outcome.UNKNOWN_RECIPIENT: f"unknown recipient: {error}",
        Outcome.UNAVAILABLE: f"database unavailable, try again later: {error}",
    }.get(outcome, f"internal error, try again later: {error!r}")
    return ANSWERS[outcome].exit, text


def import_line(x: Failed) -> str:
    """Why `import` could not store a message, for its summary."""
    error, outcome = x.error, x.outcome
    if outcome is Outcome.NOT_A_MAIL:
        return f"not a mail: {error}"
    if outcome is Outcome.UNKNOWN_RECIPIENT:
        return f"no queue for recipient {error}; use --queue"
    return f"internal error: {error!r}"


FINAL = {
    (answer.code, answer.status): (outcome, answer.exit)
    for outcome, answer in ANSWERS.items()
    if answer.exit in (EX_DATAERR, EX_NOUSER)
}


def from_reply(code: int, text: str) -> tuple[int, str]:
    """The pipe client's exit code for the daemon's reply to a forwarded mail.

    Only the daemon's deliberate refusals (the reply code and enhanced status of a
    final Outcome: not a mail, no such queue) are final; any other refusal (a
    protocol error, a size limit, a reply we do not know) is 75, so Postfix keeps
    the mail instead of bouncing it to the customer."""
    reply = f"{code} {text}"
    if 200 <= code < 300:
        return EX_OK, f"forwarded: {reply}"
    status = text.split(" ", 1)[0].strip()
    final = FINAL.get((code, status))
    if final is not None:
        outcome, exit_code = final
        return exit_code, f"refused by the daemon ({outcome}): {reply}"
    return EX_TEMPFAIL, f"daemon says try again later: {reply}"
