"""Our outgoing mail encrypted and signed: PGP/MIME (RFC 3156) when the recipients have
OpenPGP keys (or, signing only, when the queue has one), S/MIME (RFC 8551) with
certificates. The message's own headers (From, To, Subject, Message-ID, ...) stay on
the outside, as mail clients do; its body and content headers become the protected
entity. GnuPG and `openssl smime` do the work."""

from __future__ import annotations

import re
import subprocess
import uuid

from otrs_mailgate.crypto import smime
from otrs_mailgate.crypto.keyring import Keyring

_HEAD_END = re.compile(rb"\r\n\r\n")
_CONTENT = (b"content-type", b"content-transfer-encoding", b"content-disposition", b"mime-version")


class WrapError(RuntimeError):
    """The mail cannot be protected as decided (a key gone meanwhile, gpg failing)."""


def can_encrypt(keyring: Keyring | None, address: str) -> str:
    """ "openpgp", "smime" or "": what we can encrypt to this address with."""
    if keyring is None:
        return ""
    if keyring.exists() and keyring.for_address(address) is not None:
        return "openpgp"
    if (keyring.root / "smime" / "certs" / f"{address.lower()}.pem").exists():
        return "smime"
    return ""


def can_sign(keyring: Keyring | None, address: str) -> str:
    if keyring is None:
        return ""
    if keyring.exists() and keyring.for_address(address, secret=True) is not None:
        return "openpgp"
    if (keyring.root / "smime" / "queues" / f"{address.lower()}.pem").exists():
        return "smime"
    return ""


def protect(
    keyring: Keyring, data: bytes, recipients: list[str], encrypt: bool, sign_as: str
) -> bytes:
    """The mail's bytes encrypted to every recipient and/or signed as sign_as."""
    head, entity = _split(data)
    kinds = {can_encrypt(keyring, r) for r in recipients} if encrypt else set()
    if encrypt and ("" in kinds or not kinds):
        missing = [r for r in recipients if not can_encrypt(keyring, r)]
        raise WrapError(f"no key to encrypt to {', '.join(missing)}")
    use = "smime" if kinds == {"smime"} else "openpgp"
    if not encrypt:
        use = can_sign(keyring, sign_as) or "openpgp"
    if use == "openpgp":
        return _pgp(keyring, head, entity, recipients if encrypt else [], sign_as)
    return _smime(keyring, head, entity, recipients if encrypt else [], sign_as)


def _split(data: bytes) -> tuple[list[bytes], bytes]:
    """(the outer header lines, the entity: content headers and body)."""
    found = _HEAD_END.search(data)
    if found is None:
        raise WrapError("no header block")
    lines: list[bytes] = []
    content: list[bytes] = []
    current: list[bytes] | None = None
    for line in data[: found.start()].split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and current is not None:
            current.append(line)
            continue
        current = content if line.split(b":", 1)[0].strip().lower() in _CONTENT else lines
        current.append(line)
    content = [ln for ln in content if not ln.lower().startswith(b"mime-version")]
    if not any(ln.lower().startswith(b"content-type") for ln in content):
        content.insert(0, b"Content-Type: text/plain; charset=us-ascii")
    return lines, b"\r\n".join(content) + b"\r\n\r\n" + data[found.end() :]


def _join(head: list[bytes], ctype: str, body: bytes) -> bytes:
    return b"\r\n".join([*head, b"MIME-Version: 1.0", f"Content-Type: {ctype}".encode()]) + (
        b"\r\n\r\n" + body
    )


def _pgp(
    keyring: Keyring, head: list[bytes], entity: bytes, recipients: list[str], sign_as: str
) -> bytes:
    gpg = keyring.gpg
    signer = keyring.for_address(sign_as, secret=True) if sign_as else None
    secret = keyring.passphrase_for(signer.fingerprint) if signer else None
    boundary = f"pgp-{uuid.uuid4().hex}"
    if recipients:
        keys = [keyring.for_address(r) for r in recipients]
        result = gpg.encrypt(
            entity, [k.fingerprint for k in keys if k], always_trust=True, armor=True,
            sign=signer.fingerprint if signer else None, passphrase=secret,
        )  # fmt: skip
        if not result.ok:
            raise WrapError(f"gpg could not encrypt: {result.status}")
        armored = str(result).replace("\r\n", "\n").replace("\n", "\r\n").encode()
        body = (
            (
                f"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n--{boundary}\r\n"
                "Content-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version "
                f"identification\r\n\r\nVersion: 1\r\n\r\n--{boundary}\r\n"
                'Content-Type: application/octet-stream; name="encrypted.asc"\r\n'
                'Content-Disposition: inline; filename="encrypted.asc"\r\n\r\n'
            ).encode()
            + armored
            + f"\r\n--{boundary}--\r\n".encode()
        )
        ctype = f'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="{boundary}"'
        return _join(head, ctype, body)
    if signer is None:
        raise WrapError(f"no OpenPGP key of {sign_as} to sign with")
    signature = gpg.sign(entity, keyid=signer.fingerprint, passphrase=secret, detach=True)
    if not signature.data:
        raise WrapError(f"gpg could not sign: {signature.status}")
    sig = str(signature).replace("\r\n", "\n").replace("\n", "\r\n").encode()
    body = (
        f"--{boundary}\r\n".encode() + entity + f"\r\n--{boundary}\r\n".encode()
        + b'Content-Type: application/pgp-signature; name="signature.asc"\r\n'
        + b'Content-Description: OpenPGP digital signature\r\n\r\n'
        + sig + f"\r\n--{boundary}--\r\n".encode()
    )  # fmt: skip
    ctype = (
        f"multipart/signed; micalg=pgp-{_micalg(signature)}; "
        f'protocol="application/pgp-signature"; boundary="{boundary}"'
    )
    return _join(head, ctype, body)


def _micalg(signature: object) -> str:
    algo = str(getattr(signature, "hash_algo", "") or "")
    return {"2": "sha1", "8": "sha256", "9": "sha384", "10": "sha512", "11": "sha224"}.get(
        algo, "sha512"
    )


def _smime(
    keyring: Keyring, head: list[bytes], entity: bytes, recipients: list[str], sign_as: str
) -> bytes:
    data = entity
    if sign_as:
        pem = keyring.root / "smime" / "queues" / f"{sign_as.lower()}.pem"
        if not pem.exists():
            raise WrapError(f"no S/MIME identity of {sign_as} to sign with")
        secret = keyring.passphrase_for_name(sign_as) or ""
        data = _openssl(["smime", "-sign", "-signer", str(pem), "-inkey", str(pem),
                         "-passin", "env:PASS"], data, secret)  # fmt: skip
    if recipients:
        certs = [str(keyring.root / "smime" / "certs" / f"{r.lower()}.pem") for r in recipients]
        data = _openssl(["smime", "-encrypt", "-aes256", *certs], data)
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    found = _HEAD_END.search(data)
    assert found is not None
    inner = [ln for ln in data[: found.start()].split(b"\r\n") if ln]
    return b"\r\n".join([*head, *inner]) + b"\r\n\r\n" + data[found.end() :]


def _openssl(args: list[str], data: bytes, secret: str = "") -> bytes:
    import os

    done = subprocess.run(
        ["openssl", *args], input=data, capture_output=True, timeout=smime.TIMEOUT,
        check=False, env={**os.environ, "PASS": secret},
    )  # fmt: skip
    if done.returncode != 0:
        raise WrapError("openssl: " + done.stderr.decode("utf-8", "replace").strip()[:300])
    return done.stdout
