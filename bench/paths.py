"""The store's own paths, timed in one process on one backend, for comparing
two versions of eventfold: run it alternately from each tree (each with its
own ``src`` first on ``PYTHONPATH``) and compare the medians over the runs.

    python -m bench.paths sqlite
    python -m bench.paths postgres --pg-url postgresql://user@host/db

Each path runs several times and its best (lowest) wall and CPU time is kept,
so that other work on the machine moves the figures less; one JSON line is
printed: seconds, lower is better. CPU time is this process's (every thread),
not the database server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import eventfold
from bench.backends import Backend, make_tmpdir
from bench.common import NOTE, Deposited
from eventfold import Codec, Decider, EventRegistry, Repository
from eventfold.store.api import NO_STREAM, EventStore

registry = EventRegistry()
registry.register("Deposited")(Deposited)
codec = Codec(registry)
account: Decider[Any, Deposited, int] = Decider(
    decide=lambda command, state: [], evolve=lambda state, e: state + e.amount, initial_state=int
)


async def best(fn: Callable[[], Awaitable[None]], runs: int) -> tuple[float, float]:
    wall, cpu = [], []
    for _ in range(runs):
        started, used = time.perf_counter(), time.process_time()
        await fn()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    return min(wall), min(cpu)


def deposits(n: int, start: int = 0) -> list[Any]:
    return [codec.encode(Deposited(i, NOTE)) for i in range(start, start + n)]


async def paths(store: EventStore) -> dict[str, Callable[[], Awaitable[None]]]:
    for s in range(50):
        await store.append(f"acct-{s}", deposits(1000), NO_STREAM)
    await store.append("big-1", deposits(10_000), NO_STREAM)
    repo = Repository(store, account, codec)
    counter = [0]
    written = [0]  # the version of stream single-1

    async def read_all() -> None:
        async for _ in store.read_all():
            pass

    async def read_filtered() -> None:
        async for _ in store.read_all(types=["Deposited"], categories=["acct"]):
            pass

    async def read_stream() -> None:
        async for _ in store.read_stream("big-1"):
            pass

    async def load() -> None:
        await repo.load("big-1")

    async def batch() -> None:
        counter[0] += 1
        await store.append(f"batch-{counter[0]}", deposits(10_000), NO_STREAM)

    async def singles() -> None:
        for _ in range(100):
            counter[0] += 1
            await store.append("single-1", deposits(1, counter[0]), written[0])
            written[0] += 1

    async def concurrent() -> None:
        await asyncio.gather(
            *(store.append(f"c-{uuid.uuid4().hex}", deposits(1, i)) for i in range(200))
        )

    return {
        "read_all_60k": read_all,
        "read_filtered_50k": read_filtered,
        "read_stream_10k": read_stream,
        "load_10k": load,
        "batch_10k": batch,
        "single_x100": singles,
        "concurrent_200": concurrent,
    }


async def main(kind: str, pg_url: str, runs: int, only: list[str]) -> dict[str, Any]:
    directory = make_tmpdir()
    schema = f"paths_{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        url = f"sqlite:///{os.path.join(directory, 'paths.db')}"
    else:
        url = f"{pg_url}{'&' if '?' in pg_url else '?'}schema={schema}"
    out: dict[str, Any] = {"eventfold": os.path.dirname(eventfold.__file__), "backend": kind}
    try:
        async with eventfold.connect(url) as store:
            for name, fn in (await paths(store)).items():
                if not only or name in only:
                    out[f"{name}_wall"], out[f"{name}_cpu"] = await best(fn, runs)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if kind == "postgres":
            Backend("postgres", directory, pg_url).pg_drop(schema)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", choices=["sqlite", "postgres"])
    parser.add_argument("--pg-url", default=os.environ.get("EVENTFOLD_POSTGRES_URL", ""))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--only", nargs="*", default=[], help="only these paths (by name)")
    args = parser.parse_args()
    if args.backend == "postgres" and not args.pg_url:
        parser.error("postgres needs --pg-url (or EVENTFOLD_POSTGRES_URL)")
    result = asyncio.run(main(args.backend, args.pg_url, args.runs, args.only))
    print(json.dumps(result), flush=True)
