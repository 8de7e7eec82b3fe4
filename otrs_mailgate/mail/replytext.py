"""The agent's new text in a reply to one of our notifications, as mail clients write it.

A reply holds the agent's words and a copy of our notification, arranged the way the
agent's mail client arranges it: above the quote (top-posting: Outlook, Gmail, the
phones), below it (bottom-posting: Thunderbird, mutt, many Germans), or between
quoted pieces (interleaved).  The copy is marked by `>` quoting (HTML blockquotes
become that, see htmltext.html_to_text(quotes=True)), introduced by an attribution
line ("On ... wrote:", "Am ... schrieb ...:", "Le ... a écrit :"), or follows an
Outlook header block ("From:/Sent:/To:/Subject:", "Von:/Gesendet:/An:/Betreff:")
unquoted.  Our marker line (`##- Write your reply above this line -##`) is the
strongest sign: nothing at or below an unquoted one is the agent's.

Which lines introduce a copy comes from mail-parser-reply's table of attribution and
header forms in thirteen languages (its HEADER_REGEX), with the forms it lacks for
Russian added here; its reply splitting is not used (it knows only top-posting and
takes `-item` or `--- Steps ---` for a signature).  The segmentation is ours: every
run of unquoted lines outside an introduction is the agent's, so bottom-posted and
interleaved answers are found as well as top-posted ones.

Pure functions, no database: ingest/commands.py decides what is sent.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Collection
from dataclasses import dataclass

from mailparser_reply.constants import MAIL_LANGUAGES
from mailparser_reply.parser import EmailMessage

MARKERS = ("##- Write your reply above this line -##", "##- Antwort bitte über dieser Zeile")
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "ja", "zh", "ko", "pl", "sv", "da", "cs")

_QUOTED = re.compile(r"^[ \t]*>")
# Russian forms neither library knows: Outlook's and Windows Mail's header block, and
# the attributions of Gmail, Yandex and mail.ru ("... пользователь X написал:",
# "..., X <x@y>:", "... от X <x@y>:").
_RU_HEADER = re.compile(
    r"^[ \t*]*(?:От|Отправлено|Кому|Копия|Тема|Дата)[ \t*]*:", re.IGNORECASE | re.MULTILINE
)
_RU_ATTRIBUTION = re.compile(r"(?:написал(?:\(а\)|а)?|пишет)\s*:\s*$|\sот\s.+<[^<>]+@[^<>]+>:\s*$")
# Headers that open an Outlook-style block in the languages we read: a block must
# hold one of these to be one (two lines "To: ..." and "Subject: ..." in an agent's
# own text are not a quoted mail).
_FROM_NAMES = re.compile(
    r"^[ \t*]*(?:From|Von|De|Da|Van|Från|Fra|Od|Od kogo|От|От кого|差出人|发件人|寄件者|"
    r"보낸\s?사람)[ \t*]*:",
    re.IGNORECASE,
)
# ... and one of these: when it was sent (a From: and a To: line of an agent's own text,
# "To: the printer room", are no header block).
_DATE_NAMES = re.compile(
    r"^[ \t*]*(?:Date|Sent|Datum|Gesendet|Envoyé|Enviado|Enviado el|Inviato|Data|Verzonden|"
    r"Skickat|Sendt|Wysłano|Odesláno|Отправлено|Дата|送信日時|日付|发送时间|日期|寄件日期|"
    r"보낸\s?날짜)[ \t*]*:",
    re.IGNORECASE,
)
# A line shaped like a header ("Date : lundi ...", "Sent: ..."): the first lines of an
# Outlook header block that a language's table does not name are dropped with it.
_HEADERISH = re.compile(r"^[ \t*]*\w[\w .-]{0,24}?[ \t*]*[:：][ \t]*\S")
_SEPARATOR = re.compile(
    r"^[ \t]*(?:-{2,}\s*[^-].*[^-]\s*-{2,}|_{20,}|[-=]{20,})[ \t]*$"  # ----- Original Message -----
)
_SIG = "-- "
_SENT_FROM = re.compile(
    r"^(?:"
    + "|".join(
        f"(?:{MAIL_LANGUAGES[lang]['sent_from']})"
        for lang in LANGUAGES
        if MAIL_LANGUAGES.get(lang, {}).get("sent_from")
    )
    + r"|Отправлено с (?:iPhone|iPad|моего .*)|Sent from Mail for Windows)\b.*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Found:
    """The agent's text as found: what may go to the customer, and what was seen."""

    # (the quoted lines of the customer's it answers, the agent's own text): one piece
    # for a top- or bottom-posted answer, one a quoted passage for an interleaved one
    pieces: tuple[tuple[str, str], ...]
    signature: str  # the agent's own signature block ("" none), kept apart
    style: str  # top | bottom | interleaved | plain (no quote found)
    problem: str  # why the text must not go out as an answer ("" when it may)

    @property
    def head(self) -> str:
        """The agent's first own words: where command lines stand."""
        return self.pieces[0][1] if self.pieces else ""

    def text(self, head: str | None = None) -> str:
        """The answer as it goes out; `head` replaces the first own words (what is
        left of them once command lines are read)."""
        parts = []
        for index, (quote, own) in enumerate(self.pieces):
            own = head if index == 0 and head is not None else own
            parts.append((quote + "\n\n" if quote and own.strip() else "") + own.strip("\n"))
        return "\n\n".join(part for part in parts if part.strip())


