"""`otrs-mailgate keys`: the queues' OpenPGP keys and S/MIME certificates, and the
customers' public keys and certificates (crypto/keyring.py, crypto/smime.py)."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import click

from otrs_mailgate.admin.base import Ctx, _dump, pass_ctx


@click.group()
def keys() -> None:
    """OpenPGP keys and S/MIME certificates of the queues and the customers."""


def _ring(ctx: Ctx):  # type: ignore[no-untyped-def]
    from otrs_mailgate.crypto.keyring import Keyring

    ring = Keyring.for_config(ctx.config)
    if ring is None:
        click.echo("otrs-mailgate: set [crypto] key_dir first (no folder for keys)", err=True)
        sys.exit(1)
    return ring


def _fail(message: str) -> None:
    click.echo(f"otrs-mailgate: {message}", err=True)
    sys.exit(1)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def keys_list(ctx: Ctx, as_json: bool) -> None:
    """Every key and certificate: the queues' (secret) and the customers' (public)."""
    from otrs_mailgate.crypto import smime

    ring = _ring(ctx)
    secret = {k.fingerprint for k in ring.openpgp_keys(secret=True)}
    rows = [
        {
            "kind": "openpgp",
            "fingerprint": k.fingerprint,
            "uids": list(k.uids),
            "secret": k.fingerprint in secret,
            "expires": k.expires,
        }
        for k in ring.openpgp_keys()
    ]
    for address, path in smime.queue_identities(ring):
        rows.append({"kind": "s/mime", "address": address, "secret": True, "file": str(path)})
    for path in sorted((ring.root / "smime" / "certs").glob("*.pem")):
        rows.append({"kind": "s/mime", "address": path.stem, "secret": False, "file": str(path)})
    if as_json:
        _dump(rows)
        return
    for r in rows:
        mark = "queue (secret)" if r["secret"] else "public"
        if r["kind"] == "openpgp":
            click.echo(f"openpgp  {r['fingerprint']}  {mark:<14} {', '.join(r['uids'])}")
        else:
            click.echo(f"s/mime   {r['address']:<40}  {mark:<14} {r['file']}")
    if not rows:
        click.echo("no keys (keys import FILE, keys generate --queue NAME)")


@keys.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--queue", "queue_name", help="S/MIME: the file is this queue's key and certificate.")
@pass_ctx
def keys_import(ctx: Ctx, path: Path, queue_name: str | None) -> None:
    """An OpenPGP key (public, or a queue's secret key) or S/MIME PEM: a customer's
    certificate, or with --queue a queue's private key and certificate."""
    from otrs_mailgate.crypto import smime

    ring = _ring(ctx)
    data = path.read_bytes()
    if b"-----BEGIN PGP" in data or not data.startswith(b"-----"):
        found = ring.import_keys(data)
        if not found:
            _fail(f"{path}: no OpenPGP key in it")
        for fingerprint in found:
            info = ring.key(fingerprint)
            what = "secret" if info is not None and info.secret else "public"
            who = ", ".join(info.uids) if info else ""
            click.echo(f"imported {what} key {fingerprint} {who}")
        return
    try:
        address = _queue_address(ctx, queue_name) if queue_name else None
        text = smime.import_pem(ring, data, address)
    except ValueError as exc:
        _fail(f"{path}: {exc}")
    click.echo(text)


def _queue_address(ctx: Ctx, name: str) -> str:
    queue = ctx.config.queue_by_name(name)
    if queue is None:
        _fail(f"no queue {name!r}")
    assert queue is not None
    return queue.addresses[0]


@keys.command("remove")
@click.argument("which")
@pass_ctx
def keys_remove(ctx: Ctx, which: str) -> None:
    """An OpenPGP key by fingerprint, or an S/MIME certificate by address."""
    from otrs_mailgate.crypto.keyring import KeyError_

    ring = _ring(ctx)
    if "@" in which:
        gone = [
            p
            for sub in ("queues", "certs")
            for p in [ring.root / "smime" / sub / f"{which.lower()}.pem"]
            if p.exists()
        ]
        if not gone:
            _fail(f"no S/MIME certificate for {which}")
        for path in gone:
            path.unlink()
            click.echo(f"removed {path}")
        return
    try:
        ring.delete(which)
    except KeyError_ as exc:
        _fail(str(exc))
    click.echo(f"removed key {which}")


@keys.command("show")
@click.argument("which")
@pass_ctx
def keys_show(ctx: Ctx, which: str) -> None:
    """An OpenPGP public key, armored (what a customer needs to write encrypted)."""
    ring = _ring(ctx)
    info = ring.key(which) if "@" not in which else ring.for_address(which)
    if info is None:
        _fail(f"no key {which}")
    assert info is not None
    click.echo(ring.export(info.fingerprint), nl=False)


@keys.command("generate")
@click.option("--queue", "queue_name", required=True)
@pass_ctx
def keys_generate(ctx: Ctx, queue_name: str) -> None:
    """A new OpenPGP key pair for a queue (Ed25519/Curve25519); its passphrase is made
    at random and written to [crypto] passphrase_file. Prints the public key."""
    from otrs_mailgate.crypto.keyring import KeyError_

    ring = _ring(ctx)
    queue = ctx.config.queue_by_name(queue_name)
    if queue is None:
        _fail(f"no queue {queue_name!r}")
    assert queue is not None
    if not ctx.config.crypto.passphrase_file:
        _fail("set [crypto] passphrase_file first: the new key's passphrase goes there")
    secret = secrets.token_urlsafe(24)
    try:
        fingerprint = ring.generate(queue.display_name or queue.name, queue.addresses[0], secret)
        ring.remember_passphrase(fingerprint, secret)
    except KeyError_ as exc:
        _fail(str(exc))
    click.echo(f"key {fingerprint} for {queue.addresses[0]}; passphrase in "
               f"{ctx.config.crypto.passphrase_file}")  # fmt: skip
    click.echo(ring.export(fingerprint), nl=False)


COMMANDS = [keys]
