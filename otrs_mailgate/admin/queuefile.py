"""`queue add`: queues live in the config file (their addresses feed the Postfix maps).

Adding one appends a [[queue]] table to the TOML file, which is valid wherever
the file ends, and checks the result with the same validation as `serve`
before it replaces the file; nothing is written when the new file would not load.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from otrs_mailgate.config import schema as config_mod


def add(path: Path, name: str, addresses: list[str], language: str, display_name: str) -> None:
    """Append a queue to the config file at path; ConfigError (file untouched) if invalid."""
    old = path.read_text(encoding="utf-8")
    lines = ["", "[[queue]]", f"name = {json.dumps(name)}"]
    lines.append("addresses = [" + ", ".join(json.dumps(a) for a in addresses) + "]")
    if language:
        lines.append(f"language = {json.dumps(language)}")
    if display_name:
        lines.append(f"display_name = {json.dumps(display_name)}")
    new = old.rstrip("\n") + "\n" + "\n".join(lines) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".otrs-mailgate-", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new)
        config_mod.load(tmp)  # the same checks as the daemon's; raises ConfigError
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
