"""Group commit with several committers (issue 31): mail that comes while a batch is
being stored gathers for the next batch instead of being split among idle committers,
and a batch that hangs lets the others through once it has taken STALL_S."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from otrs_mailgate.entry import committer as committer_mod
from otrs_mailgate.entry.committer import GroupCommitter
from otrs_mailgate.ingest.pipeline import Pipeline
from otrs_mailgate.store.models import Article

from helpers import count, mail

HOT = "hotline@example.com"


def _slowed(pipeline: Pipeline, pause: Any) -> list[int]:
    """Batch sizes, in order; each batch sleeps pause(n) seconds in its thread first."""
    sizes: list[int] = []
    real = pipeline.deliver_batch

    def deliver_batch(items: Any) -> Any:
        sizes.append(len(items))
        time.sleep(pause(len(sizes)))
        return real(items)

    pipeline.deliver_batch = deliver_batch  # type: ignore[method-assign]
    return sizes


def test_mail_waits_for_the_batch_in_flight_instead_of_being_split(pipeline: Pipeline) -> None:
    sizes = _slowed(pipeline, lambda n: 0.5)

    async def scenario() -> list[Any]:
        c = GroupCommitter(pipeline, workers=4)
        c.start()
        first = asyncio.create_task(c.submit(mail("first"), [HOT], "a@customer.test"))
        await asyncio.sleep(0.05)  # the first batch is being stored
        rest = []
        for i in range(9):  # as sessions deliver: one after the other, not all at once
            rest.append(
                asyncio.create_task(c.submit(mail(f"mail {i}"), [HOT], f"c{i}@customer.test"))
            )
            await asyncio.sleep(0.01)
        replies = await asyncio.gather(first, *rest)
        await c.stop()
        return replies

    replies = asyncio.run(scenario())
    assert sizes == [1, 9], sizes  # not 1, 1, 1, 7 over four committers
    assert all(r.code == 250 for [r] in replies), replies
    assert count(pipeline, Article) == 10


def test_a_hanging_batch_lets_the_next_one_through_after_the_stall_time(
    pipeline: Pipeline,
) -> None:
    sizes = _slowed(pipeline, lambda n: 3.0 if n == 1 else 0.0)

    async def scenario() -> tuple[float, float, list[Any]]:
        c = GroupCommitter(pipeline, workers=4)
        c.start()
        t0 = time.monotonic()
        slow = asyncio.create_task(c.submit(mail("slow"), [HOT], "a@customer.test"))
        await asyncio.sleep(0.05)
        fast_reply = await c.submit(mail("fast"), [HOT], "b@customer.test")
        fast_at = time.monotonic() - t0
        slow_reply = await slow
        slow_at = time.monotonic() - t0
        await c.stop()
        return fast_at, slow_at, [fast_reply, slow_reply]

    fast_at, slow_at, replies = asyncio.run(scenario())
    assert committer_mod.STALL_S <= fast_at < 2.0 < slow_at, (fast_at, slow_at)
    assert sizes == [1, 1]
    assert all(r.code == 250 for [r] in replies), replies
    assert count(pipeline, Article) == 2


def test_one_committer_alone_behaves_as_before(pipeline: Pipeline) -> None:
    """workers=1 (SQLite's default): batches follow each other, nothing waits on itself."""
    sizes = _slowed(pipeline, lambda n: 0.1)

    async def scenario() -> list[Any]:
        c = GroupCommitter(pipeline, workers=1)
        c.start()
        replies = await asyncio.gather(
            *(c.submit(mail(f"m{i}"), [HOT], f"c{i}@customer.test") for i in range(5))
        )
        await c.stop()
        return replies

    replies = asyncio.run(scenario())
    assert sum(sizes) == 5 and all(r.code == 250 for [r] in replies)
    assert count(pipeline, Article) == 5
