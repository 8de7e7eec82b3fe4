"""`import PATH`: an mbox file, a Maildir, a folder of .eml files, or one .eml file.

Every message goes through the same pipeline as mail from Postfix, in batches
of one transaction each (group commit, as in the daemon), so an interrupted
import resumes without duplicates: what was committed is recognised by its
dedup key (headers without trace fields, body) and recipient.
"""

from __future__ import annotations

import itertools
import mailbox
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from otrs_mailgate.entry import outcomes
from otrs_mailgate.ingest.pipeline import Failed, Item, Outcome, Pipeline, Result
from otrs_mailgate.store.db import TemporaryFailure


@dataclass
class Summary:
    imported: int = 0
    duplicates: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    new_tickets: int = 0
    stopped: str = ""  # why the import stopped early (database unavailable)
    temporary: int = 0  # failures that may pass on another run (a conflict, a bug)

    @property
    def exit_code(self) -> int:
        """0 all taken; 75 (EX_TEMPFAIL) when another run may take what is missing, as
        for the pipe entry; 1 when only final refusals (not a mail, no queue) remain."""
        if self.stopped or self.temporary:
            return outcomes.EX_TEMPFAIL
        return 1 if self.failed else 0

    def as_dict(self) -> dict[str, object]:
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "failed": [{"message": w, "reason": r} for w, r in self.failed],
            "new_tickets": self.new_tickets,
            "stopped": self.stopped,
            "temporary": self.temporary,
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


BATCH = 100


def run(
    pipeline: Pipeline,
    items: Iterator[tuple[str, bytes]],
    *,
    queue: str | None = None,
    recipient: str | None = None,
    progress: Callable[[int], None] = lambda n: None,
    batch: int = BATCH,
) -> Summary:
    """Import in batches of one transaction each; a summary counts only what committed."""
    summary = Summary()
    while chunk := list(itertools.islice(items, batch)):
        labels = [label for label, _ in chunk]
        try:
            done = pipeline.deliver_batch(
                [Item(raw, [recipient], None, queue, imported=True) for _, raw in chunk]
            )
        except TemporaryFailure as exc:
            summary.stopped = (
                f"database unavailable at {labels[0]}: {exc}; run the import again to resume"
            )
            break
        for label, [outcome] in zip(labels, done, strict=True):
            _count(summary, label, outcome)
        progress(len(chunk))
    return summary


def _count(summary: Summary, label: str, outcome: Result | Failed) -> None:
    if isinstance(outcome, Result):
        if outcome.status is Outcome.DUPLICATE:
            summary.duplicates += 1
        else:
            summary.imported += 1
            summary.new_tickets += int(outcome.new_ticket)
        return
    summary.failed.append((label, outcomes.import_line(outcome)))
    summary.temporary += outcome.outcome.temporary
