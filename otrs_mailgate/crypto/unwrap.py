"""A mail as its reader sees it: decrypted where it was encrypted to a key we hold, its
signature checked, with what was done recorded in a Protection.

PGP/MIME (RFC 3156: multipart/encrypted, multipart/signed, both nested), inline PGP
(an armored message or a clearsigned text in the body) and S/MIME (RFC 8551:
application/pkcs7-mime enveloped or opaque signed, multipart/signed detached, nested)
are read. The mail's raw bytes stay as they came: the ParsedMail returned carries the
original raw and the decrypted content, so nothing decrypted ever reaches the raw store.
A mail that cannot be decrypted is returned readable as far as it goes (its parts as
attachments) with the reason; nothing here raises.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from otrs_mailgate.crypto import smime
from otrs_mailgate.crypto.keyring import Keyring
from otrs_mailgate.mail import wire
from otrs_mailgate.mail.parse import ParsedMail, Protection, parse, raw_children, raw_headers

log = logging.getLogger(__name__)
MAX_DEPTH = 4  # signed inside encrypted inside signed ...: no real mail nests deeper
_ARMOR = re.compile(r"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----", re.DOTALL)
_CLEARSIGNED = re.compile(
    r"-----BEGIN PGP SIGNED MESSAGE-----.*?-----END PGP SIGNATURE-----", re.DOTALL
)
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_HEADER_LINE = re.compile(rb"^[A-Za-z0-9-]+:")
_HEADER_PARSER = BytesHeaderParser(policy=compat32)
# Headers of the outer message that describe its body: the decrypted entity's own
# replace them.
_BODY_HEADERS = {
    b"content-type", b"content-transfer-encoding", b"content-disposition",
    b"content-description", b"content-id", b"mime-version",
}  # fmt: skip


def looks_protected(mail: ParsedMail) -> bool:
    """Cheap: is there anything for unwrap() to do (most mail: no)."""
    msg = mail.message
    if msg is None:
        return False
    ctype = msg.get_content_type()
    if ctype in ("multipart/encrypted", "multipart/signed") or "pkcs7-mime" in ctype:
        return True
    return "-----BEGIN PGP" in mail.body_text


def unwrap(mail: ParsedMail, keyring: Keyring | None) -> ParsedMail:
    """The mail decrypted and its signature checked; the same object when it is neither
    encrypted nor signed."""
    if mail.message is None:
        return mail
    try:
        found = _unwrap(mail, keyring, 0)
        # inside, each layer carried its own bytes; outside, the mail is what came
        return found if found is mail else dataclasses.replace(found, raw=mail.raw)
    except Exception as exc:  # a library surprise costs the crypto, never the mail
        log.warning("cannot unwrap <%s>: %r", mail.message_id, exc)
        return dataclasses.replace(
            mail, protection=Protection("unknown", problem=f"cannot be read: {exc}")
        )


def _unwrap(mail: ParsedMail, keyring: Keyring | None, depth: int) -> ParsedMail:
    msg = mail.message
    assert msg is not None
    ctype = msg.get_content_type()
    protocol = str(msg.get_param("protocol", "") or "").lower()
    if depth >= MAX_DEPTH:
        return mail
    if ctype == "multipart/encrypted" and protocol == "application/pgp-encrypted":
        return _pgp_encrypted(mail, keyring, depth)
    if ctype == "multipart/signed" and protocol.endswith("pgp-signature"):
        return _pgp_signed(mail, keyring, depth)
    if ctype in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        return _smime_opaque(mail, keyring, depth)
    if ctype == "multipart/signed" and protocol.endswith("pkcs7-signature"):
        return _smime_signed(mail, keyring, depth)
    if "-----BEGIN PGP" in mail.body_text:
        return _pgp_inline(mail, keyring)
    return mail


# -- OpenPGP ---------------------------------------------------------------------------


def _pgp_encrypted(mail: ParsedMail, keyring: Keyring | None, depth: int) -> ParsedMail:
    parts = mail.message.get_payload() if mail.message else None
    blob = _payload(parts[1]) if isinstance(parts, list) and len(parts) > 1 else b""
    if keyring is None:
        return _unreadable(mail, "pgp/mime", "no keys are set up ([crypto] key_dir)")
    if not blob:
        return _unreadable(mail, "pgp/mime", "no encrypted part")
    result = keyring.decrypt(blob)
    if not result.ok:
        return _unreadable(mail, "pgp/mime", _gpg_problem(result))
    inner = _rebuild(mail, result.data)
    inner = _unwrap(inner, keyring, depth + 1)  # signed, then encrypted (RFC 3156 6.1)
    signature = _pgp_signature(keyring, result, mail.from_addr) if _signed(result) else None
    if signature is not None:
        signature = dataclasses.replace(signature, covered=_covered(mail, result.data))
    prior = inner.protection
    protection = Protection("pgp/mime", encrypted=True, decrypted=True)
    if prior is not None and prior.signature:
        protection = _with_signature(protection, prior)
    elif signature is not None:
        protection = _with_signature(protection, signature)
    return dataclasses.replace(inner, protection=protection)


def _pgp_signed(mail: ParsedMail, keyring: Keyring | None, depth: int) -> ParsedMail:
    msg = mail.message
    assert msg is not None
    boundary = msg.get_boundary()
    children = raw_children(_entity(mail), boundary) if boundary else None
    parts = msg.get_payload()
    if not children or not isinstance(parts, list) or len(parts) < 2:
        return mail
    signed = children[0]  # raw_children leaves the CRLF before a boundary out (RFC 3156 5)
    signature = _payload(parts[1])
    content = _rebuild(mail, signed)
    content = _unwrap(content, keyring, depth + 1)
    if keyring is None:
        checked = Protection("pgp/mime", signature="key unknown", problem="no keys set up")
    else:
        checked = _pgp_signature(
            keyring, keyring.verify_detached(signed, signature), mail.from_addr
        )
        checked = dataclasses.replace(checked, covered=_covered(mail, signed))
    prior = content.protection
    protection = _with_signature(prior or Protection("pgp/mime"), checked)
    return dataclasses.replace(content, protection=protection)


def _pgp_inline(mail: ParsedMail, keyring: Keyring | None) -> ParsedMail:
    text = mail.body_text
    armored = _ARMOR.search(text)
    if armored is not None:
        if keyring is None:
            return dataclasses.replace(
                mail, protection=Protection("pgp/inline", encrypted=True, problem="no keys set up")
            )
        result = keyring.decrypt(armored.group(0).encode())
        if not result.ok:
            return dataclasses.replace(
                mail,
                protection=Protection("pgp/inline", encrypted=True, problem=_gpg_problem(result)),
            )
        plain = result.data.decode("utf-8", "replace")
        protection = Protection("pgp/inline", encrypted=True, decrypted=True)
        if _signed(result):
            protection = _with_signature(
                protection, _pgp_signature(keyring, result, mail.from_addr)
            )
        body = text[: armored.start()] + plain + text[armored.end() :]
        return dataclasses.replace(mail, body_text=body.strip(), protection=protection)
    signed = _CLEARSIGNED.search(text)
    if signed is not None and keyring is not None:
        block = signed.group(0)
        result = keyring.verify(block.replace("\r\n", "\n").encode())
        checked = _pgp_signature(keyring, result, mail.from_addr)
        body_start = block.find("\n\n")
        sig_start = block.find("-----BEGIN PGP SIGNATURE-----")
        plain = block[body_start + 2 : sig_start] if body_start >= 0 else block
        plain = "\n".join(ln[2:] if ln.startswith("- ") else ln for ln in plain.split("\n"))
        body = text[: signed.start()] + plain + text[signed.end() :]
        return dataclasses.replace(
            mail,
            body_text=body.strip(),
            protection=_with_signature(Protection("pgp/inline"), checked),
        )
    return mail


def _pgp_signature(keyring: Keyring, result: Any, sender: str) -> Protection:
    """GnuPG's verdict in our words."""
    status = str(getattr(result, "status", "") or "").lower()
    said = str(getattr(result, "stderr", "") or "")
    if "REVKEYSIG" in said or "KEYREVOKED" in said:
        status = "signing key was revoked"
    elif "EXPKEYSIG" in said or "KEYEXPIRED" in said:
        status = "signing key has expired"
    fingerprint = str(
        getattr(result, "pubkey_fingerprint", "") or getattr(result, "fingerprint", "") or ""
    )
    username = str(getattr(result, "username", "") or "")
    if getattr(result, "valid", False):
        word = "valid"
    elif "no public key" in status:
        word = "key unknown"
    elif "expired" in status and "key" in status:
        word = "key expired"
    elif "revoked" in status:
        word = "key revoked"
    elif "signature expired" in status:
        word = "key expired"
    else:
        word = "invalid"
    # GnuPG says "signature valid" for an expired or revoked key with a warning in
    # key_status: those are not valid to us
    key_status = str(getattr(result, "key_status", "") or "").lower()
    if word == "valid" and "revoked" in key_status:
        word = "key revoked"
    elif word == "valid" and "expired" in key_status:
        word = "key expired"
    signer_is_sender = True
    if fingerprint:
        info = keyring.key(fingerprint)
        if info is not None:
            username = username or (info.uids[0] if info.uids else "")
            signer_is_sender = sender.lower() in info.addresses() if sender else False
    return Protection(
        "pgp",
        signature=word,
        signer=username,
        fingerprint=fingerprint,
        signer_is_sender=signer_is_sender,
        problem="" if word == "valid" else status,
    )


