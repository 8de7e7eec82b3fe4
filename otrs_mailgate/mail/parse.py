"""Raw bytes to a ParsedMail, never crashing.

Real mail is broken in every way: bogus charsets, raw 8-bit headers, encoded
words where they are not allowed, filenames with CR/LF.  Every accessor here
falls back to something a mail client would show instead of raising; when even
the MIME structure cannot be read, the mail is flagged unparsed and its raw
bytes are still stored by the caller.
"""

from __future__ import annotations

import binascii
import contextvars
import datetime as dt
import email.header
import email.utils
import functools
import hashlib
import itertools
import logging
import mimetypes
import re
import secrets
import weakref
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser

from otrs_mailgate.mail import addresses, charsets
from otrs_mailgate.mail.htmltext import html_to_text
from otrs_mailgate.mail.subject import clean

log = logging.getLogger(__name__)


class _CachedRegistry(HeaderRegistry):
    """policy.default's header registry, remembering parsed headers.

    Header objects are immutable, and real mail repeats the same Content-Type,
    Content-Transfer-Encoding and MIME-Version lines endlessly; parsing them is
    most of what the email package spends on a message.  Long values are not kept.
    The class for a header name is remembered too.
    """

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one module-level instance
    def _cached(self, name: str, value: str) -> BaseHeader:
        return super().__call__(name, value)

    def __call__(self, name: str, value: object) -> BaseHeader:
        if not isinstance(value, str) or len(value) > 512:
            return super().__call__(name, value)
        return self._cached(name, value)

    def __getitem__(self, name: str) -> type[BaseHeader]:
        # The stdlib builds a new class on every lookup, and a lookup comes with every
        # header parsed and every header set (policy.header_max_count).
        return self._class(name.lower())

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one module-level instance
    def _class(self, name: str) -> type[BaseHeader]:
        return super().__getitem__(name)


POLICY = policy.default.clone(header_factory=_CachedRegistry())
"""policy.default, with the header cache above; used for parsing and composing."""

_SURROGATE = re.compile("[\udc80-\udcff]")
_MSGID = re.compile(r"<([^<>\s]+)>")
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
MAX_HEADER_BLOCK = 1 << 20  # bytes before the first empty line
_BOUNDARY = re.compile(rb"boundary\s*=", re.IGNORECASE)
MAX_MULTIPARTS = 200
MAX_PARTS = 1000  # the default of lmtp.max_parts
# A line that starts a MIME part (or closes a container): `--` and a boundary.  "-- "
# (a signature separator) is none; a text line such as "--help" counts, which only
# makes the cap act a little early on such a mail.
_DELIMITER = re.compile(rb"^--[^\s]", re.MULTILINE)


class NotAMail(ValueError):
    """The input has no header section at all: nothing a mail client would open."""


@dataclass
class Attachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str = ""
    inline: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Protection:
    """What OpenPGP or S/MIME did to a mail (crypto/unwrap.py): encrypted (and whether it
    could be read), and its signature as checked. Stored with the article, shown with it."""

    kind: str  # pgp/mime | pgp/inline | smime
    encrypted: bool = False
    decrypted: bool = False
    signature: str = ""  # "" (unsigned) | valid | invalid | key unknown | key expired | key revoked
    signer: str = ""  # the signing key's or certificate's identity, as it names itself
    fingerprint: str = ""
    signer_is_sender: bool = True  # the signer's addresses include From's
    problem: str = ""  # why it could not be decrypted or checked
    # headers the signature covers: copies inside the signed part equal to the outer
    # ones ("protected headers", as Thunderbird writes them), lower-case names
    covered: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, text: str) -> Protection | None:
        """An article's protection column back ("" or unreadable: None)."""
        import json

        try:
            data = json.loads(text) if text else None
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        known = {f for f in cls.__dataclass_fields__}
        fields = {k: v for k, v in data.items() if k in known}
        fields["covered"] = tuple(fields.get("covered") or ())
        return cls(**fields)

    def to_json(self) -> str:
        import json

        return json.dumps(self.__dict__, sort_keys=True)

    def line(self) -> str:
        """One line for notifications, transcripts and the CLI."""
        words = []
        if self.encrypted:
            words.append(
                "encrypted" if self.decrypted else f"encrypted, NOT decrypted: {self.problem}"
            )
        if self.signature == "valid":
            who = self.signer or self.fingerprint
            words.append(f"signature valid by {who}")
            if not self.signer_is_sender:
                words.append("the signer is NOT the sender (From)")
        elif self.signature:
            words.append(
                f"signature {self.signature}" + (f" ({self.signer})" if self.signer else "")
            )
        return "; ".join(words) + f" ({self.kind})"


