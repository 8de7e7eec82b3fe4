"""Subject tags, reply prefixes of many languages, and rebuilding without doubling."""

from __future__ import annotations

import pytest

from otrs_mailgate.mail.subject import TagFormat, clean, strip_prefixes

N = "2026112210000014"  # valid Damm check digit
BAD = "2026112210000017"  # DESIGN.md's example: not a valid Damm number


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Printer",
        "RE: Printer",
        "re:Printer",
        "RE[2]: Printer",
        "Re(3): Printer",
        "AW: Printer",
        "Aw: AW: Printer",
        "Antw: Printer",
        "SV: Printer",
        "VS: Printer",
        "Odp: Printer",
        "R: Printer",
        "RIF: Printer",
        "Réf: Printer",
        "回复: Printer",
        "回复：Printer",
        "Fwd: Printer",
        "WG: Printer",
        "Re: Fw: RE: Printer",
    ],
)
def test_reply_prefixes_are_stripped(subject: str) -> None:
    assert strip_prefixes(subject) == "Printer"


def test_words_that_only_start_like_prefixes_stay() -> None:
    assert strip_prefixes("Reboot: server") == "Reboot: server"
    assert strip_prefixes("Review of Q3") == "Review of Q3"


def test_tag_found_only_with_valid_check_digit() -> None:
    tags = TagFormat()
    assert [t.number for t in tags.find(f"Re: [Ticket#{N}] Printer")] == [N]
    assert tags.find(f"Re: [Ticket#{BAD}] Printer") == []
    assert tags.find(f"[ticket#{N}]")[0].number == N  # case-insensitive hook


def test_tag_with_commands() -> None:
    tag = TagFormat().find(f"Re: [Ticket#{N} close time=15m] Printer")[0]
    assert (tag.number, tag.commands) == (N, "close time=15m")


def test_build_never_doubles_the_tag() -> None:
    tags = TagFormat()
    assert tags.build(N, "Printer") == f"[Ticket#{N}] Printer"
    assert tags.build(N, f"Re: AW: [Ticket#{N}] Printer") == f"[Ticket#{N}] Printer"
    assert tags.build(N, f"[Ticket#{N} close] Re: Printer") == f"[Ticket#{N}] Printer"
    assert tags.build(N, "") == f"[Ticket#{N}]"


def test_custom_hook_and_divider() -> None:
    tags = TagFormat("Case:", " ")
    assert tags.tag(N) == f"[Case: {N}]"
    assert tags.find(f"Re: [Case: {N}] x")[0].number == N
    assert tags.find(f"Re: [Ticket#{N}] x") == []


def test_clean_removes_line_breaks_and_controls() -> None:
    assert clean("a\r\nBcc: evil@x\tb\x00c") == "a Bcc: evil@x b c"
