"""Group commit: concurrent submissions from one process share transactions.

Callers ``await submit(request)``. While a batch is being committed, new
requests queue up; the next free flusher takes everything queued (up to a
size limit) and runs it as one batch. ``run_batch`` returns one outcome per
request (a value or an exception) and returns only after the transaction is
committed, so a future is resolved only once its request is durable (or has
definitely failed).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

R = TypeVar("R")
T = TypeVar("T")

BatchRunner = Callable[[list[R]], Awaitable[Sequence[T | BaseException]]]


class GroupCommitter(Generic[R, T]):
    """Coalesce concurrent requests into batches run by ``run_batch``.

    ``size_of(request)`` counts toward ``max_batch`` (a request larger than the
    limit runs alone). ``flushers`` batches may be in flight at once: while one
    waits for its commit, the next one is being built and sent.
    """

    def __init__(
        self,
        run_batch: BatchRunner[R, T],
        *,
        size_of: Callable[[R], int],
        max_batch: int,
        flushers: int = 1,
    ) -> None:
        if flushers < 1 or max_batch < 1:
            raise ValueError("flushers and max_batch must be >= 1")
        self._run_batch = run_batch
        self._size_of = size_of
        self._max_batch = max_batch
        self._flushers = flushers
        self._queue: deque[tuple[R, asyncio.Future[T]]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.requests = 0

    async def submit(self, request: R) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if len(self._tasks) < self._flushers:
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    def _take(self) -> list[tuple[R, asyncio.Future[T]]]:
        batch: list[tuple[R, asyncio.Future[T]]] = []
        size = 0
        while self._queue:
            request, future = self._queue[0]
            if future.done():  # cancelled before it was sent: never written
                self._queue.popleft()
                continue
            weight = self._size_of(request)
            if batch and size + weight > self._max_batch:
                break
            self._queue.popleft()
            batch.append((request, future))
            size += weight
        return batch

    async def _flush(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                # Leave the set in the same step that found the queue empty:
                # a request submitted from now on must start a flusher of its
                # own, not wait for this one, which is about to end. (Left to
                # the done callback, a submit that runs before that callback
                # would queue a request nobody flushes.)
                me = asyncio.current_task()
                if me is not None:
                    self._tasks.discard(me)
                return
            self.batches += 1
            self.requests += len(batch)
            try:
                outcomes: Sequence[T | BaseException] = await self._run_batch(
                    [request for request, _ in batch]
                )
                if len(outcomes) != len(batch):
                    raise RuntimeError("run_batch returned the wrong number of outcomes")
            except BaseException as exc:  # the whole batch failed: every caller hears it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                    raise
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def drain(self) -> None:
        """Wait until every queued request has been run."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
