"""The manual page (issue 32): made from the click commands, so every command is in it,
and installed with the package (share/man/man1) by the build."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import click

from otrs_mailgate.admin.cli import main
from otrs_mailgate.admin.manpage import render

from cli_helpers import ROOT


def every_command(group: click.Group, prefix: str = "otrs-mailgate") -> list[str]:
    ctx = click.Context(group)
    out = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        out.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            out += every_command(command, f"{prefix} {name}")
    return out


def test_the_page_names_every_command_and_man_reads_it(tmp_path: Path) -> None:
    page = render(main, version="test")
    for path in every_command(main):
        assert f".B {path.replace('-', chr(92) + '-')}\n" in page, path
    if shutil.which("man"):
        (tmp_path / "otrs-mailgate.1").write_text(page)
        shown = subprocess.run(
            ["man", "-l", str(tmp_path / "otrs-mailgate.1")],
            capture_output=True, text=True, env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert "otrs-mailgate ticket watch" in shown.stdout
        assert "warning" not in shown.stderr.lower()


def test_the_wheel_installs_the_page(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), "-q"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "otrs_mailgate-0.1.0.data/data/share/man/man1/otrs-mailgate.1" in names
