"""Envelope addresses the way Postfix resolves them, so every decision sees one form.

Postfix accepts `<"hotline+x"@example.com>`, `<hotline+x@example.com.>` and the
source route `<@relay.example:hotline+x@example.com>` and delivers each of them to
`hotline+x@example.com`; with its default allow_percent_hack and swap_bangpath
`hotline+x%example.com@localhost` and `example.com!hotline+x@localhost` too.  The
milter, LMTP and the pipeline all call `normalize` before they look an address up,
so no form can reach the daemon as one of our addresses while a check saw it as
somebody else's (issue 19).
"""

from __future__ import annotations

import re
import unicodedata

import idna

from otrs_mailgate.config.schema import is_address

__all__ = [
    "Unanswerable",
    "ascii_lower",
    "base",
    "canonical",
    "domain_of",
    "extension",
    "imitates",
    "is_address",
    "normalize",
    "skeleton",
    "split",
    "unquoted",
]

_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """A-Z to a-z and nothing else: str.lower() makes U+212A KELVIN SIGN a "k", so a
    stranger's `\u212aate@` would compare equal to agent kate (issue 25)."""
    return text.translate(_UPPER)


def _unquote(local: str) -> str:
    """`"a b\\"c"` -> `a b"c`; an unquoted local part is returned as it is."""
    if len(local) < 2 or not (local.startswith('"') and local.endswith('"')):
        return local
    out, escaped = [], False
    for ch in local[1:-1]:
        if escaped or ch != "\\":
            out.append(ch)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def split(address: str) -> tuple[str, str]:
    """(local part, domain) of an envelope address in any form Postfix accepts; the
    local part unquoted, both lower-cased, the domain without trailing dots."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if text.startswith("@"):  # a source route: @a,@b:user@domain (RFC 5321 4.1.2)
        text = text.partition(":")[2]
    local, at, domain = _rpartition_at(text)
    local = ascii_lower(_unquote(local if at else text))
    domain = ascii_lower(domain.strip().rstrip("."))
    if "!" in local:  # swap_bangpath: site!user -> user@site
        site, _, local = local.partition("!")
        domain = site.rstrip(".")
    if "%" in local:  # allow_percent_hack: user%domain -> user@domain
        local, _, domain = local.rpartition("%")
        domain = domain.rstrip(".")
    return local, domain


def _rpartition_at(text: str) -> tuple[str, str, str]:
    """Split at the last @ outside a quoted local part."""
    quoted, escaped, at = False, False, -1
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "@" and not quoted:
            at = i
    if at < 0:
        return text, "", ""
    return text[:at], "@", text[at + 1 :]


def normalize(address: str) -> str:
    """`local@domain` as Postfix delivers it ("" for the null sender `<>`)."""
    local, domain = split(address)
    return f"{local}@{domain}" if domain else local


def base(address: str) -> str:
    """The address without its +extension: `hotline+x@example.com` -> `hotline@example.com`."""
    local, domain = split(address)
    local = local.split("+", 1)[0]
    return f"{local}@{domain}" if domain else local


def extension(address: str) -> str:
    """The +extension of the local part, or ""."""
    return split(address)[0].partition("+")[2]


def domain_of(address: str) -> str:
    return split(address)[1]


class Unanswerable(ValueError):
    """An address a parser took that no mail of ours can be written to; says why."""


# RFC 5322 atext, plus any non-ASCII character (RFC 6532): a local part of dot-atoms
# is written as it is, any other is quoted.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_LITERAL = re.compile(r"\[[!-Z^-~]{1,250}\]")  # [192.0.2.1], [IPv6:...]
MAX_LENGTH = 320  # RFC 5321 allows 254; what our address columns hold


def canonical(address: str) -> str:
    """The one form of an address that we compare, store and write: the local part with
    A-Z lower-cased only (never another letter), quoted where it is no dot-atom; the
    domain without trailing dots, lower-cased, IDNA in A-label form (a non-ASCII label
    that maps to plain ASCII is an imitation and refused).  Unanswerable says why an
    address a lenient parser accepted can carry no mail of ours."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if text.startswith("@"):  # a source route: @a,@b:user@domain
        text = text.partition(":")[2]
    local, at, domain = _rpartition_at(text)
    if not at:
        raise Unanswerable(f"{address!r} has no domain")
    local = unicodedata.normalize("NFC", ascii_lower(_unquote(local)))
    if not local:
        raise Unanswerable(f"{address!r} has an empty local part")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in local):
        raise Unanswerable(f"{address!r}: control characters in the local part")
    domain = _domain(domain.strip().rstrip("."), address)
    spec = f"{quoted(local)}@{domain}"
    if len(spec) > MAX_LENGTH:
        raise Unanswerable(f"address of {len(spec)} characters (at most {MAX_LENGTH})")
    return spec


def quoted(local: str) -> str:
    """A local part as written in an addr-spec: as it is if a dot-atom, else quoted."""
    if _DOT_ATOM.fullmatch(local):
        return local
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquoted(spec: str) -> tuple[str, str]:
    """(local part without quotes, domain) of a canonical address."""
    local, _, domain = _rpartition_at(spec)
    return _unquote(local), domain


def _domain(domain: str, address: str) -> str:
    if not domain:
        raise Unanswerable(f"{address!r} has an empty domain")
    if domain.startswith("["):
        if not _LITERAL.fullmatch(domain):
            raise Unanswerable(f"{address!r}: a malformed domain literal")
        return ascii_lower(domain)
    labels = domain.split(".")
    out = []
    for label in labels:
        if label.isascii():
            label = ascii_lower(label)
        else:
            try:
                label = idna.encode(label, uts46=True).decode("ascii")
            except (idna.IDNAError, UnicodeError) as exc:
                raise Unanswerable(f"{address!r}: the domain is no valid IDNA ({exc})") from None
            if not label.startswith("xn--"):  # ｃｏｒｐ -> corp: a look-alike of an ASCII name
                raise Unanswerable(f"{address!r}: a domain label imitates {label!r}")
        if not _LABEL.fullmatch(label):
            raise Unanswerable(f"{address!r}: {label!r} is no domain label")
        out.append(label)
    return ".".join(out)


def skeleton(address: str) -> str:
    """What an address looks like to a reader: NFKC, case-folded, quotes and trailing dots
    gone.  Two addresses with one skeleton are the same to the eye."""
    local, _, domain = _rpartition_at(address.strip().strip("<>"))
    fold = unicodedata.normalize("NFKC", _unquote(local)).casefold()
    fold = unicodedata.normalize("NFKC", fold)
    dom = unicodedata.normalize("NFKC", domain.rstrip(".")).casefold()
    return f"{fold}@{dom}"


def imitates(address: str, genuine: str) -> bool:
    """The address is not `genuine` but reads as it: a non-ASCII look-alike (a Kelvin
    sign for a k, a fullwidth letter, a ligature) of an agent's address."""
    if address.isascii():
        return False
    return skeleton(address) == skeleton(genuine)