def _signed(result: Any) -> bool:
    """A gpg decryption that also met a signature (one pass: sign and encrypt)."""
    said = str(getattr(result, "stderr", "") or "")
    return bool(
        getattr(result, "signature_id", None)
        or getattr(result, "fingerprint", None)
        or (getattr(result, "key_id", None) and "SIG" in said)
        or any(tag in said for tag in ("GOODSIG", "BADSIG", "ERRSIG", "EXPKEYSIG", "REVKEYSIG"))
    )


def _gpg_problem(result: Any) -> str:
    status = str(getattr(result, "status", "") or "")
    if "no secret key" in status.lower() or "decryption failed" in status.lower():
        err = str(getattr(result, "stderr", "") or "")
        if "NO_SECKEY" in err or "no secret key" in status.lower():
            return "encrypted to a key we do not hold"
        return "decryption failed (no key of ours, or the message is broken)"
    return status or "gpg could not decrypt it"


# -- S/MIME ------------------------------------------------------------------------------


def _smime_opaque(mail: ParsedMail, keyring: Keyring | None, depth: int) -> ParsedMail:
    msg = mail.message
    assert msg is not None
    kind = str(msg.get_param("smime-type", "") or "").lower()
    entity = _entity(mail)
    if kind in ("signed-data",):
        verdict = smime.verify(keyring, entity, mail.from_addr)
        if verdict.content is None:
            return dataclasses.replace(mail, protection=verdict.protection)
        content = _unwrap(_rebuild(mail, verdict.content), keyring, depth + 1)
        checked = dataclasses.replace(verdict.protection, covered=_covered(mail, verdict.content))
        base = content.protection or Protection("smime")
        return dataclasses.replace(content, protection=_with_signature(base, checked))
    if keyring is None:
        return _unreadable(mail, "smime", "no keys are set up ([crypto] key_dir)")
    plain, problem = smime.decrypt(keyring, entity)
    if plain is None:
        return _unreadable(mail, "smime", problem)
    inner = _unwrap(_rebuild(mail, plain), keyring, depth + 1)
    protection = Protection("smime", encrypted=True, decrypted=True)
    if inner.protection is not None and inner.protection.signature:
        protection = _with_signature(protection, inner.protection)
    return dataclasses.replace(inner, protection=protection)