@functools.cache
def _intro_regex() -> re.Pattern[str]:
    """mail-parser-reply's attribution and header forms for all our languages."""
    return EmailMessage(text="", languages=list(LANGUAGES)).HEADER_REGEX


def is_marker(line: str) -> bool:
    return any(marker in line for marker in MARKERS)


def _intro_lines(lines: list[str]) -> set[int]:
    """Indexes of lines that introduce a copy of another mail: attribution lines and
    Outlook header blocks (mail-parser-reply's table, and the Russian forms here)."""
    text = "\n".join(lines)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    found: set[int] = set()

    def mark(begin: int, end: int) -> None:
        for index, start in enumerate(starts[:-1]):
            if start < end and starts[index + 1] - 1 > begin:
                found.add(index)

    for match in _intro_regex().finditer(text):
        begin, end = match.span()
        while begin < end and text[begin] == "\n":
            begin += 1
        mark(begin, end)
    for index in range(len(lines) - 1):  # Russian header blocks: two lines or more
        if _RU_HEADER.match(lines[index]) and _RU_HEADER.match(lines[index + 1]):
            found.update({index, index + 1})
    for index, line in enumerate(lines):
        if _RU_ATTRIBUTION.search(line) and not _QUOTED.match(line):
            found.add(index)
    return found


def _next_content(lines: list[str], index: int) -> int:
    """The index of the next non-blank line at or after index (len(lines): none)."""
    while index < len(lines) and not lines[index].strip():
        index += 1
    return index


def _header_block(lines: list[str], index: int, intros: set[int]) -> bool:
    """An unquoted header block starts here and holds a From/Date/Sent-like line."""
    start = index
    while start > 0 and _HEADERISH.match(lines[start - 1]):  # lines the table missed
        start -= 1
    end = index
    while end < len(lines) and end in intros and not _QUOTED.match(lines[end]):
        end += 1
    block = lines[start:end]
    return (
        len(block) >= 2
        and any(_FROM_NAMES.match(line) for line in block)
        and any(_DATE_NAMES.match(line) for line in block)
    )