@dataclass
class ParsedMail:
    raw: bytes
    subject: str = ""
    from_name: str = ""
    from_addr: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    # Who else the mail names as its sender, (header, name, address) in the order a
    # customer is taken from them when From names nobody: Reply-To, then Sender.
    other_senders: list[tuple[str, str, str]] = field(default_factory=list)
    message_id: str = ""
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    date: str = ""
    content_language: str = ""
    body_text: str = ""
    body_html: str = ""
    body_from_html: bool = False  # no text/plain part: body_text is the HTML's rendering
    attachments: list[Attachment] = field(default_factory=list)
    unparsed: bool = False
    problem: str = ""  # why it is unparsed
    message: Message | None = None
    protection: Protection | None = None  # OpenPGP or S/MIME, once unwrapped

    @functools.cached_property
    def dedup_key(self) -> str:
        """The same message delivered again has the same key.

        Trace headers that a retry through another hop adds or changes (Received,
        Return-Path, Delivered-To, ...) are left out; everything else counts, so two
        different mails that merely share a Message-ID are not taken for one.
        """
        return significant_sha256(self.raw)

    def header(self, name: str) -> str:
        return header_str(self.message, name) if self.message is not None else ""


_TRACE = {
    b"received",
    b"return-path",
    b"delivered-to",
    b"x-original-to",
    b"envelope-to",
    b"authentication-results",
    b"arc-seal",
    b"arc-message-signature",
    b"arc-authentication-results",
    b"x-otrs-mailgate-ticket",
    b"x-spam-status",
    b"x-spam-score",
    b"x-spam-checker-version",
    b"x-virus-scanned",
}


def significant_sha256(raw: bytes, chunk: int = 1 << 20) -> str:
    """The SHA-256 of significant_bytes(raw), without making them: the header block is
    normalised alone and the body a chunk at a time, so a 25 MB mail costs no 25 MB
    copies (issue 28)."""
    size = 4096
    while True:  # a prefix that holds the header block (never cut inside a CRLF)
        end = min(size, len(raw))
        while 0 < end < len(raw) and raw[end - 1 : end] == b"\r":
            end += 1
        prefix = raw[:end].replace(b"\r\n", b"\n")
        if b"\n\n" in prefix or end >= len(raw):
            break
        size *= 4
    digest = hashlib.sha256(_significant(prefix))
    view, pos = memoryview(raw), end
    while pos < len(raw):
        stop = min(pos + chunk, len(raw))
        while stop < len(raw) and raw[stop - 1 : stop] == b"\r":
            stop += 1
        digest.update(bytes(view[pos:stop]).replace(b"\r\n", b"\n"))
        pos = stop
    return digest.hexdigest()


def significant_bytes(raw: bytes) -> bytes:
    """Header lines minus trace headers, then the body; line endings normalised."""
    return _significant(raw.replace(b"\r\n", b"\n"))


def _significant(data: bytes) -> bytes:
    head, _, body = data.partition(b"\n\n")
    lines = head.split(b"\n")
    if lines and lines[0].startswith(b"From "):
        lines = lines[1:]
    kept: list[bytes] = []
    keep = True
    for line in lines:
        if line[:1] in (b" ", b"\t"):  # continuation of the previous header
            if keep:
                kept.append(line)
            continue
        keep = line.split(b":", 1)[0].strip().lower() not in _TRACE
        if keep:
            kept.append(line)
    return b"\n".join(kept) + b"\n\n" + body


