"""The search query language, parsed into a tree that search.py compiles per engine.

    printer toner                 both words (AND is implied)
    "paper jam"                   the phrase
    print*                        words starting with "print"
    toner OR ink, NOT laser       OR and NOT (upper case), -laser is NOT laser
    (toner OR ink) printer        parentheses
    queue:Hotline state:open owner:alice customer:bob@example.com customer:@example.com
    company:ACME
    created:2026-01-01..2026-01-31 closed:2026-03..  priority:1..2

Words are folded as the index is (case, accents, ß), so "Müller" finds "Muller"
and, through a variant, "Mueller".  Filters of one key are ORed, of different keys
ANDed; they stand outside parentheses.  Errors say the position (1-based).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field

FILTER_KEYS = (
    "queue", "state", "owner", "customer", "company", "created", "closed", "priority"
)  # fmt: skip
STATES = ("new", "open", "pending", "closed", "merged")
WORD = re.compile(r"[^\W_]+")
MAX_LENGTH = 1000
MAX_TERMS = 64


class QueryError(ValueError):
    """A query that cannot be searched; says where and why."""

    def __init__(self, position: int, problem: str) -> None:
        super().__init__(f"position {position}: {problem}")
        self.position = position
        self.problem = problem


def fold(text: str) -> str:
    """Lower case without accents; ß as ss: what the index holds and queries look for."""
    if text.isascii():
        return text.lower()  # most mail text: nothing to decompose
    text = text.casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """The searchable words of a text, folded."""
    return WORD.findall(fold(text))


_UMLAUT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "ae", "Ö": "oe", "Ü": "ue"})
_DIGRAPH = re.compile(r"(?<=[a-z])(ae|oe|ue)")


def variants(raw: str) -> list[tuple[str, ...]]:
    """The spellings of a query word or phrase to look for: as typed, and with German
    umlauts written out (ü ↔ ue), since mail writes them both ways."""
    found = [tuple(words(raw))]
    spelled = tuple(words(raw.translate(_UMLAUT)))
    if spelled not in found:
        found.append(spelled)
    plain = tuple(words(_DIGRAPH.sub(lambda m: m.group(1)[0], fold(raw))))
    if plain not in found and len(plain) == len(found[0]):
        found.append(plain)
    return found


# -- the tree -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One word, a phrase (several words in a row) or a prefix; in each spelling."""

    spellings: tuple[tuple[str, ...], ...]
    prefix: bool
    position: int


@dataclass(frozen=True)
class Not:
    node: Node
    position: int


@dataclass(frozen=True)
class And:
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    nodes: tuple[Node, ...]


Node = Term | Not | And | Or


@dataclass
class Filters:
    queue: list[str] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    owner: list[str] = field(default_factory=list)
    customer: list[str] = field(default_factory=list)
    company: list[str] = field(default_factory=list)
    created: list[tuple[dt.date | None, dt.date | None]] = field(default_factory=list)
    closed: list[tuple[dt.date | None, dt.date | None]] = field(default_factory=list)
    priority: list[tuple[int, int]] = field(default_factory=list)

    def any(self) -> bool:
        return any(getattr(self, key) for key in FILTER_KEYS)


@dataclass
class Query:
    text: Node | None
    filters: Filters


# -- lexing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # ( ) AND OR NOT - word phrase filter
    value: str
    position: int
    prefix: bool = False
    key: str = ""


_SPECIAL = set('()"')


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
            continue
        pos = i + 1
        if c in "()":
            tokens.append(_Token(c, c, pos))
            i += 1
        elif c == "-" and i + 1 < len(text) and not text[i + 1].isspace() and text[i + 1] != ")":
            tokens.append(_Token("NOT", "-", pos))
            i += 1
        elif c == '"':
            value, i = _quoted(text, i)
            prefix = i < len(text) and text[i] == "*"
            i += prefix
            tokens.append(_Token("phrase", value, pos, prefix=prefix))
        else:
            start = i
            while i < len(text) and not text[i].isspace() and text[i] not in _SPECIAL:
                i += 1
            value = text[start:i]
            key, colon, rest = value.partition(":")
            if colon and key.isalpha():
                tokens.append(_filter_token(text, key, rest, start, i, pos))
                if not rest and i < len(text) and text[i] == '"':
                    rest, i = _quoted(text, i)
                    tokens[-1] = _Token("filter", rest, pos, key=key.lower())
                continue
            if value in ("AND", "OR", "NOT"):
                tokens.append(_Token(value, value, pos))
            else:
                prefix = value.endswith("*")
                tokens.append(_Token("word", value.rstrip("*"), pos, prefix=prefix))
    return tokens