def find(text: str, customer_text: str = "") -> Found:
    """The agent's new text in a reply.  `customer_text`: what the customer wrote (the
    quoted lines an interleaved answer keeps must be theirs, never our frame)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    intros = _intro_lines(lines)
    segments: list[tuple[list[str], list[str]]] = []  # (quote just before, own lines)
    quote: list[str] = []
    own: list[str] = []
    seen_quote = False
    index = 0
    while index < len(lines):
        line = lines[index]
        if _QUOTED.match(line):
            if own:
                segments.append((quote, own))
                own = []
                quote = []
            quote.append(line)
            seen_quote = True
            index += 1
            continue
        if quote and line.strip():  # a quote block ended: its last paragraph is kept
            quote = _last_paragraph(quote)
        if is_marker(line) or (_SEPARATOR.match(line) and _original_follows(lines, index)):
            seen_quote = True
            while own and (not own[-1].strip() or _HEADERISH.match(own[-1])):
                own.pop()  # a header block above our notification, in any form
            break  # our notification (or a forwarded original) follows unquoted
        if index in intros:
            if _header_block(lines, index, intros):
                seen_quote = True
                while own and _HEADERISH.match(own[-1]):  # its lines the table missed
                    own.pop()
                break  # Outlook: the header of the original, which follows unquoted
            nxt = _next_content(lines, index + 1)
            while nxt < len(lines) and nxt in intros and not _QUOTED.match(lines[nxt]):
                nxt = _next_content(lines, nxt + 1)  # a wrapped attribution
            if nxt >= len(lines) or _QUOTED.match(lines[nxt]) or is_marker(lines[nxt]):
                index = nxt  # an attribution: the quote it introduces follows
                continue
            # no quote follows: the agent's own words ("To: the printer room")
        if _introduces_quote(lines, index):
            index = _next_content(lines, index + 1)  # any language's "... wrote:"
            continue
        own.append(line)
        index += 1
    if own:
        segments.append((quote, own))
    return _assemble(segments, seen_quote, customer_text)


def _original_follows(lines: list[str], index: int) -> bool:
    """After a separator line: a header block or quoted text (a forwarded original)."""
    nxt = _next_content(lines, index + 1)
    if nxt >= len(lines):
        return False
    return bool(_FROM_NAMES.match(lines[nxt]) or _QUOTED.match(lines[nxt]) or is_marker(lines[nxt]))


def _introduces_quote(lines: list[str], index: int) -> bool:
    """A short line ending in a colon right above quoted text introduces it, in any
    language ("Le ... a écrit :", "..., Example Hotline <hotline@example.com>:")."""
    line = lines[index].rstrip()
    if not line.endswith((":", "：")) or len(line) > 300:
        return False
    nxt = index + 1
    if nxt < len(lines) and not lines[nxt].strip():
        nxt += 1
    return nxt < len(lines) and bool(_QUOTED.match(lines[nxt]))


def _last_paragraph(quote: list[str]) -> list[str]:
    """The quoted lines after the last empty quoted line: what an answer below refers to."""
    for index in range(len(quote) - 1, -1, -1):
        if not quote[index].lstrip().lstrip(">").strip():
            return quote[index + 1 :]
    return quote


def _assemble(
    segments: list[tuple[list[str], list[str]]], seen_quote: bool, customer_text: str
) -> Found:
    pieces = [(quote, own) for quote, own in segments if "\n".join(own).strip()]
    style = "plain" if not seen_quote else "top"
    if not pieces:
        return Found((), "", style, "no text of yours found")
    quote, own = pieces[-1]
    own, signature = _split_signature(own)
    pieces[-1] = (quote, own)
    pieces = [(q, o) for q, o in pieces if "\n".join(o).strip()]
    if not pieces:
        return Found((), signature, style, "only a signature, no text of yours found")
    if len(pieces) > 1:
        style = "interleaved"
    elif pieces[0][0]:
        style = "bottom"
    theirs = _words(customer_text)
    found = []
    for quote, own in pieces:
        kept = []
        if style == "interleaved":  # the customer's words each piece answers
            kept = [q for q in quote if _unquote(q).strip() and _words(_unquote(q)) in theirs]
        found.append(("\n".join(kept), _tidy(own)))
    result = Found(tuple(found), signature, style, "")
    return dataclasses.replace(result, problem=_problem(result.text()))


def _split_signature(own: list[str]) -> tuple[list[str], str]:
    """The agent's own lines and their signature: from the last `-- ` line (RFC 3676's
    separator, with its space: a bare `--` is text), and the phones' "Sent from my
    iPhone" lines at the very end."""
    lines = _rstrip_blank(list(own))
    tail: list[str] = []
    while lines and _SENT_FROM.match(lines[-1].strip()):
        tail.insert(0, lines.pop().strip())
        lines = _rstrip_blank(lines)
    for index in range(len(lines) - 1, -1, -1):
        if lines[index] == _SIG:
            return lines[:index], "\n".join([*lines[index + 1 :], *tail]).strip()
    return lines, "\n".join(tail)


def _rstrip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _tidy(lines: list[str]) -> str:
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in lines)).strip("\n")


def _unquote(line: str) -> str:
    return re.sub(r"^[ \t]*(?:>[ \t]?)+", "", line)


def _words(line: str) -> str:
    return " ".join(line.split()).lower()


def _problem(text: str) -> str:
    """Why a text found is not an answer to send: an attribution or header line alone."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if len(lines) == 1 and lines[0].endswith((":", "：")) and len(lines[0]) > 20:
        return f"only a line that introduces a quote ({lines[0][:80]!r})"
    if lines and all(_QUOTED.match(line) for line in lines):
        return "only quoted text"
    return ""


def leaks(text: str, forbidden: Collection[str], patterns: Collection[re.Pattern[str]]) -> str:
    """What of ours a text for a customer contains that must never reach one: our
    marker, a phrase of our notifications' frame, a reply token address, an agents'
    page link, an agent's address; "" when none."""
    for marker in MARKERS:
        if marker in text:
            return "the line that marks our notification"
    lowered = text.lower()
    for phrase in forbidden:
        if phrase and phrase.lower() in lowered:
            return f"{phrase!r}"
    for pattern in patterns:
        found = pattern.search(text)
        if found:
            return f"{found.group(0)!r}"
    return ""
