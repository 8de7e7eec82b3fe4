"""`otrs-mailgate doctor` against a real private Postfix (issue 32): a good
installation is all ok; a broken one fails with the fix for each thing broken."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from otrs_mailgate.config.schema import load

from cli_helpers import cli, write_config
from postfix_helpers import instance
from spam_helpers import local_dns


def dkim_record(cfg: Path, key: Path) -> tuple[str, str]:
    out = cli(cfg, "dkim", "keygen", "--selector", "s1", "--key-file", str(key)).stdout.decode()
    name, _, rest = out.partition(". IN TXT (")
    text = "".join(re.findall(r'"([^"]*)"', rest))
    return name.splitlines()[-1].strip(), text


def doctor(cfg: Path, postfix_dir: Path) -> tuple[int, dict[str, list[dict[str, str]]]]:
    proc = cli(cfg, "doctor", "--json", "--postfix-dir", str(postfix_dir))
    data = json.loads(proc.stdout)
    by: dict[str, list[dict[str, str]]] = {}
    for f in data["findings"]:
        by.setdefault(f["status"], []).append(f)
    return proc.returncode, by


def test_doctor_on_a_good_and_a_broken_installation(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/db.sqlite"
    other = tmp_path / "other.key"
    cfg = write_config(tmp_path / "c.toml", db)
    dkim_record(cfg, other)
    name, record = dkim_record(cfg, tmp_path / "dkim.key")
    with local_dns({name: [record]}) as dns:
        config = load(cfg)
        with instance(config, ["agents@agents.test"]) as mx:
            extra = f"""
[system]
id = "10"
domain = "mailgate.test"
dns_servers = ["{dns}"]
[smtp]
port = {mx.port}
[dkim]
selector = "s1"
key_file = "{tmp_path}/dkim.key"
[web]
public_url = "https://tickets.example.com"
"""
            text = cfg.read_text().replace('[system]\nid = "10"\ndomain = "mailgate.test"\n', "")
            text = re.sub(r"dns_servers = .*\n", "", text)
            text = re.sub(r"\n\[web\]\nport = (\d+)\n", r"\n", text)
            cfg.write_text(text + extra)
            assert cli(cfg, "init").returncode == 0
            assert cli(cfg, "agent", "add", "alice", "alice@agents.test").returncode == 0
            for queue in ("Hotline", "Support-DE"):
                assert cli(cfg, "queue", "grant", queue, "alice", "rw").returncode == 0
            code, found = doctor(cfg, mx.config_dir)
            assert code == 0, json.dumps(found.get("fail", []) + found.get("warn", []), indent=1)
            checks = {f["check"] for f in found["ok"]}
            assert {"config", "database", "grants", "audit", "files", "dkim", "postfix",
                    "mta", "web"} <= checks  # fmt: skip
            text_out = cli(cfg, "doctor", "--postfix-dir", str(mx.config_dir)).stdout.decode()
            assert "0 warning(s), 0 failure(s)" in text_out

            # now break it, the way installations break
            etc = mx.config_dir
            subprocess.run(["postconf", "-c", str(etc), "-e", "recipient_delimiter ="], check=True)
            transport = etc / "transport"
            transport.write_text(transport.read_text().replace("hotline@example.com", "x@y.test"))
            (tmp_path / "db.sqlite").chmod(0o644)
            cfg.write_text(
                cfg.read_text().replace(f"port = {mx.port}", "port = 1")
                .replace(f"{tmp_path}/dkim.key", str(other))
            )  # fmt: skip
            assert cli(cfg, "agent", "disable", "alice").returncode == 0
            code, found = doctor(cfg, etc)
    assert code == 2
    fails = "\n".join(f"{f['check']}: {f['detail']} -> {f['fix']}" for f in found["fail"])
    assert "recipient_delimiter is ''" in fails and "recipient_delimiter = +" in fails
    assert "do not route hotline@example.com" in fails
    assert "db.sqlite" in fails and "chmod 600" in fails
    assert "publishes another key" in fails
    assert "outgoing MTA 127.0.0.1:1 does not answer" in fails
    warns = "\n".join(f"{f['check']}: {f['detail']}" for f in found["warn"])
    assert "queue Hotline: no enabled agent has rw" in warns
