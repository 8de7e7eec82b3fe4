"""A plain-text rendering of HTML mail, for agents who read mail as text and for search.

Built on the stdlib HTMLParser: block elements become line breaks, links keep
their target, script/style/head vanish, entities are decoded.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = {
    "address",
    "article",
    "blockquote",
    "br",
    "dd",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tr",
    "ul",
}
_HIDDEN = {"script", "style", "head", "title", "template"}


# Sentinels the quoting renderer puts into the text and resolves line by line.
_ENTER, _LEAVE, _SIGNATURE = "\x01", "\x02", "\x03"
# Where mail clients put the writer's signature: it is marked as one (`-- `).
_SIGNATURE_CLASSES = {"moz-signature", "gmail_signature"}


class _Renderer(HTMLParser):
    def __init__(self, quotes: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0
        self.pre = 0
        self.href: list[str | None] = []
        self.quotes = quotes
        self.paragraphs: list[bool] = []  # open <p>s: does each end with an empty line

    def _newlines(self, count: int) -> None:
        """At least `count` line ends at the end of the output (quotes mode lays lines
        out as a mail reader shows them: a block ends its line, a paragraph adds an
        empty one, a <br> always breaks)."""
        tail = "".join(self.out[-8:])
        have = len(tail) - len(tail.rstrip("\n"))
        self.out.append("\n" * max(0, count - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.quotes and tag == "blockquote":
            self.out.append(f"\n{_ENTER}\n")
        if self.quotes and tag == "div":
            named = dict(attrs)
            classes = set((named.get("class") or "").split())
            if classes & _SIGNATURE_CLASSES or named.get("data-smartmail") == "gmail_signature":
                self.out.append(f"\n{_SIGNATURE}\n")
        if tag in _HIDDEN:
            self.hidden += 1
        elif self.quotes and tag == "br":
            self.out.append("\n")
        elif tag in _BLOCK:
            if self.quotes:
                self._newlines(1)
                if tag == "p":  # Word's MsoNormal paragraphs have no margin: lines
                    kinds = (dict(attrs).get("class") or "").split()
                    self.paragraphs.append("MsoNormal" not in kinds)
            else:
                self.out.append("\n")
            if tag == "li":
                self.out.append("* ")
            elif tag == "pre":
                self.pre += 1
        elif tag in ("td", "th"):
            self.out.append("\t")
        if tag == "a":
            self.href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if self.quotes and tag == "blockquote":
            self.out.append(f"\n{_LEAVE}\n")
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif self.quotes and tag == "br":
            pass
        elif tag in _BLOCK:
            if self.quotes:
                gap = tag == "p" and self.paragraphs and self.paragraphs.pop()
                self._newlines(2 if gap else 1)
            else:
                self.out.append("\n")
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
        if tag == "a" and self.href:
            href = self.href.pop()
            if href and href.startswith(("http:", "https:", "mailto:")):
                self.out.append(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if self.quotes and not self.pre and not data.strip(" \t\r\n"):
            tail = "".join(self.out[-2:])
            if not tail or tail.endswith("\n"):  # white space between tags, at a line start
                return
        if not self.hidden:
            self.out.append(data if self.pre else re.sub(r"\s+", " ", data))


def html_to_text(html: str, quotes: bool = False) -> str:
    """The text a reader sees.  quotes: blockquotes become `> ` lines (nested ones
    `> > `), and a signature block of Thunderbird or Gmail starts with `-- `, as the
    same mail would look in plain text (mail/replytext.py reads replies that way)."""
    renderer = _Renderer(quotes)
    renderer.feed(html)
    renderer.close()
    lines = [line.strip() for line in "".join(renderer.out).splitlines()]
    if quotes:
        lines = _quoted(lines)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _quoted(lines: list[str]) -> list[str]:
    out: list[str] = []
    depth = 0
    signature = False
    for line in lines:
        depth = max(0, depth + line.count(_ENTER) - line.count(_LEAVE))
        text = line.replace(_ENTER, "").replace(_LEAVE, "").strip()
        if _SIGNATURE in text:
            out.extend(["", "-- "])
            signature = True
            text = text.replace(_SIGNATURE, "").strip()
        if signature and text in ("--", "-- "):  # the signature's own separator
            signature = False
            continue
        if text:
            signature = False
        if not depth:
            if text or (_ENTER not in line and _LEAVE not in line):
                out.append(text)
            continue
        prefix = "> " * depth
        if text:
            out.append((prefix + text).rstrip())
        elif out and out[-1].startswith(">") and out[-1].strip(" >"):
            out.append(prefix.rstrip())  # one empty quoted line between paragraphs
    return out
