"""OpenPGP and S/MIME for the tests, made with the real tools: `gpg --quick-gen-key`,
`gpg --encrypt/--sign`, `openssl req`, `openssl smime/cms`. The keys of a test session
are made once (key generation takes seconds) and every test gets copies."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from helpers import need

QUEUE = "hotline@example.com"
CUSTOMER = "cus@customer.test"
PASSPHRASE = "queue secret phrase"


def require_tools() -> None:
    need(shutil.which("gpg") is not None, "GnuPG is not installed (Debian package gnupg)")
    need(shutil.which("openssl") is not None, "OpenSSL is not installed (Debian openssl)")


def run(args: list[str], data: bytes = b"", home: Path | None = None) -> bytes:
    env_args = ["--homedir", str(home)] if home is not None and args[0] == "gpg" else []
    cmd = [args[0], *env_args, *args[1:]]
    done = subprocess.run(cmd, input=data, capture_output=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.decode(errors='replace')}")
    return done.stdout


def gpg(home: Path, *args: str, data: bytes = b"") -> bytes:
    return run(["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", *args], data, home)


def new_home(root: Path, name: str) -> Path:
    home = root / name
    home.mkdir(parents=True, mode=0o700)
    return home


def stop_agent(home: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                   capture_output=True, check=False)  # fmt: skip


@dataclass
class Keys:
    """A session's keys: the queue's and customers' GnuPG homes and PEM files."""

    root: Path
    queue_fpr: str
    customer_fpr: str
    stranger_fpr: str  # a key we never hold (a mail encrypted to it is unreadable)

    @property
    def queue_home(self) -> Path:
        return self.root / "queue"

    @property
    def customer_home(self) -> Path:
        return self.root / "customer"

    def pem(self, name: str) -> Path:
        return self.root / "smime" / f"{name}.pem"


def make_keys(root: Path) -> Keys:
    """The queue's key pair (with a passphrase), a customer's and a stranger's; the
    customer holds the queue's public key. S/MIME: a CA, the queue's and the
    customer's certificates signed by it, and a self-signed stranger."""
    queue = new_home(root, "queue")
    customer = new_home(root, "customer")
    stranger = new_home(root, "stranger")
    gpg(queue, "--passphrase", PASSPHRASE, "--quick-gen-key", f"Hotline <{QUEUE}>",
        "ed25519", "sign,cert", "never")  # fmt: skip
    queue_fpr = _fpr(queue, QUEUE)
    gpg(queue, "--passphrase", PASSPHRASE, "--quick-add-key", queue_fpr, "cv25519", "encr", "never")
    gpg(customer, "--passphrase", "", "--quick-gen-key", f"Carla Customer <{CUSTOMER}>",
        "ed25519", "sign,cert", "never")  # fmt: skip
    customer_fpr = _fpr(customer, CUSTOMER)
    gpg(customer, "--passphrase", "", "--quick-add-key", customer_fpr, "cv25519", "encr", "never")
    gpg(stranger, "--passphrase", "", "--quick-gen-key", "Someone <someone@else.test>",
        "default", "default", "never")  # fmt: skip
    stranger_fpr = _fpr(stranger, "someone@else.test")
    gpg(customer, "--import", data=gpg(queue, "--export", "--armor", queue_fpr))
    gpg(customer, "--import", data=gpg(stranger, "--export", "--armor", stranger_fpr))
    for home in (queue, customer, stranger):
        stop_agent(home)
    _smime(root / "smime")
    return Keys(root, queue_fpr, customer_fpr, stranger_fpr)


def _fpr(home: Path, uid: str) -> str:
    out = gpg(home, "--with-colons", "--list-keys", uid).decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr"))


def _smime(folder: Path) -> None:
    folder.mkdir(parents=True)

    def ssl(*args: str) -> None:
        run(["openssl", *args])

    ca = ("-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign")
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=Test CA",
        "-keyout", str(folder / "ca.key"), "-out", str(folder / "ca.pem"), *ca)  # fmt: skip
    for name, address, secret in (("queue", QUEUE, PASSPHRASE), ("customer", CUSTOMER, "")):
        key, csr, crt = (folder / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name.title()}",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
        ext = folder / f"{name}.ext"
        ext.write_text(f"subjectAltName=email:{address}\nextendedKeyUsage=emailProtection\n"
                       "keyUsage=digitalSignature,keyEncipherment\n")  # fmt: skip
        ssl("x509", "-req", "-in", str(csr), "-CA", str(folder / "ca.pem"), "-CAkey",
            str(folder / "ca.key"), "-CAcreateserial", "-days", "3650", "-out", str(crt),
            "-extfile", str(ext))  # fmt: skip
        if secret:  # the queue's key encrypted with its passphrase, as an admin keeps it
            ssl("pkey", "-in", str(key), "-out", str(folder / f"{name}.enc.key"), "-aes256",
                "-passout", f"pass:{secret}")  # fmt: skip
            pem = (folder / f"{name}.enc.key").read_bytes() + crt.read_bytes()
        else:
            pem = key.read_bytes() + crt.read_bytes()
        (folder / f"{name}.pem").write_bytes(pem)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=Stranger",
        "-keyout", str(folder / "stranger.key"), "-out", str(folder / "stranger.crt"),
        "-addext", f"subjectAltName=email:{CUSTOMER}")  # fmt: skip
    (folder / "stranger.pem").write_bytes(
        (folder / "stranger.key").read_bytes() + (folder / "stranger.crt").read_bytes()
    )


def copy_keys(keys: Keys, dest: Path) -> Keys:
    shutil.copytree(keys.root, dest, ignore=shutil.ignore_patterns("S.*", "*.lock"))
    return Keys(dest, keys.queue_fpr, keys.customer_fpr, keys.stranger_fpr)


