"""Keyed lanes: events handled concurrently across keys, in order within a key.

Each event has a key (its stream by default, or what a ``key`` function
names, such as a transfer id). Events of one key wait in a queue of their
own and are handled one at a time, in the order they were put; ``lanes``
workers take turns on the keys that have an event waiting and none being
handled, so two events with the same key are never handled at once nor out
of order, while up to ``lanes`` keys progress side by side (a slow key holds
up only its own events). Handlers that append (a process manager's
commands) share commits through the store's group commit.

``watermark`` is exact: the highest position such that every event put at or
before it has been handled (or skipped past, see ``skip_to``). A checkpoint
saved at the watermark never claims an event that is not done, so after a
crash every event past it is delivered again and none before it is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from eventfold.domain.events import Envelope
from eventfold.errors import InvalidArgument
from eventfold.subscriptions.retry import RetryPolicy

Key = Callable[[Envelope[Any]], Hashable]
"""What orders events: events with equal keys are handled one after another."""
Handle = Callable[[Envelope[Any]], Awaitable[None]]
Failure = Callable[[Envelope[Any], Exception, int], BaseException]
"""``failure(envelope, cause, attempts)``: the error that stops the lanes."""


def by_stream(envelope: Envelope[Any]) -> Hashable:
    """The default key: the event's stream."""
    return envelope.stream_id


def check_lanes(lanes: object) -> int:
    if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= 1024:
        raise InvalidArgument("lanes must be an int from 1 to 1024", argument="lanes")
    return lanes


class Lanes:
    """Run ``handle`` for each envelope ``put``, in ``lanes`` concurrent lanes.

    ``put`` waits while ``window`` events are put and not done. A handler
    that raises is retried per ``retry``; when that runs out the lanes stop
    taking events, the ones being handled finish, and ``failure`` (the error
    ``failure(envelope, cause, attempts)`` built) is raised by ``put``,
    ``drain`` and ``close``. ``watermark`` starts at ``start``."""

    def __init__(
        self,
        handle: Handle,
        *,
        lanes: int,
        key: Key = by_stream,
        retry: RetryPolicy,
        failure: Failure,
        start: int,
        window: int = 1000,
    ) -> None:
        self._handle = handle
        self._key = key
        self._retry = retry
        self._failure = failure
        self._window = max(1, window)
        self._lanes = check_lanes(lanes)
        self._waiting: dict[Hashable, deque[Envelope[Any]]] = {}  # per key, in order
        self._ready: deque[Hashable] = deque()  # keys with an event waiting and none running
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._order: deque[int] = deque()  # positions put (or skipped to), ascending
        # Done and not yet passed by the watermark, counted: a log that
        # delivers an event twice puts its position twice.
        self._done: Counter[int] = Counter()
        self._changed = asyncio.Event()
        self._closing = False
        self.watermark = start
        self.failure: BaseException | None = None

    # --- feeding ----------------------------------------------------------------------

    async def put(self, envelope: Envelope[Any]) -> None:
        """Hand ``envelope`` to its key's lane (positions must ascend)."""
        while len(self._order) >= self._window and self.failure is None:
            await self._wait_change()
        self._raise_failure()
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(), name=f"eventfold-lane-{lane}")
                for lane in range(self._lanes)
            ]
        key = self._key(envelope)
        self._order.append(envelope.position)
        queue = self._waiting.get(key)
        if queue is None:  # no event of this key waiting or running
            self._waiting[key] = deque((envelope,))
            self._ready.append(key)
            self._wake.set()
        else:
            queue.append(envelope)

    def skip_to(self, position: int) -> None:
        """Everything up to ``position`` has been put: the watermark may reach
        it once the events put before are done (a filtered read looked that
        far without finding more)."""
        last = self._order[-1] if self._order else self.watermark
        if position > last:
            self._order.append(position)
            self._finished(position)

    # --- waiting ----------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Every event put is done."""
        return not self._order

    async def changed(self) -> None:
        """Wait until the watermark moves or the lanes fail."""
        await self._wait_change()

    async def drain(self) -> None:
        """Wait until every event put is done; raise the failure if any."""
        while self._order and self.failure is None:
            await self._wait_change()
        self._raise_failure()

    def stop(self) -> None:
        """Start no more events: those being handled finish, those waiting
        are dropped (they are past the watermark)."""
        self._closing = True
        self._wake.set()

    async def close(self) -> None:
        """``stop`` and wait for the events being handled. Raises the
        failure if any."""
        self.stop()
        workers, self._workers = self._workers, []
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._raise_failure()

    # --- the lanes --------------------------------------------------------------------

    async def _work(self) -> None:
        ready, waiting = self._ready, self._waiting
        while True:
            while not ready:
                if self._closing or self.failure is not None:
                    return
                self._wake.clear()
                await self._wake.wait()
            if self._closing or self.failure is not None:
                return
            key = ready.popleft()  # this worker alone runs the key now
            queue = waiting[key]
            envelope = queue[0]
            if not await self._run(envelope):
                return
            queue.popleft()
            if queue:
                ready.append(key)
                self._wake.set()
            else:
                del waiting[key]
            self._finished(envelope.position)

    async def _run(self, envelope: Envelope[Any]) -> bool:
        failures = 0
        while True:
            try:
                await self._handle(envelope)
                return True
            except Exception as exc:
                if self._closing:  # stopping: not done, delivered again later
                    return False
                failures += 1
                if self._retry.should_retry(exc, failures):
                    await asyncio.sleep(self._retry.delay(failures))
                    continue
                if self.failure is None:
                    self.failure = self._failure(envelope, exc, failures)
                    self._notify()
                return False

    def _finished(self, position: int) -> None:
        order, done = self._order, self._done
        done[position] += 1
        moved = False
        while order and done[order[0]]:
            done[order[0]] -= 1
            if not done[order[0]]:
                del done[order[0]]
            self.watermark = order.popleft()
            moved = True
        if moved:
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self) -> None:
        await self._changed.wait()

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure
