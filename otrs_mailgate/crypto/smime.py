"""S/MIME with the `openssl` tool (`openssl cms`), as OTRS and RT use it: the tool is
OpenSSL's own, handles every S/MIME shape clients send (enveloped, opaque and detached
signed, nested), and says why a signature fails. `cryptography` reads the certificates.

The store, `<key_dir>/smime/`:
- `queues/<address>.pem`: a queue's certificate and private key (PEM, key encrypted
  with the passphrase the passphrase file gives for the address), mode 0600;
- `certs/<address>.pem`: customers' certificates (learned from their signed mail, or
  imported), to encrypt answers to them;
- `ca/*.pem`: trust anchors besides the system's (/etc/ssl/certs), e.g. a company CA.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from otrs_mailgate.crypto.keyring import Keyring
from otrs_mailgate.mail.parse import Protection

SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
TIMEOUT = 30


@dataclass(frozen=True)
class Verdict:
    content: bytes | None  # the signed entity (opaque signed: extracted), None: unreadable
    protection: Protection


def store(keyring: Keyring, sub: str) -> Path:
    path = keyring.root / "smime" / sub
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(keyring.root / "smime", 0o700)
    return path


def queue_identities(keyring: Keyring) -> list[tuple[str, Path]]:
    """(address, PEM with certificate and key) of each queue that has one."""
    folder = keyring.root / "smime" / "queues"
    if not folder.is_dir():
        return []
    return [(p.stem, p) for p in sorted(folder.glob("*.pem"))]


def decrypt(keyring: Keyring, entity: bytes) -> tuple[bytes | None, str]:
    """(the decrypted entity, "") or (None, why)."""
    identities = queue_identities(keyring)
    if not identities:
        return None, "encrypted with S/MIME, and no queue has a certificate"
    last = ""
    for address, pem in identities:
        secret = keyring.passphrase_for_name(address) or ""
        done = _openssl(
            ["cms", "-decrypt", "-inkey", str(pem), "-passin", "env:PASS"],
            entity,
            {"PASS": secret},
        )
        if done.returncode == 0:
            return done.stdout, ""
        last = done.stderr.decode("utf-8", "replace")
    if "no recipient" in last.lower() or "recipientinfo" in last.lower():
        return None, "encrypted to a certificate we do not hold"
    return None, "decryption failed: " + _first_error(last)


def verify(keyring: Keyring | None, entity: bytes, sender: str) -> Verdict:
    """Check an S/MIME signature (detached in multipart/signed, or opaque): the chain to
    the system's trust anchors or ours, the content, the validity dates."""
    anchors = _anchors(keyring)
    with tempfile.TemporaryDirectory(prefix="smime-") as tmp:
        signer = Path(tmp) / "signer.pem"
        args = ["cms", "-verify", "-signer", str(signer), "-purpose", "any"]
        if anchors:
            args += ["-CAfile", str(anchors)]
        done = _openssl(args, entity)
        loose = done
        if done.returncode != 0:  # what the content is, and who signed, without trust
            loose = _openssl(["cms", "-verify", "-noverify", "-signer", str(signer)], entity)
        cert = _certificate(signer)
    who, addresses = _identity(cert)
    said = done.stderr.decode("utf-8", "replace").lower()
    if done.returncode == 0:
        word = "valid"
    elif loose.returncode != 0:
        word = "invalid"  # the content does not match the signature
    elif "expired" in said:
        word = "key expired"
    elif "revoked" in said:
        word = "key revoked"
    else:
        word = "key unknown"  # a chain to nobody we trust
    content = loose.stdout if loose.returncode == 0 else None
    if keyring is not None and cert is not None and word in ("valid", "key unknown"):
        learn(keyring, cert, addresses)
    return Verdict(
        content,
        Protection(
            "smime",
            signature=word,
            signer=who,
            fingerprint=cert.fingerprint(_sha256()).hex() if cert is not None else "",
            signer_is_sender=bool(sender) and sender.lower() in addresses,
            problem="" if word == "valid" else _first_error(said),
        ),
    )


def learn(keyring: Keyring, cert: x509.Certificate, addresses: set[str]) -> None:
    """A customer's certificate from their signed mail: answers to them can be encrypted."""
    from cryptography.hazmat.primitives.serialization import Encoding

    folder = store(keyring, "certs")
    for address in addresses:
        if "/" in address or address.startswith("."):
            continue
        (folder / f"{address}.pem").write_bytes(cert.public_bytes(Encoding.PEM))


def import_pem(keyring: Keyring, data: bytes, queue_address: str | None) -> str:
    """A queue's private key and certificate (queue_address given), or customers'
    certificates, into the store; what was done, or ValueError."""
    from cryptography.hazmat.primitives.serialization import Encoding

    certs = x509.load_pem_x509_certificates(data) if b"CERTIFICATE-----" in data else []
    if not certs:
        raise ValueError("no PEM certificate in it")
    if queue_address is not None:
        if b"PRIVATE KEY-----" not in data:
            raise ValueError("a queue's file needs its private key and its certificate")
        path = store(keyring, "queues") / f"{queue_address.lower()}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return f"S/MIME identity of {queue_address}: {_identity(certs[0])[0]} -> {path}"
    done = []
    for cert in certs:
        who, addresses = _identity(cert)
        if not addresses:
            raise ValueError(f"certificate {who} names no mail address")
        for address in sorted(addresses):
            (store(keyring, "certs") / f"{address}.pem").write_bytes(
                cert.public_bytes(Encoding.PEM)
            )
            done.append(address)
    return "S/MIME certificate for " + ", ".join(done)


def _anchors(keyring: Keyring | None) -> Path | None:
    """The system's trust anchors and ours, in one file for -CAfile."""
    ours = sorted((keyring.root / "smime" / "ca").glob("*.pem")) if keyring is not None else []
    if not ours:
        return SYSTEM_CA if SYSTEM_CA.exists() else None
    bundle = keyring.root / "smime" / "anchors.pem"  # type: ignore[union-attr]
    data = SYSTEM_CA.read_bytes() if SYSTEM_CA.exists() else b""
    data += b"".join(p.read_bytes() for p in ours)
    if not bundle.exists() or bundle.read_bytes() != data:
        bundle.write_bytes(data)
    return bundle


def _certificate(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _identity(cert: x509.Certificate | None) -> tuple[str, set[str]]:
    """The certificate's name and its mail addresses (subject alternative names and the
    subject's emailAddress)."""
    if cert is None:
        return "", set()
    addresses: set[str] = set()
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        addresses |= {a.lower() for a in alt.value.get_values_for_type(x509.RFC822Name)}
    except x509.ExtensionNotFound:
        pass
    for attr in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        addresses.add(str(attr.value).lower())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else cert.subject.rfc4514_string()
    first = sorted(addresses)[0] if addresses else ""
    return (f"{name} <{first}>" if first else name), addresses


def _sha256():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _openssl(
    args: list[str], data: bytes, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["openssl", *args],
        input=data,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _first_error(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if (line and "error" in line.lower()) or "fail" in line.lower():
            return line.split(":")[-1].strip()[:200] or line[:200]
    return text.strip()[:200]
