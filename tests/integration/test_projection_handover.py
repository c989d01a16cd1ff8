"""Guarantee: from catching up to following live, under concurrent writers,
every event is handled exactly once and each stream's events in order, on
every backend, by a plain subscription and by a projection."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

import eventfold
from eventfold import Codec, Envelope, EventRegistry
from eventfold.subscriptions import (
    MemoryCheckpointStore,
    Projection,
    ProjectionRunner,
    RetryPolicy,
    Subscription,
    Tx,
    open_read_model,
)

registry = EventRegistry()


@registry.register("Written")
class Written(msgspec.Struct, frozen=True):
    writer: int
    n: int


codec = Codec(registry)
WRITERS, APPENDS, HISTORY = 4, 40, 120


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "memory":
        return {"store": "memory://", "reads": f"sqlite:///{tmp_path / 'reads.db'}"}
    if request.param == "sqlite":
        return {
            "store": f"sqlite:///{tmp_path / 'events.db'}",
            "reads": f"sqlite:///{tmp_path / 'reads.db'}",
        }
    pg_url: str = request.getfixturevalue("pg_url")
    server: str = request.getfixturevalue("postgres_url")
    schema = request.getfixturevalue("pg_schema")
    sep = "&" if "?" in server else "?"
    return {"store": pg_url, "reads": f"{server}{sep}schema={schema}_reads"}


@asynccontextmanager
async def stores(url: str) -> AsyncIterator[Callable[[], Any]]:
    """A factory of store handles: the same one for memory://, a new
    connection per writer elsewhere (as separate processes would have)."""
    opened: list[Any] = []
    shared = await eventfold.connect(url) if url.startswith("memory") else None

    async def one() -> Any:
        if shared is not None:
            return shared
        store = await eventfold.connect(url)
        opened.append(store)
        return store

    try:
        yield one
    finally:
        for store in opened:
            await store.close()
        if shared is not None:
            await shared.close()


async def write(store: Any, writer: int, appends: int, seed: int) -> int:
    """Append to the writer's own streams and a shared one; return the highest position."""
    rng = random.Random(seed)
    top = 0
    for i in range(appends):
        stream = f"w{writer}-{rng.randrange(5)}" if rng.random() < 0.6 else "shared-1"
        batch = [codec.encode(Written(writer, i * 10 + k)) for k in range(rng.randint(1, 3))]
        top = max(top, (await store.append(stream, batch)).position)
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    return top


Handled = list[tuple[str, int, int, str]]
"""(stream, version, position, event id) in the order a handler saw them."""


def check_exactly_once(handled: Handled, log: list[Any]) -> None:
    ids = [h[3] for h in handled]
    assert len(ids) == len(set(ids)), "an event was handled twice"
    assert set(ids) == {str(r.event_id) for r in log}, "an event was never handled"
    assert ids == [str(r.event_id) for r in log], "not handled in the log's order"


def check_stream_order(handled: Handled) -> None:
    versions: dict[str, list[int]] = {}
    for stream, version, _, _ in handled:
        versions.setdefault(stream, []).append(version)
    for stream, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"{stream} out of order: {seen}"


async def run_writers(open_store: Callable[[], Any]) -> int:
    """Run the writers at once; the highest position any of them wrote. (Not
    the head: on PostgreSQL a finished write can stay invisible for a moment
    while an older transaction is still open.)"""
    handles = [await open_store() for _ in range(WRITERS)]
    tops = await asyncio.gather(*(write(h, i, APPENDS, seed=i) for i, h in enumerate(handles)))
    return max(tops)


async def through_a_subscription(backend: dict[str, str]) -> tuple[Handled, list[Any]]:
    async with stores(backend["store"]) as open_store:
        reader = await open_store()
        await write(reader, 99, HISTORY // 2, seed=99)  # history to catch up on
        handled: Handled = []

        async def handler(env: Envelope[Any]) -> None:
            handled.append((env.stream_id, env.version, env.position, str(env.event_id)))
            if len(handled) % 7 == 0:
                await asyncio.sleep(0)

        sub = Subscription(
            reader,
            codec,
            "handover",
            handler,
            checkpoints=MemoryCheckpointStore(),
            batch_size=5,
            poll_interval=0.05,
        )
        writers = asyncio.create_task(run_writers(open_store))
        task = asyncio.create_task(sub.run())
        last = await writers
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while sub.position < last:
            assert loop.time() < deadline and not task.done()
            await asyncio.sleep(0.01)
        sub.stop()
        await task
        log = [r async for r in reader.read_all()]
        assert len(log) > HISTORY
        return handled, log


def seen_projection() -> Projection:
    proj = Projection(
        "seen",
        tables={
            "seen": "event_id TEXT PRIMARY KEY, stream TEXT NOT NULL, version BIGINT NOT NULL, "
            "position BIGINT NOT NULL, seq BIGINT NOT NULL",
        },
    )

    @proj.on(Written)
    def saw(tx: Tx, env: Envelope[Written]) -> None:
        # A primary key: an event applied twice fails here.
        tx.execute(
            "INSERT INTO {seen} (event_id, stream, version, position, seq) "
            "VALUES (?, ?, ?, ?, (SELECT COUNT(*) FROM {seen}) + 1)",
            (str(env.event_id), env.stream_id, env.version, env.position),
        )

    return proj


async def through_a_projection(backend: dict[str, str]) -> tuple[Handled, list[Any]]:
    async with (
        stores(backend["store"]) as open_store,
        open_read_model(backend["reads"]) as reads,
    ):
        reader = await open_store()
        await write(reader, 99, HISTORY // 2, seed=99)
        runner = ProjectionRunner(
            reader,
            reads,
            [seen_projection()],
            codec,
            batch_size=5,
            poll_interval=0.05,
            retry=RetryPolicy(attempts=1),
        )
        writers = asyncio.create_task(run_writers(open_store))
        async with runner:
            await runner.wait_for(await writers, timeout=30)
            result = await runner.query(
                "seen", "SELECT stream, version, position, event_id FROM {seen} ORDER BY seq"
            )
        assert not runner.failures
        handled = [(r[0], int(r[1]), int(r[2]), r[3]) for r in result.rows]
        return handled, [r async for r in reader.read_all()]


@pytest.mark.parametrize("through", [through_a_subscription, through_a_projection])
async def test_catch_up_to_live_hand_over_handles_every_event_once(
    backend: dict[str, str], through: Any
) -> None:
    handled, log = await through(backend)
    check_exactly_once(handled, log)


@pytest.mark.parametrize("through", [through_a_subscription, through_a_projection])
async def test_catch_up_to_live_hand_over_keeps_each_stream_in_order(
    backend: dict[str, str], through: Any
) -> None:
    handled, _ = await through(backend)
    check_stream_order(handled)
