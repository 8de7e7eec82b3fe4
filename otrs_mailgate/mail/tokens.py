"""Reply-address tokens: `<local>+<token>@<domain>` names an agent, a ticket and a purpose.

The token is base32 (lower case, so MTAs that fold case cannot break it) of
agent id, ticket id, expiry day and purpose, followed by an HMAC-SHA256 over
those fields truncated to 128 bits, keyed by the agent's own secret.  Rotating
the secret (or disabling the agent) voids every token the agent holds.  44
characters: `hotline+<token>` stays inside the 64 octets RFC 5321 allows.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

from otrs_mailgate.mail import addresses

PURPOSES = {"command": 1, "login": 2, "customer": 3, "session": 4}
_LAYOUT = struct.Struct(">IIHB")  # agent id, ticket id, expiry (days since 1970), purpose
_MAC_BYTES = 16
_EPOCH = dt.date(1970, 1, 1)
TOKEN_LENGTH = 44


class TokenError(ValueError):
    """A token that does not hold; the message says why, for the transcript."""


@dataclass(frozen=True)
class Token:
    agent_id: int
    ticket_id: int
    purpose: str
    expires: dt.date  # the last day it works


def new_secret() -> str:
    return secrets.token_hex(32)


def _mac(secret: str, payload: bytes) -> bytes:
    return hmac.new(bytes.fromhex(secret), payload, hashlib.sha256).digest()[:_MAC_BYTES]


def make(secret: str, agent_id: int, ticket_id: int, purpose: str, expires: dt.date) -> str:
    payload = _LAYOUT.pack(agent_id, ticket_id, (expires - _EPOCH).days, PURPOSES[purpose])
    raw = payload + _mac(secret, payload)
    return base64.b32encode(raw).decode().rstrip("=").lower()


def _decode(text: str) -> tuple[Token, bytes, bytes] | None:
    if len(text) != TOKEN_LENGTH:
        return None
    try:
        raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return None
    if base64.b32encode(raw).decode().rstrip("=").lower() != text.lower():
        return None  # the last character's spare bits differ: not a token we made
    payload, mac = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
    agent_id, ticket_id, days, code = _LAYOUT.unpack(payload)
    purpose = next((name for name, c in PURPOSES.items() if c == code), "")
    return Token(agent_id, ticket_id, purpose, _EPOCH + dt.timedelta(days=days)), payload, mac


def peek(text: str) -> Token | None:
    """What a token claims, unverified (to know whom to tell when it fails)."""
    decoded = _decode(text)
    return decoded[0] if decoded else None


def authentic(text: str, secret: str) -> bool:
    """The token's MAC holds under this secret (whatever its purpose and expiry)."""
    decoded = _decode(text)
    return decoded is not None and hmac.compare_digest(decoded[2], _mac(secret, decoded[1]))


def verify(text: str, secret: str, purpose: str, today: dt.date) -> Token:
    decoded = _decode(text)
    if decoded is None:
        raise TokenError("the reply address carries no valid token (altered or truncated)")
    token, payload, mac = decoded
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        raise TokenError(
            "the token's signature does not match (the agent's secret was rotated since, "
            "or the address was altered)"
        )
    if token.purpose != purpose:
        raise TokenError(f"the token is for {token.purpose or 'something else'}, not {purpose}")
    if token.expires < today:
        raise TokenError(f"the token expired on {token.expires.isoformat()}")
    return token


def token_of(recipient: str) -> str:
    """The reply token in an address, or "".  Only an extension shaped like a token of
    ours (44 characters of canonical base32) is one; any other `hotline+whatever@` is
    the plain queue address, for the milter and the daemon alike (issue 19, item 9)."""
    ext = addresses.extension(recipient)
    return ext if _decode(ext) is not None else ""


def address(queue_address: str, token: str) -> str:
    local, _, domain = queue_address.partition("@")
    return f"{local}+{token}@{domain}"
