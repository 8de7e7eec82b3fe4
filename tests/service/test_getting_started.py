"""docs/getting-started.md, run as written (issue 32): its `sh` blocks in order, in a
scratch directory, against a private Postfix that knows nothing of us yet; the mail
sent at the end must become a ticket and its acknowledgement reach the customer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from cli_helpers import ROOT
from helpers import make_config
from lmtp_helpers import free_port
from postfix_helpers import instance, require_postfix, wait_for

PAGE = ROOT / "docs" / "getting-started.md"


def blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)


def test_the_page_has_the_whole_set_up() -> None:
    script = "\n".join(blocks())
    for step in ("init", "postfix-config --write", "postmap", "reload", "swaks", "doctor"):
        assert step in script, step


def test_getting_started_runs_as_written(tmp_path: Path) -> None:
    require_postfix()
    # the Postfix as the site had it: the customer's domain delivered, nothing of ours
    before = make_config("sqlite:///unused")
    with instance(before, ["customer@customer.test"], ours=False) as mx:
        env = dict(
            os.environ,
            ETC=str(tmp_path / "etc"), STATE=str(tmp_path / "state"),
            POSTFIX=str(mx.config_dir), SMTP_PORT=str(mx.port),
            LMTP_PORT=str(free_port()), MILTER_PORT=str(free_port()), WEB_PORT=str(free_port()),
            OTRS=str(Path(sys.executable).parent / "otrs-mailgate"),
        )  # fmt: skip
        env.pop("OTRS_MAILGATE_CONFIG", None)
        script = "set -euo pipefail\n" + "\n".join(blocks())
        done = subprocess.run(
            ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=300,
            cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr + mx.log()
        assert "Printer on fire" in done.stdout  # `ticket list` showed the ticket
        acks = wait_for(lambda: mx.inbox("customer"), 60, "the acknowledgement")
        assert "Printer on fire" in str(acks[0]["Subject"])
        assert "FAIL" not in done.stdout  # the doctor found nothing broken
