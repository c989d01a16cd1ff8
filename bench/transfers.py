"""The held-out bank-transfer workload: the transfer process manager
(eventfold.examples.transfers) in 1 lane and in 8, on SQLite and PostgreSQL.

Accounts are opened and the transfers requested first (not timed); then the
manager runs until every transfer is completed or failed. Reported:
transfers settled per second, how many completed and failed, and whether
every step took effect exactly once (``audit``: each completed transfer
withdrew and deposited once, a failed one neither, no money made or lost).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import eventfold
from bench.backends import Backend
from eventfold.examples.transfers import Open, Request, audit, repositories, transfer_manager
from eventfold.subscriptions import MemoryCheckpointStore, RetryPolicy

ACCOUNTS = 100
BALANCE = 1_000


def run(backend: Backend, lanes: int, transfers: int, seed: int = 5) -> dict[str, Any]:
    return asyncio.run(_run(backend, lanes, transfers, seed))


async def _run(backend: Backend, lanes: int, transfers: int, seed: int) -> dict[str, Any]:
    if backend.kind == "sqlite":
        url = f"sqlite:///{backend.sqlite_path(f'ef_transfers_{lanes}')}"
    else:
        url = f"{backend.pg_url}?schema={backend.pg_schema(f'ef_transfers_{lanes}')}"
    rng = random.Random(seed)
    async with await eventfold.connect(url) as store:
        accounts, requests, codec = repositories(store)
        await asyncio.gather(
            *(accounts.handle(f"account-a{a}", Open(BALANCE)) for a in range(ACCOUNTS))
        )
        batch = []
        for t in range(transfers):
            source, target = rng.sample(range(ACCOUNTS), 2)
            request = Request(f"t{t}", f"a{source}", f"a{target}", rng.randint(1, 400))
            batch.append(requests.handle(f"transfer-t{t}", request))
            if len(batch) == 50:
                await asyncio.gather(*batch)
                batch = []
        await asyncio.gather(*batch)
        manager = transfer_manager(accounts, requests)
        subscription = manager.subscribe(
            store,
            codec,
            MemoryCheckpointStore(),
            lanes=lanes,
            batch_size=200,
            retry=RetryPolicy(attempts=10, backoff=0.001),
        )
        started = time.perf_counter()
        while True:
            await subscription.run(until_caught_up=True)
            if subscription.position >= await store.head_position():
                break
        elapsed = time.perf_counter() - started
        found = await audit(store)
    return {
        "lanes": lanes,
        "transfers": transfers,
        "seconds": elapsed,
        "transfers_per_s": transfers / elapsed,
        "completed": found.completed,
        "failed": found.failed,
        "open": found.open,
        "exactly_once": not found.problems and found.open == 0,
        "problems": found.problems[:5],
    }
