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
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from otrs_mailgate.entry import outcomes
from otrs_mailgate.entry.outcomes import Reply
from otrs_mailgate.ingest.pipeline import Item, Pipeline
from otrs_mailgate.store import db

log = logging.getLogger("otrs_mailgate.entry.committer")
# A batch is parsed and stored whole; past this many bytes the next mail waits for the
# next batch, so big mails are taken one or a few at a time and the memory a batch
# needs stays near the bytes still waiting (issue 28). Small mail is never held back.
MAX_BATCH_BYTES = 8 * 1024 * 1024
# A batch stored for longer than this lets another committer take the mail waiting
# (a commit takes milliseconds; a lock or a huge mail may take seconds).
STALL_S = 0.25


@dataclass
class _Job:
    raw: bytes
    recipients: list[str]
    sender: str
    future: asyncio.Future[list[Reply]]


class GroupCommitter:
    def __init__(self, pipeline: Pipeline, *, workers: int = 1, max_batch: int = 200) -> None:
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.workers = workers
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="commit")
        self._tasks: list[asyncio.Task[None]] = []
        self._gathering = asyncio.Lock()
        self._storing: dict[object, float] = {}  # batches being stored: since when
        self._stored = asyncio.Event()  # set when one is done
        self.batches = 0
        self.committed = 0
        # Told after each batch, with the number of outbox rows it committed (0 after
        # a failed batch): the daemon wakes a sender only when there is mail to send.
        self.on_commit: list[Callable[[int], None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.workers)]

    async def submit(self, raw: bytes, recipients: list[str], sender: str) -> list[Reply]:
        future: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
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

    async def _turn(self) -> None:
        """Wait until no batch is being stored, or every one that is has taken STALL_S.
        With several committers, mail that comes while a batch commits gathers for the
        next one instead of being split among idle committers: four of them split ten
        sessions' mail on PostgreSQL into batches of two or three, each paying a
        transaction's fixed work and all of them the GIL (issue 31: 222-299 mails/s
        and 2.7-3.5 ms CPU a mail, against 318-440/s and 1.7-2.4 ms with one at a
        time).  A batch that hangs (a lock, a slow disk, a huge mail) still lets the
        others through once it has taken STALL_S."""
        loop = asyncio.get_running_loop()
        while self._storing:
            wait = max(self._storing.values()) + STALL_S - loop.time()
            if wait <= 0:
                return
            self._stored.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stored.wait(), wait)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        carried: _Job | None = None  # taken, but it would have made the batch too big
        while True:
            async with self._gathering:  # one committer at a time takes mail
                batch = [carried or await self._queue.get()]
                carried = None
                await self._turn()
                size = len(batch[0].raw)
                while len(batch) < self.max_batch and not self._queue.empty():
                    job = self._queue.get_nowait()
                    if size + len(job.raw) > MAX_BATCH_BYTES:  # big mail: one batch at a time
                        carried = job
                        break
                    batch.append(job)
                    size += len(job.raw)
                token = object()
                self._storing[token] = loop.time()
            try:
                results, queued = await loop.run_in_executor(self._executor, self._commit, batch)
            except Exception as exc:
                temporary = isinstance(exc, db.TemporaryFailure)
                if not temporary:
                    log.exception("batch of %d failed", len(batch))
                detail = f"database: {exc}" if temporary else "internal error"
                results = [[outcomes.tempfail(r, detail) for r in job.recipients] for job in batch]
                queued = 0
            finally:
                del self._storing[token]
                self._stored.set()
            for job, outcome in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(outcome)
                self._queue.task_done()
            for callback in self.on_commit:
                callback(queued)

    def _commit(self, batch: list[_Job]) -> tuple[list[list[Reply]], int]:
        """In a worker thread: one transaction for the whole batch."""
        done = self.pipeline.deliver_batch(
            [Item(job.raw, list(job.recipients), job.sender) for job in batch]
        )
        self.batches += 1
        self.committed += len(batch)
        return [[outcomes.lmtp(x) for x in answers] for answers in done], done.queued
