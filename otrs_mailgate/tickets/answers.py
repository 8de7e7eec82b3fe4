"""Answer templates (OTRS's Templates, once "standard responses"): named answers kept in
the database, per queue ("" for every queue) and language, sent by `template=<name>`.

A template may also set a state afterwards (`then`: close, or pending=<duration>), as
OTRS's template types do.  Its text is a jinja template with the names of
config.schema.FRAME_SAMPLE, checked when it is added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.orm import Session

from otrs_mailgate.config.schema import template_problem
from otrs_mailgate.mail import commands as grammar
from otrs_mailgate.store.models import AnswerTemplate, utcnow

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_A = AnswerTemplate.__table__


class AnswerError(ValueError):
    """A template request that cannot be done; the message says why."""


@dataclass(frozen=True)
class Answer:
    id: int
    name: str
    queue: str
    language: str
    text: str
    then: str


def check_then(then: str) -> str:
    """ "" , "close" or "pending=<duration>" (normalised); AnswerError otherwise."""
    then = re.sub(r"\s*=\s*", "=", then.strip().lower())
    if then in ("", "close"):
        return then
    name, _, value = then.partition("=")
    if name == "pending" and value and not grammar.duration_problem(value):
        return then
    raise AnswerError(f"then={then!r}: write close or pending=<duration> (e.g. pending=3d)")


def save(
    session: Session, name: str, queue: str, language: str, text: str, then: str = ""
) -> tuple[Answer, bool]:
    """Add a template or replace its text; (the template, whether it was new)."""
    name = name.strip().lower()
    if not NAME.match(name):
        raise AnswerError(f"{name!r}: a template name is 1-64 of a-z, 0-9, _ . - (no spaces)")
    if not re.fullmatch(r"[a-z]{2}", language):
        raise AnswerError(f"{language!r} is not a language code (en, de, ...)")
    if not text.strip():
        raise AnswerError("a template needs a text")
    problem = template_problem(text)
    if problem:
        raise AnswerError(problem)
    then = check_then(then)
    conn = session.connection()
    key = (_A.c.name == name, _A.c.queue == queue, _A.c.language == language)
    found = conn.execute(select(_A.c.id).where(*key)).scalar()
    now = utcnow()
    if found is not None:
        conn.execute(
            update(_A).where(_A.c.id == found).values(text=text, then=then, updated_at=now)
        )
        answer_id, new = int(found), False
    else:
        answer_id = conn.execute(
            _A.insert()
            .values(name=name, queue=queue, language=language, text=text, then=then,
                    created_at=now, updated_at=now)
            .returning(_A.c.id)
        ).scalar_one()  # fmt: skip
        new = True
    return Answer(answer_id, name, queue, language, text, then), new


def listing(conn: Connection, queue: str | None = None) -> list[Answer]:
    stmt = select(_A.c.id, _A.c.name, _A.c.queue, _A.c.language, _A.c.text, _A.c.then)
    if queue is not None:
        stmt = stmt.where(_A.c.queue.in_(("", queue)))
    rows = conn.execute(stmt.order_by(_A.c.name, _A.c.queue, _A.c.language))
    return [Answer(*row) for row in rows]


def find(conn: Connection, name: str, queue: str, *languages: str | None) -> Answer | None:
    """The template `name` for a ticket of `queue`: the queue's own before the one for
    every queue, and in each the first of `languages` it has, else English, else any."""
    found = [a for a in listing(conn, queue) if a.name == name.strip().lower()]
    wanted = [lang for lang in (*languages, "en") if lang]
    for own in (queue, ""):
        mine = [a for a in found if a.queue == own]
        for language in wanted:
            hit = next((a for a in mine if a.language == language), None)
            if hit is not None:
                return hit
        if mine:
            return mine[0]
    return None


def remove(session: Session, name: str, queue: str | None, language: str | None) -> int:
    """Delete the template (in one queue, in one language, or all of that name)."""
    stmt = delete(_A).where(_A.c.name == name.strip().lower())
    if queue is not None:
        stmt = stmt.where(_A.c.queue == queue)
    if language is not None:
        stmt = stmt.where(_A.c.language == language)
    gone = session.connection().execute(stmt).rowcount
    if not gone:
        raise AnswerError(f"no template {name!r}" + (f" in queue {queue}" if queue else ""))
    return int(gone)
