"""Config: TOML plus environment; a bad file is one clear line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from otrs_mailgate.config import schema as config_mod

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_safe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OTRS_MAILGATE_CONFIG", raising=False)
    c = config_mod.load()
    assert c.source == "built-in defaults"
    assert c.database.url == "sqlite:///var/otrs-mailgate.sqlite"
    assert c.queue[0].addresses == ["hotline@localhost"]


def test_example_file_loads_and_relative_sqlite_path_is_beside_it(tmp_path: Path) -> None:
    example = tmp_path / "otrs-mailgate.toml"
    example.write_text((ROOT / "otrs-mailgate.toml.example").read_text())
    c = config_mod.load(example)
    assert [q.name for q in c.queue] == ["Hotline", "Support-DE"]
    # the example names the state directory; a relative path would be beside the file
    assert c.database.url == "sqlite:////var/lib/otrs-mailgate/otrs-mailgate.sqlite"
    assert c.queue_by_name("Support-DE").follow_up_closed == "new"
    example.write_text(example.read_text().replace(c.database.url, "sqlite:///var/x.sqlite"))
    assert config_mod.load(example).database.url == f"sqlite:///{tmp_path}/var/x.sqlite"


def test_the_example_shows_every_key_of_every_section() -> None:
    """Issue 27: the README says the example explains every key; it lacked [lmtp],
    [milter], [smtp] and [dkim]. Every key of every section is in it, set or commented."""
    import re
    import typing

    text = (ROOT / "otrs-mailgate.toml.example").read_text()
    missing = []
    for section, field in config_mod.Config.model_fields.items():
        model = field.annotation
        if typing.get_origin(model) is list:
            model = typing.get_args(model)[0]
        if not (isinstance(model, type) and issubclass(model, config_mod._Section)):
            continue
        header = f"[[{section}]]" if typing.get_origin(field.annotation) is list else f"[{section}]"
        if header not in text:
            missing.append(header)
        for key in model.model_fields:
            if key == "junk":  # the spam queue's mark, never configured
                continue
            if key == "hours":
                key = "calendar.hours"
            if key == "escalation":
                key = "sla.escalation"
            if not re.search(rf"^#?\s*\[*{re.escape(key)}\]*\s*=?", text, re.M):
                missing.append(f"{section}.{key}")
    assert missing == [], missing


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[database]\nurl = "sqlite:///a.sqlite"\n')
    monkeypatch.setenv("OTRS_MAILGATE_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("OTRS_MAILGATE_SYSTEM_TICKET_NUMBER", "random")
    monkeypatch.setenv("OTRS_MAILGATE_DATABASE_BUSY_TIMEOUT_MS", "250")
    c = config_mod.load(f)
    assert c.database.url == "postgresql://u@h/db"
    assert c.system.ticket_number == "random"
    assert c.database.busy_timeout_ms == 250


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[system]\nticket_number = "sequential"\n', "system.ticket_number: Input should be"),
        ('[system]\nidd = "10"\n', "system.idd: unknown key"),
        ('[[queue]]\nname = "Q"\naddresses = ["not an address"]\n', "queue[0].addresses"),
        ('[[queue]]\nname = "Q"\naddresses = []\n', "queue[0].addresses: List should have"),
        (
            '[[queue]]\nname="A"\naddresses=["a@x.test"]\n[[queue]]\nname="B"\naddresses=["a@x.test"]\n',
            "queue: address 'a@x.test' belongs to two queues",
        ),
        ("[system\nid = 1\n", "not valid TOML"),
        ('[database]\nbusy_timeout_ms = "soon"\n', "database.busy_timeout_ms"),
    ],
)
def test_bad_config_names_key_and_problem(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.load(f)
    assert message in str(err.value)
    assert str(err.value).startswith(str(f))


def test_cli_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('[system]\nticket_number = "sequential"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "otrs_mailgate.admin.cli", "--config", str(f), "ticket", "list"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("otrs-mailgate: config error: ")
    assert "system.ticket_number" in lines[0]


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(config_mod.ConfigError, match="no such file"):
        config_mod.load(tmp_path / "nope.toml")
