"""The reading and projecting measurements of the scale run, each run in a
child process of its own (``run_in_child``) so that its peak resident-set
size (``ru_maxrss``) is its own: a read of the whole log, a read of random
streams, a projection's catch-up into a fresh SQLite read model, and an
export to JSON Lines. Each returns a dict of plain numbers."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from hdrh.histogram import HdrHistogram

import eventfold
from bench.common import Deposited
from bench.side_eventfold import codec
from eventfold.compliance.export import export_jsonl
from eventfold.domain.events import Envelope
from eventfold.subscriptions import Projection, ProjectionRunner, SQLiteReadModel, Tx


def peak_rss_mib() -> float:
    """This process's peak resident-set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a fresh (spawned) interpreter; its result with the
    child's peak RSS, so that no measurement inherits another's memory."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def histogram() -> HdrHistogram:
    """Latencies in microseconds, 1 us to 60 s, three significant digits."""
    return HdrHistogram(1, 60_000_000, 3)


def percentiles(h: HdrHistogram) -> dict[str, float]:
    return {
        "p50_ms": h.get_value_at_percentile(50) / 1000,
        "p99_ms": h.get_value_at_percentile(99) / 1000,
        "max_ms": h.get_max_value() / 1000,
    }


def baseline(url: str) -> dict[str, Any]:
    """The RSS of a process that imported everything and read one event."""

    async def main() -> None:
        async with await eventfold.connect(url) as store:
            async for _ in store.read_all(limit=1):
                break

    asyncio.run(main())
    return {"rss_mib": peak_rss_mib()}


def read_log(url: str) -> dict[str, Any]:
    """Read the whole log and decode every event into its typed class."""

    async def main() -> tuple[int, int, float]:
        async with await eventfold.connect(url) as store:
            count = total = 0
            decode = codec.decode
            started = time.perf_counter()
            async for record in store.read_all():
                envelope: Envelope[Deposited] = decode(record)
                total += envelope.event.amount
                count += 1
            return count, total, time.perf_counter() - started

    count, _, seconds = asyncio.run(main())
    return {
        "events": count,
        "seconds": seconds,
        "events_per_s": count / seconds,
        "rss_mib": peak_rss_mib(),
    }


def read_streams(url: str, streams: int, reads: int, seed: int) -> dict[str, Any]:
    """Read ``reads`` streams chosen at random, whole, decoded; latency per read."""

    async def main() -> tuple[int, float, HdrHistogram]:
        rng = random.Random(seed)
        h = histogram()
        events = 0
        async with await eventfold.connect(url) as store:
            started = time.perf_counter()
            for _ in range(reads):
                stream = f"account-{rng.randrange(streams)}"
                t0 = time.perf_counter()
                async for record in store.read_stream(stream):
                    codec.decode(record)
                    events += 1
                h.record_value(max(1, round((time.perf_counter() - t0) * 1e6)))
            return events, time.perf_counter() - started, h

    events, seconds, h = asyncio.run(main())
    return {
        "reads": reads,
        "events": events,
        "reads_per_s": reads / seconds,
        **percentiles(h),
        "rss_mib": peak_rss_mib(),
    }


def catch_up(url: str, read_model_path: str) -> dict[str, Any]:
    """A projection of every event (a balance per stream) caught up from
    position 0 into a fresh SQLite read model."""
    balances = Projection(
        "balances",
        version=1,
        tables={"balances": "account TEXT PRIMARY KEY, amount BIGINT NOT NULL"},
    )

    @balances.on(Deposited)
    def apply(tx: Tx, env: Envelope[Deposited]) -> None:
        tx.execute(
            "INSERT INTO {balances} (account, amount) VALUES (?, ?) "
            "ON CONFLICT (account) DO UPDATE SET amount = {balances}.amount + excluded.amount",
            (env.stream_id, env.event.amount),
        )

    async def main() -> tuple[int, float]:
        async with await eventfold.connect(url) as store:
            head = await store.head_position()
            async with SQLiteReadModel(read_model_path) as reads:
                runner = ProjectionRunner(store, reads, [balances], codec)
                started = time.perf_counter()
                await runner.catch_up()
                seconds = time.perf_counter() - started
                if await runner.position("balances") != head:
                    raise RuntimeError("the projection did not reach the head")
                result = await runner.query(
                    "balances", "SELECT count(*) FROM {balances}", freshness=False
                )
                return int(result.rows[0][0]), seconds

    try:
        accounts, seconds = asyncio.run(main())
    finally:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(read_model_path + suffix):
                os.remove(read_model_path + suffix)
    return {"accounts": accounts, "seconds": seconds, "rss_mib": peak_rss_mib()}


def export(url: str, path: str) -> dict[str, Any]:
    """``export_jsonl`` of the whole log (the file is removed afterwards)."""

    async def main() -> tuple[int, float]:
        async with await eventfold.connect(url) as store:
            started = time.perf_counter()
            count = await export_jsonl(store, path)
            return count, time.perf_counter() - started

    try:
        count, seconds = asyncio.run(main())
        size = os.path.getsize(path)
    finally:
        if os.path.exists(path):
            os.remove(path)
    return {
        "events": count,
        "seconds": seconds,
        "events_per_s": count / seconds,
        "bytes_per_event": size / count if count else 0.0,
        "rss_mib": peak_rss_mib(),
    }