def _quoted(text: str, i: int) -> tuple[str, int]:
    """The text between the quote at i and the next one, and the index after it."""
    end = text.find('"', i + 1)
    if end < 0:
        raise QueryError(i + 1, 'the quote " is not closed')
    return text[i + 1 : end], end + 1


def _filter_token(text: str, key: str, rest: str, start: int, end: int, pos: int) -> _Token:
    if key.lower() not in FILTER_KEYS:
        raise QueryError(
            pos, f"unknown filter {key}: (known: {', '.join(k + ':' for k in FILTER_KEYS)})"
        )
    if not rest and not (end < len(text) and text[end] == '"'):
        raise QueryError(pos, f"{key}: needs a value, e.g. {_EXAMPLES[key.lower()]}")
    return _Token("filter", rest, pos, key=key.lower())


_EXAMPLES = {
    "queue": "queue:Hotline",
    "state": "state:open",
    "owner": "owner:alice",
    "customer": "customer:bob@example.com",
    "company": "company:ACME",
    "created": "created:2026-01-01..2026-01-31",
    "closed": "closed:2026-03..",
    "priority": "priority:1..2",
}


# -- parsing ------------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[_Token], end: int) -> None:
        self.tokens = tokens
        self.i = 0
        self.end = end
        self.depth = 0
        self.terms = 0
        self.filters = Filters()

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Node | None:
        node = self.or_expr(top=True)
        token = self.peek()
        if token is not None:  # only a stray ")" stops or_expr early
            raise QueryError(token.position, "')' without '('")
        return node

    def or_expr(self, top: bool = False) -> Node | None:
        node, items = self.and_expr(top)
        nodes = [node]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.take()
            nxt = self.peek()
            if not items or nxt is None or nxt.kind in (")", "OR", "AND"):
                raise QueryError(token.position, "OR needs something on both sides")
            node, items = self.and_expr(top)
            nodes.append(node)
            if any(n is None for n in nodes):
                raise QueryError(token.position, "filters cannot be ORed; give the key twice")
        if len(nodes) == 1:
            return nodes[0]
        return Or(tuple(n for n in nodes if n is not None))

    def and_expr(self, top: bool) -> tuple[Node | None, int]:
        """The items up to the next OR or ')': the node they make, and how many there were
        (filters count as items but make no node)."""
        nodes: list[Node] = []
        items = 0
        while (token := self.peek()) is not None and token.kind not in (")", "OR"):
            if token.kind == "AND":
                self.take()
                nxt = self.peek()
                if not items or nxt is None or nxt.kind in (")", "OR", "AND"):
                    raise QueryError(token.position, "AND needs something on both sides")
                continue
            node = self.unary(top)
            items += 1
            if node is not None:
                nodes.append(node)
        if not nodes:
            return None, items
        if all(isinstance(n, Not) for n in nodes):
            negation = nodes[0]
            assert isinstance(negation, Not)
            raise QueryError(
                negation.position,
                "NOT needs something to leave out from, e.g. printer NOT laser",
            )
        return (nodes[0] if len(nodes) == 1 else And(tuple(nodes))), items

    def unary(self, top: bool) -> Node | None:
        token = self.take()
        if token.kind == "NOT":
            nxt = self.peek()
            if nxt is None or nxt.kind in (")", "OR", "AND"):
                raise QueryError(token.position, f"{token.value} needs a word after it")
            if nxt.kind == "filter":
                raise QueryError(nxt.position, "filters cannot be negated")
            if nxt.kind == "NOT":
                raise QueryError(nxt.position, "NOT NOT: say what to leave out once")
            inner = self.unary(top=False)
            assert inner is not None
            return Not(inner, token.position)
        if token.kind == "(":
            self.depth += 1
            if self.depth > 32:
                raise QueryError(token.position, "parentheses nested deeper than 32")
            nxt = self.peek()
            if nxt is not None and nxt.kind == ")":
                raise QueryError(token.position, "empty parentheses")
            node = self.or_expr()
            close = self.peek()
            if close is None or close.kind != ")":
                raise QueryError(token.position, "'(' is not closed")
            self.take()
            self.depth -= 1
            if node is None:
                raise QueryError(token.position, "filters go outside parentheses")
            return node
        if token.kind == ")":
            raise QueryError(token.position, "')' without '('")
        if token.kind == "filter":
            if not top or self.depth:
                raise QueryError(token.position, "filters go outside parentheses")
            _add_filter(self.filters, token)
            return None
        return self.term(token)

    def term(self, token: _Token) -> Term:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise QueryError(token.position, f"more than {MAX_TERMS} words")
        spellings = variants(token.value)
        if not spellings[0]:
            what = "the phrase" if token.kind == "phrase" else "the word"
            raise QueryError(token.position, f"{what} {token.value!r} has nothing to search for")
        spellings = [s for s in spellings if s]
        return Term(tuple(spellings), token.prefix, token.position)


