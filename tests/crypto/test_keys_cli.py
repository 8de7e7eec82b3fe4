"""`otrs-mailgate keys`: make a queue's key pair, import customers' keys and S/MIME
certificates, list, show and remove them; errors say what is wrong and change nothing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from crypto_helpers import CUSTOMER, Keys, gpg, make_keys, require_tools, stop_agent, temp_root

from cli_helpers import cli, cli_json, write_config


@pytest.fixture(scope="module")
def client_keys() -> Iterator[Keys]:
    require_tools()
    root = temp_root()
    yield make_keys(root)
    shutil.rmtree(root, ignore_errors=True)


def test_keys_from_generate_to_remove(tmp_path: Path, sqlite_url: str, client_keys: Keys) -> None:
    extra = f'[crypto]\nkey_dir = "{tmp_path}/keys"\npassphrase_file = "{tmp_path}/passphrases"\n'
    cfg = write_config(tmp_path / "c.toml", sqlite_url, extra)
    made = cli(cfg, "keys", "generate", "--queue", "Hotline")
    assert made.returncode == 0, made.stderr
    assert b"-----BEGIN PGP PUBLIC KEY BLOCK-----" in made.stdout
    fingerprint = made.stdout.split()[1].decode()
    line = (tmp_path / "passphrases").read_text().split()
    assert line[0] == fingerprint and len(line[1]) >= 24
    assert oct((tmp_path / "passphrases").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "keys").stat().st_mode & 0o777) == "0o700"
    public = tmp_path / "customer.asc"
    public.write_bytes(gpg(client_keys.customer_home, "--armor", "--export", CUSTOMER))
    stop_agent(client_keys.customer_home)
    assert cli(cfg, "keys", "import", str(public)).returncode == 0
    assert (
        cli(cfg, "keys", "import", str(client_keys.root / "smime" / "customer.crt")).returncode == 0
    )
    queue_pem = client_keys.pem("queue")
    done = cli(cfg, "keys", "import", "--queue", "Hotline", str(queue_pem))
    assert done.returncode == 0 and b"S/MIME identity of hotline@example.com" in done.stdout
    rows = cli_json(cfg, "keys", "list", "--json")
    kinds = sorted((r["kind"], r["secret"]) for r in rows)
    assert kinds == [("openpgp", False), ("openpgp", True), ("s/mime", False), ("s/mime", True)]
    shown = cli(cfg, "keys", "show", "hotline@example.com")
    assert shown.stdout.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    # errors: one line, nothing changed
    bad = tmp_path / "garbage.pem"
    bad.write_text("-----BEGIN NOTHING-----\nxx\n-----END NOTHING-----\n")
    refused = cli(cfg, "keys", "import", str(bad))
    assert refused.returncode == 1 and b"no PEM certificate" in refused.stderr
    no_key = cli(
        cfg,
        "keys",
        "import",
        "--queue",
        "Hotline",
        str(client_keys.root / "smime" / "customer.crt"),
    )
    assert no_key.returncode == 1 and b"needs its private key" in no_key.stderr
    assert len(cli_json(cfg, "keys", "list", "--json")) == 4
    gone = cli(cfg, "keys", "remove", fingerprint)
    assert gone.returncode == 0, gone.stderr
    assert cli(cfg, "keys", "remove", CUSTOMER).returncode == 0
    assert cli(cfg, "keys", "remove", "nobody@nowhere.test").returncode == 1
    left = cli_json(cfg, "keys", "list", "--json")
    assert sorted((r["kind"], r["secret"]) for r in left) == [("openpgp", False), ("s/mime", True)]
    from otrs_mailgate.crypto.keyring import Keyring

    Keyring(tmp_path / "keys").stop()
