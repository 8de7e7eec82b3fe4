"""The site's keys: a GnuPG home (`<key_dir>/gnupg`) for OpenPGP and a folder of PEM
files (`<key_dir>/smime`) for S/MIME, with the passphrases of the queues' private keys
in a file of their own, never in the database.

python-gnupg drives the `gpg` binary (Debian's gnupg): the keyring format, trust,
expiry and revocation are GnuPG's own, and what an admin does with `gpg --homedir`
is seen here at once. GPGME's bindings would do the same through a C library whose
Python package is not on PyPI for every Python; python-gnupg is pure Python, kept
since 2008, and is what the `gpg` tool's own output is parsed with in many projects.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gnupg

from otrs_mailgate.config.schema import Config

_HEX = re.compile(r"[0-9A-Fa-f]{16,40}")  # a key id or fingerprint, not a name


class KeyError_(ValueError):
    """A key operation that cannot be done; the message says why."""


def key_dir(config: Config) -> Path | None:
    """crypto.key_dir (a config file sets it, default keys/ beside it), else keys/
    beside an SQLite database; None: nowhere (no crypto)."""
    if config.crypto.key_dir:
        return Path(config.crypto.key_dir)
    url = config.database.url
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url.removeprefix("sqlite:///")).parent / "keys"
    return None


@dataclass(frozen=True)
class KeyInfo:
    fingerprint: str
    uids: tuple[str, ...]
    secret: bool
    expires: str  # "" never
    trust: str

    def addresses(self) -> set[str]:
        out = set()
        for uid in self.uids:
            if "<" in uid and uid.endswith(">"):
                out.add(uid.rsplit("<", 1)[1][:-1].lower())
            elif "@" in uid:
                out.add(uid.strip().lower())
        return out


class Keyring:
    """One site's keys. GnuPG runs as a child process for each operation."""

    def __init__(self, root: Path, passphrase_file: str = "") -> None:
        self.root = root
        self.passphrase_file = Path(passphrase_file) if passphrase_file else None

    @classmethod
    def for_config(cls, config: Config) -> Keyring | None:
        root = key_dir(config)
        return cls(root, config.crypto.passphrase_file) if root is not None else None

    @functools.cached_property
    def gpg(self) -> gnupg.GPG:
        home = self.root / "gnupg"
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        os.chmod(home, 0o700)
        gpg = gnupg.GPG(gnupghome=str(home))
        gpg.encoding = "utf-8"
        return gpg

    def exists(self) -> bool:
        return (self.root / "gnupg").is_dir()

    # -- passphrases -------------------------------------------------------------------

    def passphrases(self) -> dict[str, str]:
        """fingerprint or queue name -> passphrase, as the file says."""
        if self.passphrase_file is None or not self.passphrase_file.exists():
            return {}
        found = {}
        for line in self.passphrase_file.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, _, secret = line.strip().partition(" ")
            found[key.upper() if _HEX.fullmatch(key) else key] = secret.strip()
        return found

    def passphrase_for(self, fingerprint: str) -> str | None:
        table = self.passphrases()
        fingerprint = fingerprint.upper()
        for key, secret in table.items():
            if _HEX.fullmatch(key) and (fingerprint.endswith(key) or key.endswith(fingerprint)):
                return secret
        return None

    def passphrase_for_name(self, name: str) -> str | None:
        """The passphrase the file gives for a queue name or address (S/MIME keys)."""
        table = self.passphrases()
        return table.get(name, table.get(name.lower()))

    def remember_passphrase(self, fingerprint: str, secret: str) -> None:
        if self.passphrase_file is None:
            raise KeyError_("set [crypto] passphrase_file first: the passphrase must go there")
        self.passphrase_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.passphrase_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(f"{fingerprint} {secret}\n")

    # -- OpenPGP -------------------------------------------------------------------------

    def openpgp_keys(self, secret: bool = False) -> list[KeyInfo]:
        found = []
        for key in self.gpg.list_keys(secret=secret):
            found.append(
                KeyInfo(
                    fingerprint=key["fingerprint"],
                    uids=tuple(key.get("uids") or ()),
                    secret=secret,
                    expires=key.get("expires") or "",
                    trust=key.get("trust") or "",
                )
            )
        return found

    def key(self, fingerprint: str) -> KeyInfo | None:
        wanted = fingerprint.upper().replace(" ", "")
        for info in self.openpgp_keys(secret=True) + self.openpgp_keys():
            if info.fingerprint.endswith(wanted):
                return info
        return None

    def for_address(self, address: str, secret: bool = False) -> KeyInfo | None:
        """A usable key whose user IDs name this address (the newest listed first)."""
        address = address.lower()
        for info in self.openpgp_keys(secret=secret):
            if address in info.addresses():
                return info
        return None

    def decrypt(self, data: bytes) -> Any:
        """gpg --decrypt, with the passphrase of the key the message is for (each known
        one is tried when the message does not say)."""
        secrets = {s for s in self.passphrases().values() if s}
        wanted = self._recipient_passphrase(data)
        tries: list[str | None] = [wanted] if wanted is not None else [*sorted(secrets)] or [None]
        result = None
        for secret in tries:
            result = self.gpg.decrypt(data, passphrase=secret)
            if result.ok:
                return result
        return result

    def _recipient_passphrase(self, data: bytes) -> str | None:
        try:
            ids = [i.upper() for i in self.gpg.get_recipients(data)]
        except Exception:
            return None
        for key in self.gpg.list_keys(secret=True):
            subkeys = [s[0] for s in key.get("subkeys", [])] + [key["keyid"]]
            if any(i.endswith(k.upper()) or k.upper().endswith(i) for i in ids for k in subkeys):
                return self.passphrase_for(key["fingerprint"])
        return None

    def verify_detached(self, signed: bytes, signature: bytes) -> Any:
        with tempfile.NamedTemporaryFile(suffix=".sig") as sig:
            sig.write(signature)
            sig.flush()
            return self.gpg.verify_data(sig.name, signed)

    def verify(self, data: bytes) -> Any:
        return self.gpg.verify(data)

    def import_keys(self, data: bytes) -> list[str]:
        result = self.gpg.import_keys(data)
        return list(dict.fromkeys(result.fingerprints or []))

    def generate(self, name: str, address: str, passphrase: str) -> str:
        """A new key pair for a queue (Ed25519 signing, Curve25519 encryption; no expiry
        unless the admin sets one later with gpg)."""
        spec = self.gpg.gen_key_input(
            name_real=name, name_email=address, key_type="EDDSA", key_curve="ed25519",
            subkey_type="ECDH", subkey_curve="cv25519", passphrase=passphrase, expire_date=0,
        )  # fmt: skip
        result = self.gpg.gen_key(spec)
        if not result.fingerprint:
            raise KeyError_(f"gpg could not make the key: {result.stderr[-300:]}")
        return str(result.fingerprint)

    def delete(self, fingerprint: str) -> None:
        info = self.key(fingerprint)
        if info is None:
            raise KeyError_(f"no key {fingerprint}")
        if any(k.fingerprint == info.fingerprint for k in self.openpgp_keys(secret=True)):
            done = self.gpg.delete_keys(
                info.fingerprint, secret=True, passphrase=self.passphrase_for(info.fingerprint)
            )
            if str(done) != "ok":
                raise KeyError_(f"gpg did not delete the secret key: {done.stderr[-300:]}")
        done = self.gpg.delete_keys(info.fingerprint)
        if str(done) != "ok":
            raise KeyError_(f"gpg did not delete the key: {done.stderr[-300:]}")

    def export(self, fingerprint: str) -> str:
        return str(self.gpg.export_keys(fingerprint))

    def stop(self) -> None:
        """The gpg-agent of this home ends (tests; a daemon keeps it)."""
        import subprocess

        if self.exists():
            subprocess.run(
                ["gpgconf", "--homedir", str(self.root / "gnupg"), "--kill", "gpg-agent"],
                capture_output=True,
                check=False,
            )