def _add_filter(filters: Filters, token: _Token) -> None:
    key, value, pos = token.key, token.value.strip(), token.position
    if not value:
        raise QueryError(pos, f"{key}: needs a value, e.g. {_EXAMPLES[key]}")
    if key == "state":
        if value.lower() not in STATES:
            raise QueryError(pos, f"state:{value}: not a state ({', '.join(STATES)})")
        filters.state.append(value.lower())
    elif key in ("created", "closed"):
        getattr(filters, key).append(_date_range(key, value, pos))
    elif key == "priority":
        low, sep, high = value.partition("..")
        try:
            first, last = int(low or 1), int(high or 5) if sep else int(low)
        except ValueError:
            raise QueryError(pos, f"priority:{value}: give 1 to 5, or a range like 1..2") from None
        if not (1 <= first <= last <= 5):
            raise QueryError(pos, f"priority:{value}: give 1 to 5, or a range like 1..2")
        filters.priority.append((first, last))
    else:
        getattr(filters, key).append(value.lower() if key != "queue" else value)


def _date_range(key: str, value: str, pos: int) -> tuple[dt.date | None, dt.date | None]:
    """FROM..TO, both ends inclusive and either open; a month or a year is all of it."""
    low, sep, high = value.partition("..")
    try:
        start = _day(low, first=True) if low else None
        end = _day(high if sep else low, first=False) if (high or not sep) else None
    except ValueError:
        raise QueryError(
            pos, f"{key}:{value}: dates are YYYY-MM-DD, YYYY-MM or YYYY, e.g. {_EXAMPLES[key]}"
        ) from None
    if start is None and end is None:
        raise QueryError(pos, f"{key}:{value}: give at least one end of the range")
    if start is not None and end is not None and start > end:
        raise QueryError(pos, f"{key}:{value}: the range ends before it starts")
    return start, end


def _day(text: str, first: bool) -> dt.date:
    if re.fullmatch(r"\d{4}", text):
        return dt.date(int(text), 1, 1) if first else dt.date(int(text), 12, 31)
    if re.fullmatch(r"\d{4}-\d{2}", text):
        year, month = int(text[:4]), int(text[5:])
        start = dt.date(year, month, 1)
        if first:
            return start
        if (year, month) == (dt.MAXYEAR, 12):
            return dt.date.max
        following = dt.date(year + month // 12, month % 12 + 1, 1)
        return following - dt.timedelta(days=1)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return dt.date.fromisoformat(text)
    raise ValueError(text)


def parse(text: str) -> Query:
    """A query in the language above, or QueryError saying where it goes wrong."""
    if len(text) > MAX_LENGTH:
        raise QueryError(MAX_LENGTH + 1, f"the query is longer than {MAX_LENGTH} characters")
    if "\x00" in text:
        raise QueryError(text.index("\x00") + 1, "a NUL character")
    tokens = _lex(text)
    if not tokens:
        raise QueryError(1, "the query is empty")
    parser = _Parser(tokens, len(text))
    node = parser.parse()
    if node is None and not parser.filters.any():
        raise QueryError(1, "the query is empty")
    return Query(node, parser.filters)