def written_at(mail: ParsedMail) -> tuple[dt.datetime | None, str]:
    """When a mail was written, as far as it says: its Date, else the newest Received
    line's date (an archive's mail, imported long after); (None, "") when neither reads."""
    candidates = [("Date", mail.date)]
    if mail.message is not None:
        received = raw_headers(mail.message, "Received")
        if received:
            candidates.append(("Received", received[0].rsplit(";", 1)[-1]))
    for source, text in candidates:
        try:
            when = email.utils.parsedate_to_datetime(text.strip())
        except (TypeError, ValueError, IndexError):
            continue
        if when is None:
            continue
        return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC), source
    return None, ""


_SPACED_NAME = re.compile(rb"^([!-9;-~]+)[ \t]+:")  # "Subject : x", RFC 5322's obsolete form


def mend_headers(raw: bytes) -> bytes:
    """The bytes the parser reads: a header block where one malformed line (no colon, or a
    continuation without leading white space) would end the headers (the stdlib takes it
    for the start of the body, and every header after it is lost) has that line folded
    into the subject it continues, or set apart as an X-Unreadable-Header-Line where it
    would garble an address; "Name :" becomes "Name:". The raw bytes stored are the
    ones that came; this is only what is parsed."""
    found = _BLANK_LINE.search(raw)
    end = found.start() if found else len(raw)
    lines = raw[:end].split(b"\n")
    mended: list[bytes] = []
    changed = False
    current = b""  # the header the lines belong to
    for line in lines:
        if not mended or _HEADER_LINE.match(line) or line[:1] in (b" ", b"\t"):
            mended.append(line)  # the first line (looks_like_mail checked it), a header
            if line[:1] not in (b" ", b"\t"):
                current = line.split(b":", 1)[0].lower()
            continue
        changed = True
        spaced = _SPACED_NAME.match(line)
        if spaced:
            mended.append(_SPACED_NAME.sub(rb"\1:", line, count=1))
            current = spaced.group(1).lower()
        elif current == b"subject":  # a subject folded without its space: still the subject
            mended.append(b" " + line)
        else:  # anything else stays out of the addresses and ids it would garble
            mended.append(b"X-Unreadable-Header-Line: " + line)
    return b"\n".join(mended) + raw[end:] if changed else raw


def looks_like_mail(raw: bytes) -> bool:
    """At least one header line before the first empty line (an mbox From_ line is allowed)."""
    lines = raw.lstrip(b"\r\n")[:4096].splitlines()  # the start says it; never split 50 MB
    if lines and lines[0].startswith(b"From "):
        lines = lines[1:]
    return bool(lines) and bool(_HEADER_LINE.match(lines[0]))


def fix_surrogates(text: str, hint: str | None = None) -> str:
    """Raw 8-bit header bytes arrive as surrogate escapes: UTF-8 if they are, else what
    the detector makes of them (charsets.guess, with the mail's hint), never cp1252 by
    force."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return charsets.guess(text.encode("utf-8", "surrogateescape"), hint=hint)


def decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words, also where a strict parser leaves them alone."""
    if "=?" not in text:
        return text
    try:
        out = []
        for chunk, charset in email.header.decode_header(text):
            if isinstance(chunk, str):
                out.append(chunk)
            elif charset is None:  # text between encoded words, escaped by decode_header
                out.append(chunk.decode("raw-unicode-escape"))
            else:
                out.append(_decode_bytes(chunk, charset))
        return "".join(out)
    except Exception:
        return text


def _decode_bytes(data: bytes, charset: str | None) -> str:
    return charsets.decode(data, charset)


def raw_headers(msg: Message, name: str) -> list[str]:
    """A header's values as received (unfolded, 8-bit decoded), bypassing the header registry."""
    index = _INDEXES.get(msg)
    if index is None:  # one pass over the headers per message, not one per lookup
        index = {}
        hint = _HINTS.get(msg)
        for key, value in msg.raw_items():
            text = fix_surrogates(str(value), hint).replace("\r\n", "").replace("\n", "")
            index.setdefault(key.lower(), []).append(text)
        _INDEXES[msg] = index
    return index.get(name.lower(), [])


