"""Group commit: concurrent deliveries share one transaction, each answered after it commits.

Sessions hand their message to submit(); a committer task takes everything that
is waiting and stores it with Pipeline.deliver_batch (one transaction, a savepoint
per message and recipient, so one bad message cannot spoil the others) in a worker
thread, commits once, and only then resolves every waiting session.  While one
batch commits the next one gathers, so the fsync is paid once per batch instead
of once per mail, and the event loop never waits for the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from otrs_mailgate.ingest.pipeline import Conflict, Failed, Item, Pipeline, Result, UnknownRecipient
from otrs_mailgate.mail.parse import NotAMail
from otrs_mailgate.store import db

log = logging.getLogger("otrs_mailgate.entry.committer")


@dataclass
class Outcome:
    recipient: str
    code: int
    reply: str
    ticket: str = ""
    detail: str = ""

    @classmethod
    def tempfail(cls, recipient: str, detail: str) -> Outcome:
        return cls(recipient, 451, f"451 4.3.0 <{recipient}>: try again later", "", detail)


@dataclass
class _Job:
    raw: bytes
    recipients: list[str]
    sender: str
    future: asyncio.Future[list[Outcome]]


class GroupCommitter:
    def __init__(self, pipeline: Pipeline, *, workers: int = 1, max_batch: int = 200) -> None:
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.workers = workers
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="commit")
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0
        self.committed = 0
        self.on_commit: list[Callable[[], None]] = []  # e.g. wake the outbox sender

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.workers)]

    async def submit(self, raw: bytes, recipients: list[str], sender: str) -> list[Outcome]:
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(raw, recipients, sender, future))
        return await future

    async def drain(self) -> None:
        """Wait until every submitted job is answered (for a graceful stop)."""
        await self._queue.join()

    async def stop(self) -> None:
        await self.drain()
        for task in self._tasks:
            task.cancel()
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await loop.run_in_executor(self._executor, self._commit, batch)
            except Exception as exc:
                temporary = isinstance(exc, db.TemporaryFailure)
                if not temporary:
                    log.exception("batch of %d failed", len(batch))
                detail = f"database: {exc}" if temporary else "internal error"
                results = [[Outcome.tempfail(r, detail) for r in job.recipients] for job in batch]
            for job, outcome in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(outcome)
                self._queue.task_done()
            for callback in self.on_commit:
                callback()

    def _commit(self, batch: list[_Job]) -> list[list[Outcome]]:
        """In a worker thread: one transaction for the whole batch."""
        done = self.pipeline.deliver_batch(
            [Item(job.raw, list(job.recipients), job.sender) for job in batch]
        )
        self.batches += 1
        self.committed += len(batch)
        return [[_outcome(x) for x in outcomes] for outcomes in done]


def _outcome(x: Result | Failed) -> Outcome:
    """The LMTP reply for one recipient."""
    if isinstance(x, Result):
        verb = "already stored" if x.status == "duplicate" else "stored"
        reply = f"250 2.0.0 <{x.recipient}> {verb} in ticket {x.ticket_number}"
        if x.status == "ignored" or not x.ticket_number:
            reply = f"250 2.0.0 <{x.recipient}> accepted: {'; '.join(x.notes)}"
        return Outcome(x.recipient, 250, reply, x.ticket_number, x.status)
    r, error = x.recipient, x.error
    if isinstance(error, NotAMail):
        return Outcome(r, 550, f"550 5.6.0 <{r}>: not a mail message: {error}", "", "not-a-mail")
    if isinstance(error, UnknownRecipient):
        return Outcome(r, 550, f"550 5.1.1 <{r}>: unknown queue address")
    if isinstance(error, Conflict):
        return Outcome.tempfail(r, "conflict")
    return Outcome.tempfail(r, f"internal error {type(error).__name__}")
