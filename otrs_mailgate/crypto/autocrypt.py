"""Customers' OpenPGP keys learned the way mail clients learn them: the Autocrypt header
(Autocrypt Level 1: `addr=...; keydata=...`) and keys attached to their mail
(application/pgp-keys), kept for the sender so the next answer can go encrypted
without an admin. A key is taken only for the address it is sent from: its user IDs
must name the From address (and the header's addr= must be it), so nobody can plant a
key for somebody else's address; a key an admin imported for that address is kept."""

from __future__ import annotations

import base64
import binascii
import logging

from otrs_mailgate.crypto.keyring import Keyring
from otrs_mailgate.mail.parse import ParsedMail

log = logging.getLogger(__name__)
MAX_KEY = 64 * 1024  # bytes of key data (Autocrypt asks for small keys)


def offers(mail: ParsedMail) -> bool:
    """Cheap: does the mail carry a key at all."""
    if mail.message is None:
        return False
    return "Autocrypt" in mail.message or any(
        a.content_type == "application/pgp-keys" for a in mail.attachments
    )


def learn(mail: ParsedMail, keyring: Keyring | None) -> list[str]:
    """Import the sender's keys this mail carries; their fingerprints."""
    sender = (mail.from_addr or "").lower()
    if keyring is None or not sender or mail.message is None:
        return []
    offered = []
    for value in mail.message.get_all("Autocrypt") or []:
        attrs = _attributes(str(value))
        if attrs.get("addr", "").lower() != sender or "keydata" not in attrs:
            continue
        try:
            offered.append(base64.b64decode("".join(attrs["keydata"].split()), validate=False))
        except (binascii.Error, ValueError):
            continue
    offered += [a.data for a in mail.attachments if a.content_type == "application/pgp-keys"]
    learned: list[str] = []
    for data in offered[:4]:
        if not data or len(data) > MAX_KEY:
            continue
        try:
            learned += _take(keyring, data, sender)
        except Exception as exc:  # a key gpg cannot read costs the key, not the mail
            log.info("key from %s not taken: %r", sender, exc)
    return learned


def _take(keyring: Keyring, data: bytes, sender: str) -> list[str]:
    scanned = keyring.gpg.scan_keys_mem(data)
    if len(scanned) != 1:  # one key for one sender, nothing bundled with it
        return []
    uids = " ".join(scanned[0].get("uids") or []).lower()
    if f"<{sender}>" not in uids and sender not in uids.split():
        return []
    known = keyring.for_address(sender)
    if known is not None and known.fingerprint != scanned[0]["fingerprint"]:
        return []  # the key we hold for this address stays (an admin's, or the first)
    return keyring.import_keys(data)


def _attributes(value: str) -> dict[str, str]:
    out = {}
    for part in value.split(";"):
        name, _, text = part.strip().partition("=")
        if name:
            out[name.strip().lower()] = text.strip()
    return out
