"""mail/replytext.py on its own: what counts as the agent's text (issue 26, item 4: it
was cut short at lines that only looked like quote headers or signatures)."""

from __future__ import annotations

from otrs_mailgate.mail.replytext import find

NOTE = "> ##- Write your reply above this line -##\n>\n> It still burns.\n> Priority: high"


def test_lines_that_look_like_headers_or_signatures_are_the_agents_text() -> None:
    text = (
        "Please do this:\n\n--- Steps ---\n-item one\n- item two\n__\n\n--\n"
        "To: the printer room\nFrom: the basement\nOn Tuesday we come.\n"
        "Subject: toner\n\nAlice\n\nOn 12/7/26 1:47 AM, Example Hotline wrote:\n" + NOTE
    )
    found = find(text)
    assert found.text() == text.split("\n\nOn 12/7/26")[0]
    assert found.style == "top" and found.problem == "" and found.signature == ""


def test_an_attribution_line_alone_is_no_answer() -> None:
    found = find("Am 07.12.26 um 01:47 schrieb Example Hotline:\n")
    assert found.text() == "" and found.problem


def test_a_signature_is_kept_apart() -> None:
    found = find("Fixed.\n\n-- \nAlice\nHotline\n\nOn Monday, X wrote:\n" + NOTE)
    assert (found.text(), found.signature) == ("Fixed.", "Alice\nHotline")
    phone = find("Fixed.\n\nSent from my iPhone\n\nOn Monday, X wrote:\n" + NOTE)
    assert (phone.text(), phone.signature) == ("Fixed.", "Sent from my iPhone")


def test_no_quote_at_all_is_the_whole_text() -> None:
    found = find("Just a note.\nSecond line.")
    assert (found.text(), found.style) == ("Just a note.\nSecond line.", "plain")


def test_an_unquoted_marker_ends_the_agents_text() -> None:
    found = find("Answer.\n\n##- Write your reply above this line -##\nNew ticket 1")
    assert found.text() == "Answer."
