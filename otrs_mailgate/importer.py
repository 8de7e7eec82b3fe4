"""`import PATH`: an mbox file, a Maildir, a folder of .eml files, or one .eml file.

Every message goes through the same pipeline as mail from Postfix, one
transaction each, so an interrupted import resumes without duplicates: what was
committed is recognised by its (Message-ID, body hash, recipient) key.
"""

from __future__ import annotations

import mailbox
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .db import TemporaryFailure
from .ingest import Pipeline, UnknownRecipient
from .parse import NotAMail


@dataclass
class Summary:
    imported: int = 0
    duplicates: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    new_tickets: int = 0
    stopped: str = ""  # why the import stopped early (database unavailable)

    def as_dict(self) -> dict[str, object]:
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "failed": [{"message": w, "reason": r} for w, r in self.failed],
            "new_tickets": self.new_tickets,
            "stopped": self.stopped,
        }


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(5) == b"From "


def sources(path: Path) -> tuple[int, Iterator[tuple[str, bytes]]]:
    """(count, iterator of (label, raw bytes)) for whatever PATH is."""
    if path.is_dir() and all((path / d).is_dir() for d in ("cur", "new", "tmp")):
        box = mailbox.Maildir(str(path), factory=None, create=False)
        keys = sorted(box.keys())
        return len(keys), ((f"{path}/{k}", box.get_bytes(k)) for k in keys)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in (".eml", ".box", ".msg")
        )
        return len(files), ((str(p), p.read_bytes()) for p in files)
    if path.is_file() and _is_mbox(path):
        mbox = mailbox.mbox(str(path), create=False)
        keys = list(mbox.keys())
        return len(keys), ((f"{path}#{i + 1}", mbox.get_bytes(k)) for i, k in enumerate(keys))
    if path.is_file():
        return 1, iter([(str(path), path.read_bytes())])
    raise FileNotFoundError(f"{path}: no such file or folder")


def run(
    pipeline: Pipeline,
    items: Iterator[tuple[str, bytes]],
    *,
    queue: str | None = None,
    recipient: str | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> Summary:
    summary = Summary()
    for label, raw in items:
        try:
            result = pipeline.deliver_one(raw, recipient, None, queue=queue)
        except TemporaryFailure as exc:
            summary.stopped = (
                f"database unavailable at {label}: {exc}; run the import again to resume"
            )
            break
        except NotAMail as exc:
            summary.failed.append((label, f"not a mail: {exc}"))
        except UnknownRecipient as exc:
            summary.failed.append((label, f"no queue for recipient {exc}; use --queue"))
        except Exception as exc:
            summary.failed.append((label, f"internal error: {exc!r}"))
        else:
            if result.status == "duplicate":
                summary.duplicates += 1
            else:
                summary.imported += 1
                summary.new_tickets += int(result.new_ticket)
        progress(1)
    return summary