_INDEXES: weakref.WeakKeyDictionary[Message, dict[str, list[str]]] = weakref.WeakKeyDictionary()
# Each part of a mail with unlabelled 8-bit text -> the codec all of them read as together.
_HINTS: weakref.WeakKeyDictionary[Message, str] = weakref.WeakKeyDictionary()


def _remember_hint(msg: Message) -> None:
    """What the mail's unlabelled 8-bit texts (raw header bytes, text parts without a
    usable charset) are detected as together, kept for each of its parts: a text too
    short to detect alone is read the same way as the rest (charsets.Sample)."""
    sample = charsets.Sample()
    parts = list(msg.walk())
    for part in parts:
        for _key, value in part.raw_items():
            text = str(value)
            if not text.isascii() and _SURROGATE.search(text):
                sample.feed(text.encode("utf-8", "surrogateescape"))
        text_part = part.get_content_maintype() == "text" and not part.is_multipart()
        if text_part and charsets.codec(part.get_content_charset()) is None:
            sample.feed(payload_bytes(part))
    hint = sample.guess()
    if hint is not None:
        for part in parts:
            _HINTS[part] = hint


def header_str(msg: Message, name: str) -> str:
    """A header's decoded value as a mail client shows it, or "" when absent."""
    values = raw_headers(msg, name)
    return decode_words(values[0]) if values else ""


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    """Split on the encoded form (a decoded name may contain commas), then decode names."""
    pairs = email.utils.getaddresses(raw_headers(msg, name))
    return [(clean(decode_words(n)), spec(a)) for n, a in pairs if "@" in a]


def spec(address: str) -> str:
    """An address as it is stored and compared: canonical where it can be (trailing dot
    gone, IDNA A-labels, quoting as needed), else as it came with A-Z lower-cased, to be
    filed and never answered (addresses.Unanswerable says why, where it is answered)."""
    address = address.replace("\x00", "")  # dropped from every text anyway (_drop_nul)
    try:
        return addresses.canonical(address)
    except addresses.Unanswerable:
        return addresses.ascii_lower(address.strip())


_COMMENTED = re.compile(r"\(\s*<?([^\s()<>@,;:\"]+@[^\s()<>@,;:\"]+?)>?\s*\)")


def _commented(msg: Message, name: str) -> list[str]:
    """Addresses that appear only inside a comment, `To: (hotline@example.com)`: kept
    when the header holds nothing else (a strict parser reads no address there)."""
    return [spec(a) for value in raw_headers(msg, name) for a in _COMMENTED.findall(value)]


def _msgids(text: str) -> list[str]:
    return _MSGID.findall(text)


def _part_text(part: Message) -> str:
    text = _decode_part(part).replace("\r\n", "\n").replace("\r", "\n")
    if str(part.get_param("format") or "").lower() == "flowed":
        delsp = str(part.get_param("delsp") or "").lower() == "yes"
        text = unflow(text, delsp)
    return text


def unflow(text: str, delsp: bool = False) -> str:
    """format=flowed text (RFC 3676) as its writer wrote it: a line ending in a space
    goes on in the next line of the same quote depth (with DelSp=yes the space was only
    there for that), space-stuffing undone; the `-- ` signature line stays."""
    out: list[tuple[int, str]] = []
    joining = False
    for raw in text.split("\n"):
        depth = len(raw) - len(raw.lstrip(">"))
        body = raw[depth:]
        if body.startswith(" "):  # stuffed (or the space after the quote marks)
            body = body[1:]
        flowed = body.endswith(" ") and body != "-- "
        if flowed and delsp:
            body = body[:-1]
        if joining and out and out[-1][0] == depth:
            out[-1] = (depth, out[-1][1] + body)
        else:
            out.append((depth, body))
        joining = flowed
    return "\n".join(("> " * depth if depth else "") + body for depth, body in out)


def _decode_part(part: Message) -> str:
    """A text part's text from its bytes and its label, read as charsets.decode reads
    them (get_content would put U+FFFD wherever the bytes outgrow the label)."""
    return charsets.decode(payload_bytes(part), part.get_content_charset(), hint=_HINTS.get(part))


