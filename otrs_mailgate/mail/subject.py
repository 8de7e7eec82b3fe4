"""Subjects: find the ticket tag, strip reply prefixes, rebuild `[Ticket#N] subject`.

The tag may carry agent commands after the number (`[Ticket#N close time=15m]`);
this module only finds them, commands.py gives them meaning.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from otrs_mailgate.mail.ticketnumber import is_valid

# Reply and forward prefixes of many languages, with optional counters: Re:, RE[2]:,
# Re(2):, AW:, Antw:, SV:, VS:, Odp:, R:, RIF:, Réf:, 回复:, 答复:, 转发: ...
_PREFIX_WORDS = (
    "re",
    "aw",
    "antw",
    "antwort",
    "sv",
    "vs",
    "odp",
    "r",
    "rif",
    "réf",
    "ref",
    "ynt",
    "atb",
    "vá",
    "va",
    "ang",
    "bls",
    "fs",
    "res",
    "tr",
    "wg",
    "fw",
    "fwd",
    "enc",
    "i",
    "rv",
    "vl",
    "doorst",
    "pd",
    "πρθ",
    "σχετ",
    "השב",
    "رد",
    "回复",
    "回覆",
    "答复",
    "转发",
    "轉寄",
    "返信",
    "転送",
    "답장",
    "전달",
)
_PREFIX = re.compile(
    r"^\s*(?:"
    + "|".join(re.escape(w) for w in sorted(_PREFIX_WORDS, key=len, reverse=True))
    + r")\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:：]\s*",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Tag:
    number: str
    commands: str  # the text after the number inside the brackets, stripped
    span: tuple[int, int]


_CONTROLS = {c: " " for c in (*range(32), 127)}


def clean(text: str) -> str:
    """One line, no control characters, NFC: safe to put into a header again."""
    text = _SPACE.sub(" ", text.translate(_CONTROLS)).strip()
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def strip_prefixes(text: str) -> str:
    """Remove any run of leading reply/forward prefixes."""
    text = clean(text)
    while True:
        stripped = _PREFIX.sub("", text, count=1)
        if stripped == text:
            return text
        text = stripped


class TagFormat:
    """The configured hook (`Ticket#`) and divider; compiles the matching regex once."""

    def __init__(self, hook: str = "Ticket#", divider: str = "") -> None:
        self.hook = hook
        self.divider = divider
        self._regex = re.compile(
            r"\[\s*" + re.escape(hook) + re.escape(divider) + r"\s*(\d{2,40})(?:\s+([^\]]*))?\]",
            re.IGNORECASE,
        )

    def tag(self, number: str) -> str:
        return f"[{self.hook}{self.divider}{number}]"

    def find(self, subject: str) -> list[Tag]:
        """Every tag whose number has a valid check digit, in order of appearance."""
        found = []
        for m in self._regex.finditer(subject):
            if is_valid(m.group(1)):
                found.append(Tag(m.group(1), (m.group(2) or "").strip(), m.span()))
        return found

    def remove(self, subject: str) -> str:
        return clean(self._regex.sub(" ", subject))

    def build(self, number: str, subject: str) -> str:
        """`[Ticket#N] subject` with prefixes and every old tag (and command) removed."""
        bare = strip_prefixes(self.remove(strip_prefixes(subject)))
        return f"{self.tag(number)} {bare}".rstrip()
