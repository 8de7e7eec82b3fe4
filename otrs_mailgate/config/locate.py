"""Where the config file is, and its raw TOML: stdlib only.

Kept apart from config.py (pydantic) so the pipe entry can find the daemon's LMTP
address without importing anything heavy: Postfix starts one process per mail.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any

ENV_PREFIX = "OTRS_MAILGATE_"
SEARCH_PATHS = (Path("otrs-mailgate.toml"), Path("/etc/otrs-mailgate/otrs-mailgate.toml"))


def find(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """--config, then $OTRS_MAILGATE_CONFIG, ./otrs-mailgate.toml, /etc/...; None: defaults."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_PREFIX + "CONFIG")
    if env:
        return Path(env)
    return next((p for p in SEARCH_PATHS if p.exists()), None)


def env_value(section: str, key: str) -> str | None:
    return os.environ.get(f"{ENV_PREFIX}{section}_{key}".upper())


def lmtp_address(explicit: str | os.PathLike[str] | None = None) -> tuple[str, int, str]:
    """(host, port, socket) of the daemon's LMTP listener, as config.py would read them."""
    path = find(explicit)
    section: dict[str, Any] = {}
    if path is not None:
        with path.open("rb") as fh:
            section = tomllib.load(fh).get("lmtp", {})
    host = env_value("lmtp", "host") or section.get("host", "127.0.0.1")
    port = int(env_value("lmtp", "port") or section.get("port", 8024))
    socket = env_value("lmtp", "socket") or section.get("socket", "")
    if socket and path is not None:
        socket = str(path.parent / socket)
    return str(host), port, str(socket)


def template_dirs(config: Any) -> list[Path]:
    """Configured folder first, then the checkout's templates/, then the installed copy."""
    dirs = []
    if config.system.templates:
        dirs.append(Path(config.system.templates))
    dirs.append(Path(__file__).resolve().parents[2] / "templates")
    dirs.append(Path(sys.prefix) / "share" / "otrs-mailgate" / "templates")
    return [d for d in dirs if d.is_dir()]