def _filename(part: Message) -> str:
    name = _param(part, "content-disposition", "filename") or _param(part, "content-type", "name")
    if isinstance(name, tuple):
        charset, _language, text = name
        data = str(text).encode("raw-unicode-escape")  # how the stdlib unquotes them
        name = charsets.decode(data, charset, hint=_HINTS.get(part))
    if not name:
        return ""
    text = clean(decode_words(fix_surrogates(email.utils.unquote(str(name)), _HINTS.get(part))))
    return _short_name(text)


MAX_FILENAME = 200  # characters of an attachment's name (the raw mail keeps it whole)


def _short_name(name: str) -> str:
    """A file name cut to MAX_FILENAME characters, its extension kept."""
    if len(name) <= MAX_FILENAME:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        return name[:MAX_FILENAME]
    return stem[: MAX_FILENAME - len(ext) - 1] + "." + ext


def _param(part: Message, header: str, name: str) -> object:
    """A header parameter from the header as received: the parsed header objects of
    policy.default have put U+FFFD for raw 8-bit bytes already. RFC 2231 values come
    back as (charset, language, text) for _filename to decode."""
    values = raw_headers(part, header)
    if not values:
        return None
    bare = Message()  # compat32: keeps the value as it is
    bare[header] = values[0]
    try:
        return bare.get_param(name, header=header)
    except Exception:
        return None


_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_UUENCODED = ("x-uuencode", "uuencode", "x-uue", "uue")
_RFC822 = re.compile(rb"message/rfc822", re.IGNORECASE)


def payload_bytes(part: Message) -> bytes:
    """A leaf part's decoded bytes. Base64 is decoded as mail readers do it: characters
    outside the alphabet skipped, a broken length or padding mended (the stdlib hands
    back the undecoded text then)."""
    cte = part.get("Content-Transfer-Encoding", "").strip().lower()
    if cte in _UUENCODED:
        text = part.get_payload(decode=False)
        return _uu_lines(text if isinstance(text, str) else "")
    if cte == "base64":
        text = part.get_payload(decode=False)
        aside = _ASIDE.get().get(text.strip()) if isinstance(text, str) and len(text) < 80 else None
        if aside is not None:  # a big body set aside before parsing: from the raw bytes
            return _base64(aside)
        return _base64(text.encode("ascii", "ignore") if isinstance(text, str) else b"")
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else b""


def _base64(encoded: bytes | memoryview) -> bytes:
    try:
        return binascii.a2b_base64(encoded)  # what the stdlib does, when it works
    except binascii.Error:
        data = _B64_JUNK.sub(b"", bytes(encoded).split(b"=", 1)[0])
        data = data[: len(data) - len(data) % 4] if len(data) % 4 == 1 else data
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


# -- big bodies past the stdlib parser ---------------------------------------------------
#
# The stdlib parser holds a part's body as text three times over while it reads it
# (the message decoded to str, its lines, the joined payload): about eight times a big
# attachment's size at the peak (issue 28). A big base64 leaf (not text, not a message)
# is therefore set aside before parsing: the parser sees a token line in its place,
# and payload_bytes() decodes the body straight from the raw bytes. The token carries a
# nonce of this parse, so no sender can write one that names another part's bytes.

ASIDE_MAIL = 1 << 20  # only mails this big are looked at
ASIDE_PART = 64 << 10  # bodies from this size are set aside
_ASIDE: contextvars.ContextVar[dict[str, memoryview]] = contextvars.ContextVar(
    "parse_aside",
    default={},  # noqa: B039 - never written to, only replaced
)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_HEADER_PARSER = BytesHeaderParser(policy=policy.compat32)


def _set_aside(raw: bytes) -> tuple[bytes, dict[str, memoryview]]:
    """The mail with each big base64 leaf body replaced by a token, and the bodies by
    token (views of raw, no copies); (raw, {}) when there is none or the structure is
    not plain enough to be sure where a body ends."""
    if len(raw) < ASIDE_MAIL:
        return raw, {}
    spans: list[tuple[int, int]] = []
    try:
        _big_bodies(raw, 0, len(raw), spans, 0)
    except Exception:  # a structure we do not follow: the stdlib parser reads it all
        return raw, {}
    if not spans:
        return raw, {}
    nonce = secrets.token_hex(8).upper()
    view = memoryview(raw)
    pieces, found, pos = [], {}, 0
    for n, (start, end) in enumerate(spans):
        token = f"OTRSASIDE{nonce}N{n}"
        pieces += [raw[pos:start], token.encode()]
        found[token] = view[start:end]
        pos = end
    pieces.append(raw[pos:])
    return b"".join(pieces), found


