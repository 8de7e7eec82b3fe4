"""`queue add` and `queue address ...`: queues live in the config file (their addresses
feed the Postfix maps), so these commands edit it.

The file is edited with tomlkit, which keeps the admin's comments and layout, and the
result is checked with the same validation as `serve` before it replaces the file;
nothing is written when the new file would not load.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomlkit

from otrs_mailgate.config import schema as config_mod


def add(path: Path, name: str, addresses: list[str], language: str, display_name: str) -> None:
    """Append a queue to the config file at path; ConfigError (file untouched) if invalid."""

    def change(doc: Any) -> None:
        table = tomlkit.table()
        table["name"] = name
        table["addresses"] = addresses
        if language:
            table["language"] = language
        if display_name:
            table["display_name"] = display_name
        queues = doc.get("queue")
        if queues is None:
            queues = tomlkit.aot()
            doc["queue"] = queues
        queues.append(table)

    _edit(path, change)


def address(path: Path, queue: str, address: str, action: str) -> str:
    """Add, retire or remove one address of a queue; what now holds, for the admin.

    retire: the address stays accepted (customers' replies to old acknowledgements,
    agents' open reply addresses) but nothing new is sent from it; remove: mail to it
    is refused from the next reload on."""
    address = address.strip().lower()
    said: list[str] = []

    def change(doc: Any) -> None:
        table = _queue(doc, queue)
        current = [str(a) for a in table.get("addresses", [])]
        retired = [str(a) for a in table.get("retired_addresses", [])]
        if action == "add":
            if address in current:
                raise config_mod.ConfigError(f"{address} is an address of {queue} already")
            retired = [a for a in retired if a != address]
            current.append(address)
            said.append(f"{address} takes mail for {queue}")
        elif action == "retire":
            if address not in current:
                raise config_mod.ConfigError(f"{address} is no current address of {queue}")
            if len(current) == 1:
                raise config_mod.ConfigError(
                    f"{address} is the only address of {queue}: add its successor first"
                )
            current.remove(address)
            retired.append(address)
            said.append(
                f"{address} is retired: mail to it is still taken and filed in {queue}; "
                f"what {queue} sends comes from {current[0]}"
            )
        else:  # remove
            if address not in current and address not in retired:
                raise config_mod.ConfigError(f"{address} is no address of {queue}")
            if current == [address]:
                raise config_mod.ConfigError(
                    f"{address} is the only address of {queue}: add its successor first"
                )
            current = [a for a in current if a != address]
            retired = [a for a in retired if a != address]
            said.append(
                f"{address} is removed: from the next reload mail to it is refused "
                "(550 5.1.1); retire it instead to keep old replies coming in"
            )
        table["addresses"] = current
        if retired:
            table["retired_addresses"] = retired
        elif "retired_addresses" in table:
            del table["retired_addresses"]

    _edit(path, change)
    return said[0]


def _queue(doc: Any, name: str) -> Any:
    for table in doc.get("queue", []):
        if table.get("name") == name:
            return table
    raise config_mod.ConfigError(f"no queue named {name!r} in the config file")


def _edit(path: Path, change: Callable[[Any], None]) -> None:
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    change(doc)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".otrs-mailgate-", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(tomlkit.dumps(doc))
        config_mod.load(tmp)  # the same checks as the daemon's; raises ConfigError
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
