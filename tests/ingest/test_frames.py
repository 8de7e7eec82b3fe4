"""Queue salutations and signatures (issue 30): they frame every answer an agent sends
the customer by mail, in the ticket's language, without doubling the agent's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store.models import Article

from agent_helpers import Desk, SigningDomain
from helpers import mail, make_config

HOT = "hotline@example.com"
CUSTOMER = "cus@customer.test"
FRAMES = {
    "salutation": {
        "en": "Dear {{ customer.name or 'customer' }},",
        "de": "Guten Tag {{ customer.name }},",
    },
    "signature": {
        "": "{{ agent.name }}, {{ queue.display_name }} (Mon-Fri 9-17)\nTicket {{ ticket.tag }}"
    },
}


def hotline(**extra: object) -> dict[str, object]:
    return {"name": "Hotline", "addresses": [HOT], "display_name": "ACME Hotline", **extra}


@pytest.fixture
def framed(db_url: str, signing: SigningDomain) -> Iterator[Desk]:
    p = Pipeline(make_config(db_url, queue=[hotline(**FRAMES)]))
    yield Desk(p, signing)
    p.engine.dispose()


def new_ticket(desk: Desk) -> str:
    raw = mail("Printer on fire", "It burns.", sender=f"Cus Tomer <{CUSTOMER}>")
    return desk.p.deliver_one(raw, HOT).ticket_number


def answers(desk: Desk) -> list[str]:
    texts = [m.get_content() for m in desk.to(CUSTOMER)]
    return [t for t in texts if "thank you for your message" not in t]


def test_an_answer_is_framed_and_the_agents_own_signature_goes(framed: Desk) -> None:
    n = new_ticket(framed)
    body = "Thanks, the printer is fixed.\n\n-- \nAlice Agent\nACME Corp, Phone +49 30 1234\n"
    framed.command("alice", n, "", body)
    [answer] = answers(framed)
    assert answer.startswith("Dear Cus Tomer,\n\nThanks, the printer is fixed.\n")
    assert f"Alice, ACME Hotline (Mon-Fri 9-17)\nTicket [Ticket#{n}]" in answer
    assert "Phone +49 30 1234" not in answer  # one signature, the queue's
    with framed.p.sessions() as s:  # the article keeps the agent's words, not the frame
        stored = s.execute(select(Article.body_text).where(Article.sender_type == "agent")).scalar()
    assert stored == "Thanks, the printer is fixed."


def test_no_salutation_above_a_greeting_of_the_agents_own(framed: Desk) -> None:
    n = new_ticket(framed)
    framed.command("alice", n, "", "Hi Cus,\n\nit works again.")
    [answer] = answers(framed)
    assert answer.startswith("Hi Cus,\n\nit works again.") and "Dear" not in answer


def test_the_tickets_language_picks_the_salutation(db_url: str, signing: SigningDomain) -> None:
    p = Pipeline(make_config(db_url, queue=[hotline(language="de", **FRAMES)]))
    desk = Desk(p, signing)
    try:
        n = new_ticket(desk)
        desk.command("alice", n, "", "Der Drucker geht wieder.")
        [answer] = [t for t in answers(desk) if "Drucker geht" in t]
        assert answer.startswith("Guten Tag Cus Tomer,\n\nDer Drucker geht wieder.")
        assert "(Mon-Fri 9-17)" in answer  # "" is the signature for any language
    finally:
        p.engine.dispose()


def test_keep_sends_the_agents_own_signature_and_not_the_queues(
    db_url: str, signing: SigningDomain
) -> None:
    p = Pipeline(make_config(db_url, queue=[hotline(agent_signature="keep", **FRAMES)]))
    desk = Desk(p, signing)
    try:
        n = new_ticket(desk)
        desk.command("alice", n, "", "Fixed.\n\n-- \nAlice Agent\nPhone +49 30 1234\n")
        [answer] = answers(desk)
        assert "Phone +49 30 1234" in answer and "(Mon-Fri 9-17)" not in answer
        assert answer.startswith("Dear Cus Tomer,")
    finally:
        p.engine.dispose()


def test_notes_and_acknowledgements_are_not_framed(framed: Desk) -> None:
    n = new_ticket(framed)
    [ack] = [m.get_content() for m in framed.to(CUSTOMER)]
    assert "Dear" not in ack and "(Mon-Fri 9-17)" not in ack
    framed.command("alice", n, "note", "Internal: printer model X.")
    assert answers(framed) == []


@pytest.mark.parametrize(
    ("frames", "problem"),
    [
        ({"salutation": {"en": "Dear {{ customer.nmae }},"}}, "nmae"),
        ({"signature": {"en": "{% if %}"}}, "TemplateSyntaxError"),
        ({"signature": {"english": "Bye"}}, "not a language code"),
    ],
)
def test_a_frame_that_cannot_be_written_is_refused_when_the_config_is_read(
    db_url: str, frames: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        make_config(db_url, queue=[hotline(**frames)])
    assert problem in str(caught.value)
