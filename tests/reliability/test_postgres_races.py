"""Guarantee: appends racing on one stream from separate connections (32
separate stores, so group commit cannot serialise them) have exactly one
winner per expected version; losers get WrongExpectedVersion with the actual
version; versions stay contiguous."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from eventfold.errors import WrongExpectedVersion
from eventfold.store.api import ANY, NO_STREAM, AppendResult, ExpectedVersion
from eventfold.store.postgres import PostgresStore
from eventfold.store.url import connect
from eventfold.testing.conformance import collect, numbered, numbers

RACERS = 32


@asynccontextmanager
async def separate_stores(url: str, count: int) -> AsyncIterator[list[PostgresStore]]:
    first = await connect(url, pool_min_size=1, pool_max_size=2)  # creates the schema
    rest = await asyncio.gather(
        *(connect(url, pool_min_size=1, pool_max_size=2) for _ in range(count - 1))
    )
    stores = [first, *rest]
    try:
        yield [s for s in stores if isinstance(s, PostgresStore)]
    finally:
        for store in stores:
            await store.close()


async def race(
    stores: list[PostgresStore], stream_id: str, expected: ExpectedVersion, tag: int
) -> list[AppendResult | BaseException]:
    start = asyncio.Event()

    async def one(i: int, store: PostgresStore) -> AppendResult:
        await start.wait()
        return await store.append(stream_id, numbered(1, start=tag * 1000 + i), expected)

    tasks = [asyncio.create_task(one(i, s)) for i, s in enumerate(stores)]
    await asyncio.sleep(0.01)
    start.set()
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def split(
    outcomes: list[AppendResult | BaseException],
) -> tuple[list[AppendResult], list[BaseException]]:
    wins = [o for o in outcomes if isinstance(o, AppendResult)]
    losses = [o for o in outcomes if isinstance(o, BaseException)]
    return wins, losses


async def test_one_winner_per_expected_version(pg_url: str) -> None:
    async with separate_stores(pg_url, RACERS) as stores:
        await stores[0].append("race-1", numbered(1), NO_STREAM)
        for version in range(1, 6):
            wins, losses = split(await race(stores, "race-1", version, version))
            assert len(wins) == 1, f"{len(wins)} winners at version {version}"
            assert wins[0].version == version + 1
            assert all(isinstance(o, WrongExpectedVersion) for o in losses), losses
            assert all(
                o.actual == version + 1 for o in losses if isinstance(o, WrongExpectedVersion)
            )
        records = await collect(stores[7].read_stream("race-1"))
        assert [r.version for r in records] == list(range(1, 7))


async def test_one_creator_of_a_new_stream(pg_url: str) -> None:
    async with separate_stores(pg_url, RACERS) as stores:
        for round_ in range(3):
            stream_id = f"fresh-{round_}"
            wins, losses = split(await race(stores, stream_id, NO_STREAM, round_))
            assert len(wins) == 1
            assert wins[0].version == 1
            assert all(isinstance(o, WrongExpectedVersion) and o.actual == 1 for o in losses)
            assert await stores[3].stream_version(stream_id) == 1


async def test_racing_any_appends_all_land_with_contiguous_versions(pg_url: str) -> None:
    async with separate_stores(pg_url, RACERS) as stores:
        outcomes = await race(stores, "any-1", ANY, 0)
        wins, losses = split(outcomes)
        assert losses == []
        assert sorted(w.version for w in wins) == list(range(1, RACERS + 1))
        records = await collect(stores[0].read_stream("any-1"))
        assert [r.version for r in records] == list(range(1, RACERS + 1))
        assert sorted(numbers(records)) == list(range(RACERS))
        log = await collect(stores[1].read_all())
        assert [r.position for r in log] == sorted(w.position for w in wins)