def _big_bodies(raw: bytes, start: int, end: int, spans: list[tuple[int, int]], depth: int) -> None:
    """Collect (start, end) of the big base64 leaf bodies of the entity raw[start:end]."""
    head_end = _HEADER_END.search(raw, start, min(end, start + MAX_HEADER_BLOCK))
    if head_end is None or depth > 20:
        return
    head = _HEADER_PARSER.parsebytes(raw[start : head_end.start()] + b"\r\n\r\n")
    body, maintype = head_end.end(), head.get_content_maintype()
    if maintype == "multipart":
        boundary = head.get_param("boundary")
        if not isinstance(boundary, str) or not boundary:
            return
        delimiter = re.compile(
            rb"(?:\r?\n|^)--" + re.escape(boundary.encode("latin-1")) + rb"(--)?[ \t]*(?:\r?\n|$)",
            re.MULTILINE,
        )
        lines = list(delimiter.finditer(raw, max(body - 2, start), end))
        lines = [m for m in lines if m.start() >= body - 2]
        for this, after in itertools.pairwise(lines):
            if this.group(1):  # the close delimiter: what follows is the epilogue
                break
            _big_bodies(raw, this.end(), after.start(), spans, depth + 1)
        return
    cte = str(head.get("Content-Transfer-Encoding", "")).strip().lower()
    if maintype in ("text", "message") or cte != "base64" or end - body < ASIDE_PART:
        return
    spans.append((body, end))


def _attachment_bytes(part: Message, raw: bytes | None) -> bytes:
    """An attachment's bytes; an attached message's are the bytes that came (raw, when
    the part's own bytes could be found), not a re-serialised copy with refolded headers."""
    if part.get_content_maintype() == "message" or part.is_multipart():
        if raw is not None and part.get("Content-Transfer-Encoding", "").strip().lower() in (
            "",
            "7bit",
            "8bit",
            "binary",
        ):
            return _split_head(raw)[1]
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else payload
        if isinstance(inner, Message):
            return inner.as_bytes(policy=policy.compat32)
        return b""
    return payload_bytes(part)


def _split_head(raw: bytes) -> tuple[bytes, bytes]:
    """(header block, body) of a part's bytes."""
    found = _BLANK_LINE.search(raw)
    if found is None:
        return raw, b""
    return raw[: found.start()], raw[found.end() :]


def raw_children(raw: bytes, boundary: str) -> list[bytes] | None:
    """The bytes of each child of a multipart part, found by its boundary lines; None
    when they do not line up (the parser's view is used then)."""
    _head, body = _split_head(raw)
    marker = re.escape(b"--" + boundary.encode("ascii", "surrogateescape"))
    pieces = re.split(rb"(?:^|\r?\n)" + marker + rb"(?:--)?[ \t]*(?=\r?\n|$)", body)
    if len(pieces) < 2:
        return None
    children = []
    for piece in pieces[1:]:
        children.append(
            piece[2:]
            if piece.startswith(b"\r\n")
            else piece[1:]
            if piece.startswith(b"\n")
            else piece
        )
    return children