# -- mails as clients send them ---------------------------------------------------------------


def head(subject: str, content_type: str, sender: str = CUSTOMER) -> bytes:
    return (
        f"From: Carla Customer <{sender}>\r\nTo: {QUEUE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@customer.test>\r\n"
        "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


def entity(text: str, attachment: bytes | None = None) -> bytes:
    """The MIME entity a client encrypts or signs: a text, optionally a file."""
    if attachment is None:
        return (
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + text
            + "\r\n"
        ).encode()
    import base64

    data = base64.encodebytes(attachment).decode().replace("\n", "\r\n")
    return (
        'Content-Type: multipart/mixed; boundary="inner"\r\n\r\n--inner\r\n'
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{text}\r\n--inner\r\nContent-Type: application/pdf; name=secret.pdf\r\n"
        "Content-Disposition: attachment; filename=secret.pdf\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{data}--inner--\r\n"
    ).encode()


def pgp_mime_encrypted(keys: Keys, subject: str, inner: bytes, *, to: str = QUEUE,
                       sign: bool = False) -> bytes:  # fmt: skip
    """RFC 3156 4: what Thunderbird or Mutt send (gpg does the crypto)."""
    args = ["--armor", "--trust-model", "always", "--encrypt", "--recipient", to]
    if sign:
        args += ["--sign", "--local-user", CUSTOMER, "--passphrase", ""]
    armored = gpg(keys.customer_home, *args, data=inner)
    stop_agent(keys.customer_home)
    body = (
        b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n--enc\r\n"
        b"Content-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version "
        b"identification\r\n\r\nVersion: 1\r\n\r\n--enc\r\nContent-Type: application/"
        b'octet-stream; name="encrypted.asc"\r\nContent-Disposition: inline; filename='
        b'"encrypted.asc"\r\n\r\n' + armored.replace(b"\n", b"\r\n") + b"\r\n--enc--\r\n"
    )
    ctype = 'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="enc"'
    return head(subject, ctype) + body


def pgp_mime_signed(keys: Keys, subject: str, inner: bytes) -> bytes:
    """RFC 3156 5: multipart/signed with a detached signature over the first part."""
    signature = gpg(keys.customer_home, "--armor", "--detach-sign", "--local-user", CUSTOMER,
                    "--passphrase", "", data=inner)  # fmt: skip
    stop_agent(keys.customer_home)
    body = (
        b"--sig\r\n" + inner + b"\r\n--sig\r\nContent-Type: application/pgp-signature; "
        b'name="signature.asc"\r\n\r\n' + signature.replace(b"\n", b"\r\n") + b"\r\n--sig--\r\n"
    )
    ctype = ('multipart/signed; micalg=pgp-sha512; protocol="application/pgp-signature"; '
             'boundary="sig"')  # fmt: skip
    return head(subject, ctype) + body


def smime(keys: Keys, subject: str, inner: bytes, how: str) -> bytes:
    """openssl smime as clients do it: `encrypt` to the queue's certificate, `sign`
    (detached, multipart/signed), `opaque` (signed-data), `sign+encrypt`; the headers
    openssl writes are the entity's own."""
    folder = keys.root / "smime"
    customer, queue = str(folder / "customer.pem"), str(folder / "queue.crt")

    def sign(data: bytes, opaque: bool = False, who: str = customer) -> bytes:
        args = ["openssl", "smime", "-sign", "-signer", who, "-inkey", who]
        if opaque:
            args.append("-nodetach")
        return run(args, data)

    def encrypt(data: bytes) -> bytes:
        return run(["openssl", "smime", "-encrypt", "-aes256", queue], data)

    if how == "encrypt":
        out = encrypt(inner)
    elif how == "sign":
        out = sign(inner)
    elif how == "opaque":
        out = sign(inner, opaque=True)
    elif how == "sign+encrypt":
        out = encrypt(sign(inner))
    elif how == "stranger":
        out = sign(inner, who=str(folder / "stranger.pem"))
    else:
        raise ValueError(how)
    out = out.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (
        f"From: Carla Customer <{CUSTOMER}>\r\nTo: {QUEUE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@customer.test>\r\n"
        "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
    ).encode() + out


def temp_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="otrs-mailgate-keys-", dir="/tmp"))


def site_keys(keys: Keys, tmp_path: Path, *, know_customer: bool = True) -> dict[str, object]:
    """The site's key folder as an admin sets it up: the queue's secret key and its
    passphrase line, the customer's public key, the queue's S/MIME identity, the CA."""
    site = tmp_path / "site-keys"
    passphrases = tmp_path / "passphrases"
    passphrases.write_text(f"{keys.queue_fpr} {PASSPHRASE}\n{QUEUE} {PASSPHRASE}\n")
    from otrs_mailgate.crypto.keyring import Keyring

    ring = Keyring(site, str(passphrases))
    secret = gpg(keys.queue_home, "--armor", "--passphrase", PASSPHRASE,
                 "--export-secret-keys", keys.queue_fpr)  # fmt: skip
    stop_agent(keys.queue_home)
    assert ring.import_keys(secret)
    if know_customer:
        ring.import_keys(gpg(keys.customer_home, "--armor", "--export", keys.customer_fpr))
        stop_agent(keys.customer_home)
    queues = site / "smime" / "queues"
    queues.mkdir(parents=True)
    shutil.copy(keys.pem("queue"), queues / f"{QUEUE}.pem")
    (site / "smime" / "ca").mkdir()
    shutil.copy(keys.pem("ca"), site / "smime" / "ca" / "ca.pem")
    ring.stop()
    return {"crypto": {"key_dir": str(site), "passphrase_file": str(passphrases)}}
