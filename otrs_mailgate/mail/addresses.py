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

from otrs_mailgate.config.schema import is_address

__all__ = ["base", "domain_of", "extension", "is_address", "normalize", "split"]


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
    local = _unquote(local if at else text).lower()
    domain = domain.strip().rstrip(".").lower()
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
