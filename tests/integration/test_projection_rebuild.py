"""Guarantee: a rebuild under concurrent queries never shows a half-built
read model. Queries keep answering from the old build until the new one has
caught up, then from the new one; every answer is one complete build."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

import eventfold
from eventfold import Codec, Envelope, EventRegistry
from eventfold.subscriptions import (
    Projection,
    ProjectionRunner,
    QueryResult,
    RetryPolicy,
    Tx,
    open_read_model,
    query_read_model,
)

registry = EventRegistry()


@registry.register("Counted")
class Counted(msgspec.Struct, frozen=True):
    amount: int


codec = Codec(registry)
STREAMS, PER_STREAM = 12, 15
SQL = "SELECT COUNT(*), SUM(events), SUM(total) FROM {totals}"


def totals(version: int) -> Projection:
    """Per stream: events and total, times the version (so builds differ)."""
    proj = Projection(
        "totals",
        version=version,
        tables={"totals": "stream TEXT PRIMARY KEY, events BIGINT NOT NULL, total BIGINT NOT NULL"},
    )

    @proj.on(Counted)
    def counted(tx: Tx, env: Envelope[Counted]) -> None:
        tx.execute(
            "INSERT INTO {totals} (stream, events, total) VALUES (?, 1, ?) ON CONFLICT (stream) "
            "DO UPDATE SET events = {totals}.events + 1, total = {totals}.total + excluded.total",
            (env.stream_id, env.event.amount * version),
        )

    return proj


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite":
        return {
            "store": f"sqlite:///{tmp_path / 'events.db'}",
            "reads": f"sqlite:///{tmp_path / 'reads.db'}",
        }
    server: str = request.getfixturevalue("postgres_url")
    schema = request.getfixturevalue("pg_schema")
    sep = "&" if "?" in server else "?"
    return {
        "store": request.getfixturevalue("pg_url"),
        "reads": f"{server}{sep}schema={schema}_reads",
    }


def answer(result: QueryResult) -> tuple[int, int, int]:
    count, events, total = result.rows[0]
    return int(count), int(events or 0), int(total or 0)


async def test_a_rebuild_under_concurrent_queries_never_shows_a_half_built_model(
    urls: dict[str, str],
) -> None:
    amounts = {f"acct-{s}": [s + i for i in range(PER_STREAM)] for s in range(STREAMS)}
    full = sum(sum(a) for a in amounts.values())
    complete = {v: (STREAMS, STREAMS * PER_STREAM, full * v) for v in (1, 2)}
    async with (
        eventfold.connect(urls["store"]) as store,
        open_read_model(urls["reads"]) as reads,
        open_read_model(urls["reads"]) as other_process,  # a second set of connections
    ):
        for stream, values in amounts.items():
            await store.append(stream, [codec.encode(Counted(a)) for a in values])

        def runner(version: int) -> ProjectionRunner:
            return ProjectionRunner(
                store, reads, [totals(version)], codec, batch_size=4, retry=RetryPolicy(1)
            )

        await runner(1).catch_up()
        seen: dict[int, set[tuple[int, int, int]]] = {}
        stop = asyncio.Event()
        queries = 0

        async def query_forever(source: Any) -> None:
            nonlocal queries
            while not stop.is_set():
                result = await source()
                seen.setdefault(result.version, set()).add(answer(result))
                queries += 1
                await asyncio.sleep(0)

        v1, v2 = runner(1), runner(2)
        tasks = [
            asyncio.create_task(query_forever(lambda: v1.query("totals", SQL))),
            asyncio.create_task(
                query_forever(lambda: query_read_model(other_process, "totals", SQL))
            ),
        ]
        await asyncio.sleep(0.01)
        first = await v1.rebuild("totals")  # same version, fresh tables
        await asyncio.sleep(0.01)
        await v2.catch_up()  # a new version: builds, then switches
        await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*tasks)
        assert first.build == 2
        final = await query_read_model(reads, "totals", SQL)
        assert (final.build, final.version) == (3, 2)

    # Every answer was a whole build: no partial counts, ever.
    assert seen[1] == {complete[1]}
    assert seen.get(2, {complete[2]}) == {complete[2]}
    assert answer(final) == complete[2]
    assert queries > 10