def _walk(
    msg: Message, out: ParsedMail, plain: list[str], html: list[str], raw: bytes | None = None
) -> None:
    """Depth-first over the leaf parts, not descending into attached messages; raw is the
    part's own bytes where the boundaries let them be found."""
    if msg.is_multipart() and msg.get_content_maintype() == "multipart":
        subs = [sub for sub in msg.get_payload() if isinstance(sub, Message)]
        boundary = msg.get_boundary()
        children = raw_children(raw, boundary) if raw is not None and boundary else None
        if children is not None:
            children = children[: len(subs)] if len(children) >= len(subs) else None
        for index, sub in enumerate(subs):
            _walk(sub, out, plain, html, children[index] if children else None)
        return
    ctype = msg.get_content_type()
    if msg.get_content_maintype() == "multipart":  # no boundary: the text is the body
        ctype = "text/plain"
    filename = _filename(msg)
    disposition = (msg.get_content_disposition() or "").lower()
    if ctype in ("text/plain", "text/html") and not filename and disposition != "attachment":
        text = _part_text(msg)
        if ctype == "text/plain" and "begin " in text:
            text, files = _uudecode(text)
            for name, data in files:
                kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
                out.attachments.append(Attachment(clean(name), kind, data))
        (plain if ctype == "text/plain" else html).append(text)
        return
    if ctype == "message/rfc822" and not filename:
        inner = msg.get_payload()
        inner_msg = inner[0] if isinstance(inner, list) and inner else None
        subj = header_str(inner_msg, "Subject") if isinstance(inner_msg, Message) else ""
        filename = clean(subj or "message")[:120] + ".eml"
    if not filename:
        ext = (
            ".txt"
            if ctype.startswith("text/") or ctype == "message/delivery-status"
            else (mimetypes.guess_extension(ctype) or ".bin")
        )
        filename = f"part-{len(out.attachments) + 1}{ext}"
    cid = header_str(msg, "Content-ID").strip("<> ")
    out.attachments.append(
        Attachment(filename, ctype, _attachment_bytes(msg, raw), cid, disposition == "inline")
    )


_UU_BLOCK = re.compile(r"^begin [0-7]{3,4} ([^\n]*?)[ \t]*\n(.*?)^end[ \t]*$\n?", re.M | re.S)


