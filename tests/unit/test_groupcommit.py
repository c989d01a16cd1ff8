"""The group committer flushes every request it accepts, whenever it arrives."""

from __future__ import annotations

import asyncio

from eventfold.store.postgres.groupcommit import GroupCommitter


async def test_a_request_submitted_as_the_last_flusher_ends_is_flushed() -> None:
    """A writer that submits again in the step its previous request is
    answered (before the finished flusher's done callbacks run) must get a
    flusher of its own: once, that request waited for ever."""

    async def run_batch(requests: list[int]) -> list[int]:
        await asyncio.sleep(0)
        return requests

    committer: GroupCommitter[int, int] = GroupCommitter(
        run_batch, size_of=lambda _: 1, max_batch=10
    )

    async def sequential_writer() -> list[int]:
        return [await committer.submit(n) for n in range(20)]

    assert await asyncio.wait_for(sequential_writer(), 10) == list(range(20))
    await committer.drain()


async def test_concurrent_writers_that_never_yield_between_appends_all_land() -> None:
    async def run_batch(requests: list[int]) -> list[int]:
        await asyncio.sleep(0)
        return requests

    committer: GroupCommitter[int, int] = GroupCommitter(
        run_batch, size_of=lambda _: 1, max_batch=3, flushers=2
    )

    async def writer(w: int) -> list[int]:
        return [await committer.submit(w * 100 + n) for n in range(50)]

    results = await asyncio.wait_for(asyncio.gather(*(writer(w) for w in range(8))), 10)
    assert results == [[w * 100 + n for n in range(50)] for w in range(8)]