def _smime_signed(mail: ParsedMail, keyring: Keyring | None, depth: int) -> ParsedMail:
    msg = mail.message
    assert msg is not None
    boundary = msg.get_boundary()
    children = raw_children(_entity(mail), boundary) if boundary else None
    if not children:
        return mail
    signed = children[0]
    verdict = smime.verify(keyring, _entity(mail), mail.from_addr)
    content = _unwrap(_rebuild(mail, signed), keyring, depth + 1)
    checked = dataclasses.replace(verdict.protection, covered=_covered(mail, signed))
    protection = _with_signature(content.protection or Protection("smime"), checked)
    return dataclasses.replace(content, protection=protection)


# -- helpers -------------------------------------------------------------------------------


def _with_signature(base: Protection, signed: Protection) -> Protection:
    return dataclasses.replace(
        base,
        signature=signed.signature,
        signer=signed.signer,
        fingerprint=signed.fingerprint,
        signer_is_sender=signed.signer_is_sender,
        problem=base.problem or ("" if signed.signature == "valid" else signed.problem),
        covered=signed.covered,
    )


PROTECTABLE = ("from", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references")


def _covered(mail: ParsedMail, signed: bytes) -> tuple[str, ...]:
    """The outer headers a signed entity carries a copy of, equal in value: what the
    signature vouches for besides the body (an agent's commands in the subject)."""
    found = _HEAD_END.search(signed)
    if found is None or mail.message is None:
        return ()
    inner = _HEADER_PARSER.parsebytes(signed[: found.start()] + b"\r\n\r\n")
    covered = []
    for name in PROTECTABLE:
        ours = [" ".join(str(v).split()) for v in inner.get_all(name) or []]
        outer = [" ".join(v.split()) for v in raw_headers(mail.message, name)]
        if ours and ours == outer:
            covered.append(name)
    return tuple(covered)


def _unreadable(mail: ParsedMail, kind: str, why: str) -> ParsedMail:
    """Kept as it came (its parts are the attachments), with why it is not readable."""
    return dataclasses.replace(mail, protection=Protection(kind, encrypted=True, problem=why))


def _payload(part: Any) -> bytes:
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    text = part.get_payload()
    return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else b""


def _entity(mail: ParsedMail) -> bytes:
    """The bytes of the mail's top entity (headers and body) as they came."""
    return mail.raw


def _rebuild(mail: ParsedMail, entity: bytes) -> ParsedMail:
    """The outer message's headers (From, To, Subject, ...) over the inner entity's own
    content headers and body, parsed (its raw: these bytes, for a layer inside; unwrap()
    gives the result the mail's own raw bytes back)."""
    entity = wire.canonical(entity)
    if not _HEADER_LINE.match(entity):  # a decrypted text without headers of its own
        entity = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + entity
    found = _HEAD_END.search(mail.raw)
    outer = mail.raw[: found.start()] if found else mail.raw
    kept = _lines(outer, lambda name: name not in _BODY_HEADERS)
    inner_end = _HEAD_END.search(entity)
    inner_head = entity[: inner_end.start()] if inner_end else entity
    body = entity[inner_end.start() :] if inner_end else b"\r\n\r\n"
    # of the entity's own headers only its content headers: copies of From, Subject and
    # the like inside (protected headers) are checked against the outer ones (_covered),
    # never put in their place
    kept += _lines(inner_head, lambda name: name.startswith(b"content-"))
    return parse(b"\r\n".join(kept) + body)


def _lines(head: bytes, wanted: Callable[[bytes], bool]) -> list[bytes]:
    """The header lines (with their continuations) whose lower-case name is wanted."""
    kept: list[bytes] = []
    keep = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if keep:
                kept.append(line)
            continue
        keep = bool(line) and wanted(line.split(b":", 1)[0].strip().lower())
        if keep:
            kept.append(line)
    return kept