def _uudecode(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """Inline uuencoded files (`begin 644 name` ... `end`) out of a text: the text without
    them, and each (name, bytes). A damaged line costs that line, not the file."""
    files: list[tuple[str, bytes]] = []

    def take(found: re.Match[str]) -> str:
        files.append((found.group(1).strip() or "uuencoded.bin", _uu_lines(found.group(2))))
        return ""

    return _UU_BLOCK.sub(take, text), files


def _uu_lines(text: str) -> bytes:
    """The bytes of uuencoded lines: a `begin` line (if any) skipped, up to `end`.  A
    Content-Transfer-Encoding of x-uuencode need not have the begin line."""
    data = bytearray()
    for line in text.splitlines():
        word = line.strip()
        if not word or word == "`" or word.startswith("begin "):
            continue
        if word == "end":
            break
        chunk = line.encode("latin-1", "replace")
        try:
            data += binascii.a2b_uu(chunk)
        except binascii.Error:  # trailing junk: the length byte says what counts
            size = (chunk[0] - 32) & 63
            try:
                data += binascii.a2b_uu(chunk[: 1 + (size + 2) // 3 * 4])
            except binascii.Error:
                continue
    return bytes(data)


def _cut_parts(raw: bytes, max_parts: int) -> tuple[bytes, int]:
    """The bytes up to the part after the first max_parts, and how many delimiter lines
    the whole has; the bytes themselves when there are no more than that."""
    found = 0
    for match in _DELIMITER.finditer(raw):
        found += 1
        if found == max_parts + 2:  # the first part is the text, then max_parts more
            cut = match.start()
            return raw[:cut], found + len(_DELIMITER.findall(raw, cut + 1))
    return raw, found


def parse(raw: bytes, max_parts: int = MAX_PARTS) -> ParsedMail:
    """Parse raw bytes; raises NotAMail only for input without any header.  Of a mail
    with more than max_parts MIME parts only those are read (text and attachments);
    the rest is in the raw bytes, which are always kept whole."""
    if not looks_like_mail(raw):
        raise NotAMail("no mail header found")
    out = ParsedMail(raw=raw)
    if len(raw) > MAX_HEADER_BLOCK and not _BLANK_LINE.search(raw, 0, MAX_HEADER_BLOCK + 4):
        # The stdlib parser needs ten times a header's size in memory; no mail has such
        # a header but a hostile one.  Kept raw and flagged, as unparsable mail is.
        out.unparsed = True
        out.problem = f"header block over {MAX_HEADER_BLOCK} bytes: stored raw, not parsed"
        return out
    containers = len(_BOUNDARY.findall(raw, 0, 64 * 1024 * 1024))
    if containers > MAX_MULTIPARTS:
        # The stdlib parser recurses per nested part; thousands of them end in a
        # RecursionError after a long while.  No real mail nests this much.
        out.unparsed = True
        out.problem = f"{containers} multipart containers (at most {MAX_MULTIPARTS}): stored raw"
        return out
    readable, parts = _cut_parts(raw, max_parts)
    if readable is not raw:
        out.problem = (
            f"{parts} MIME parts (at most {max_parts} are read): the rest is in the raw "
            "message only"
        )
    small, aside = _set_aside(readable)
    try:
        msg = BytesParser(policy=POLICY).parsebytes(mend_headers(small))
    except Exception as exc:
        out.unparsed, out.problem = True, f"MIME parser failed: {exc!r}"
        return out
    reset = _ASIDE.set(aside)
    try:
        _read(msg, out, readable)
    finally:
        _ASIDE.reset(reset)
    _drop_nul(out)
    return out


def _read(msg: Message, out: ParsedMail, readable: bytes) -> None:
    """What of the parsed message a ParsedMail holds."""
    out.message = msg
    if not readable.isascii():
        _remember_hint(msg)
    out.subject = clean(header_str(msg, "Subject"))
    froms = _addresses(msg, "From")
    if froms:
        out.from_name, out.from_addr = froms[0]
    out.to = [a for _, a in _addresses(msg, "To")] or _commented(msg, "To")
    out.cc = [a for _, a in _addresses(msg, "Cc")] or _commented(msg, "Cc")
    replies = _addresses(msg, "Reply-To")
    out.reply_to = [a for _, a in replies]
    out.other_senders = [("Reply-To", n, a) for n, a in replies[:1]]
    out.other_senders += [("Sender", n, a) for n, a in _addresses(msg, "Sender")[:1]]
    ids = _msgids(header_str(msg, "Message-ID"))
    out.message_id = ids[0] if ids else ""
    out.in_reply_to = _msgids(header_str(msg, "In-Reply-To"))
    out.references = _msgids(header_str(msg, "References"))
    out.date = clean(header_str(msg, "Date"))
    lang = clean(header_str(msg, "Content-Language")).split(",")[0].strip().lower()
    out.content_language = lang[:2] if re.match(r"^[a-z]{2}\b", lang) else ""
    plain: list[str] = []
    html: list[str] = []
    try:
        # The parts' own bytes are looked for only where an attached message needs them.
        _walk(msg, out, plain, html, readable if _RFC822.search(readable) else None)
    except Exception as exc:
        log.warning("MIME structure unreadable: %r", exc)
        out.unparsed, out.problem = True, f"MIME structure unreadable: {exc!r}"
    out.body_html = "\n".join(h for h in html if h)
    out.body_text = "\n".join(p.rstrip("\n") for p in plain if p.strip()).strip("\n")
    if not out.body_text and out.body_html:
        out.body_text = html_to_text(out.body_html)
        out.body_from_html = True


_TEXT_FIELDS = ("subject", "from_name", "from_addr", "message_id", "date", "body_text", "body_html")
_LIST_FIELDS = ("to", "cc", "reply_to", "in_reply_to", "references")


def _drop_nul(out: ParsedMail) -> None:
    """NUL characters out of every text: PostgreSQL's text columns refuse them, and a mail
    refused by the database forever would be a 451 until Postfix gives up on it.  The
    raw bytes keep them."""
    for name in _TEXT_FIELDS:
        value = getattr(out, name)
        if "\x00" in value:
            setattr(out, name, value.replace("\x00", ""))
    for name in _LIST_FIELDS:
        setattr(out, name, [v.replace("\x00", "") for v in getattr(out, name)])
    for part in out.attachments:
        part.filename = part.filename.replace("\x00", "")
        part.content_type = part.content_type.replace("\x00", "")
        part.content_id = part.content_id.replace("\x00", "")
