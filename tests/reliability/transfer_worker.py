"""A process-manager process for the kill tests: runs the bank-transfer
manager (eventfold.examples.transfers) in 8 keyed lanes until every
requested transfer is completed or failed, then exits 0.

    python -m tests.reliability.transfer_worker STORE_URL CHECKPOINTS_URL [KILL]

KILL makes the process SIGKILL itself at an exact point: ``append:N`` just
after the N-th append of a step committed (its checkpoint not yet saved),
``save:N`` just after the N-th checkpoint save. ``EVENTFOLD_TEST_SLOW``
(seconds) slows each step so that kills at random times land mid-run."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import eventfold
from eventfold.examples.transfers import audit, repositories, transfer_manager
from eventfold.subscriptions import RetryPolicy, open_checkpoints

LANES = 8


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Counting:
    """Calls ``die`` on the ``n``-th call of ``method`` on ``target``."""

    def __init__(self, target: Any, method: str, n: int | None, slow: float = 0.0) -> None:
        self.calls = 0
        inner = getattr(target, method)

        async def counted(*args: Any, **kw: Any) -> Any:
            if slow:
                await asyncio.sleep(slow)
            result = await inner(*args, **kw)
            self.calls += 1
            if self.calls == n:
                die()
            return result

        setattr(target, method, counted)


async def open_transfers(store: Any) -> int:
    """Transfers requested and not yet completed or failed."""
    return (await audit(store)).open


async def main(store_url: str, checkpoints_url: str, kill: str | None) -> None:
    what, _, count = (kill or "").partition(":")
    n = int(count) if count else None
    slow = float(os.environ.get("EVENTFOLD_TEST_SLOW", "0") or 0)
    checkpoints = open_checkpoints(checkpoints_url)
    async with eventfold.connect(store_url) as store:
        accounts, transfers, codec = repositories(store)
        Counting(store, "append", n if what == "append" else None, slow)
        Counting(checkpoints, "save", n if what == "save" else None)
        manager = transfer_manager(accounts, transfers)
        retry = RetryPolicy(attempts=5, backoff=0.01)
        subscription = manager.subscribe(store, codec, checkpoints, lanes=LANES, retry=retry)
        while await open_transfers(store):
            await subscription.run(until_caught_up=True)
            at_head = subscription.position >= await store.head_position()
            if at_head and await open_transfers(store):  # events were skipped
                sys.exit("transfers left open with the checkpoint at the head")
    await checkpoints.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
