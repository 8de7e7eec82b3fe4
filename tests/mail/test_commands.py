"""The command language: words in the subject tag, lines at the top of the body."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otrs_mailgate.mail.commands import duration_minutes, parse, priority


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("15m", 15),
        ("2h", 120),
        ("1h30m", 90),
        ("3d", 4320),
        ("1w", 10080),
        ("45", 45),
        ("1h 5m", 65),
    ],
)
def test_durations(text: str, minutes: int) -> None:
    assert duration_minutes(text) == minutes


@pytest.mark.parametrize("text", ["", "soon", "5x", "m5", "1h soon", "0m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        duration_minutes(text)


def test_priorities() -> None:
    assert [priority(p) for p in ("1", "5", "very-low", "HIGH", "normal")] == [1, 5, 1, 4, 3]
    with pytest.raises(ValueError, match="use 1-5 or very-low"):
        priority("6")


def test_tag_words_and_body_lines() -> None:
    p = parse(
        "close time = 15m cc+=boss@x.test", "Command: note quiet\nPending: 2d\n\nHello.\nClose:"
    )
    assert [(c.name, c.value) for c in p.commands] == [
        ("close", ""),
        ("time", "15m"),
        ("cc+", "boss@x.test"),
        ("note", ""),
        ("quiet", ""),
        ("pending", "2d"),
    ]
    assert p.errors == [] and p.body == "Hello.\nClose:"  # the block ended at the blank line


def test_errors_name_the_fix() -> None:
    p = parse("clsoe owner pending=soon quiet=maybe cc", "")
    reasons = dict(p.errors)
    assert reasons["clsoe"].startswith("unknown command 'clsoe'; known are: reply, note")
    assert (
        reasons["owner"]
        == "owner needs a value: owner=<agent login or address>: give the ticket to that agent"
    )
    assert "is not a duration" in reasons["pending=soon"]
    assert reasons["quiet=maybe"] == "quiet takes no value"
    assert reasons["cc"] == "write cc+=<address> or cc-=<address>"
    assert p.commands == []


def test_prose_first_line_is_not_a_command() -> None:
    p = parse("", "Note: the printer works again.\nThanks")
    assert p.commands == [] and p.errors == [] and p.body.startswith("Note: the printer")


@given(st.text(max_size=200), st.text(max_size=400))
def test_parse_never_raises(tag: str, body: str) -> None:
    p = parse(tag, body)
    assert len(p.commands) + len(p.errors) <= len(tag.split()) + len(body.splitlines()) * 50 + 5
