"""Every GnuPG home a crypto test made under its tmp_path gets its gpg-agent stopped
when the test ends (gpg starts one per home; they would outlive the test run)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def stop_gpg_agents(tmp_path: Path) -> Iterator[None]:
    yield
    for home in [*tmp_path.rglob("gnupg"), *tmp_path.rglob("customer"), *tmp_path.rglob("queue")]:
        if home.is_dir() and (home / "pubring.kbx").exists():
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                           capture_output=True, check=False)  # fmt: skip
