"""A subscription reads the whole log (or some categories or types of it) from
its checkpoint on, in batches, and then keeps following it live. Catching up
and following live are one loop: read what is there after the last position,
and when a read comes back short, wait for the store to report more. So there
is no hand-over moment at which an event could be skipped or seen twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from eventfold.domain.events import Envelope
from eventfold.errors import InvalidArgument, SubscriptionFailed
from eventfold.serialization.codec import Codec
from eventfold.store.api import EventReader, RecordedEvent
from eventfold.store.routing import Route, route_reads
from eventfold.subscriptions.checkpoints import CheckpointStore
from eventfold.subscriptions.lanes import Key, Lanes, by_stream, check_lanes
from eventfold.subscriptions.retry import RetryPolicy

EventHandler = Callable[[Envelope[Any]], Awaitable[None]]


async def read_batch(
    store: EventReader,
    after: int,
    *,
    limit: int,
    categories: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
) -> tuple[list[RecordedEvent], int, bool]:
    """Up to ``limit`` events past ``after``, the position up to which the log
    has now been looked at, and whether the read came back short (the reader
    has seen everything visible). A short read covers at least every position
    up to the head read before it, so a filtered reader moves on past events
    it does not want instead of reading them again."""
    head = await store.head_position()
    records = [
        record
        async for record in store.read_all(
            from_position=after + 1, categories=categories, types=types, limit=limit
        )
    ]
    short = len(records) < limit
    scanned = records[-1].position if records else after
    if short:
        scanned = max(scanned, head)
    return records, scanned, short


async def wait_or_stop(store: EventReader, after: int, timeout: float, stop: asyncio.Event) -> None:
    """Wait until an event past ``after`` is visible, ``timeout`` passes, or ``stop`` is set."""
    if stop.is_set():
        return
    waiter = asyncio.ensure_future(store.wait_for_events(after, timeout))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, stopper):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if waiter.done() and not waiter.cancelled():
            waiter.exception()  # retrieved: a failed wait shows up in the next read


class Subscription:
    """Deliver every event after the checkpoint to ``handler(envelope)``, one
    at a time in global order, then follow the log live.

    Events are read ``batch_size`` at a time and the checkpoint is saved after
    each batch (or after each event with ``checkpoint_every_event``): delivery
    is at least once, so a handler that is not naturally idempotent should key
    its writes on the event id. A handler that raises is retried per
    ``retry``; when that runs out, the checkpoint is saved at the event before
    and ``SubscriptionFailed`` names the failing event. ``categories`` and
    ``types`` are passed to ``read_all``. ``start_at="end"`` makes a
    subscription without a checkpoint skip the history. It reads the
    store's replicas where it has some (``route="primary"`` to read the
    primary; see eventfold.store.routing): ``store`` is then that view.

    With ``lanes`` above 1, events are handled concurrently across keys and
    in order within a key (``eventfold.subscriptions.lanes``): ``key(envelope)``
    names an event's key, its stream by default. The checkpoint then follows
    the lanes' watermark, saved as soon as it moves (one save at a time): the
    lowest position not yet handled in any lane, less one, so that it is
    exact whatever order the lanes finish in. A failure stops every lane,
    lets the events being handled finish, and saves the checkpoint at the
    watermark before ``SubscriptionFailed`` names the failing event."""

    def __init__(
        self,
        store: EventReader,
        codec: Codec,
        name: str,
        handler: EventHandler,
        *,
        checkpoints: CheckpointStore,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        batch_size: int = 200,
        retry: RetryPolicy | None = None,
        poll_interval: float = 1.0,
        checkpoint_every_event: bool = False,
        start_at: Literal["beginning", "end"] = "beginning",
        lanes: int = 1,
        key: Key | None = None,
        route: Route = "replica",
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgument("batch_size must be an int >= 1", argument="batch_size")
        self.lanes = check_lanes(lanes)
        self.key = key if key is not None else by_stream
        if not name:
            raise InvalidArgument("a subscription needs a name", argument="name")
        self.store = route_reads(store, route)
        self.codec = codec
        self.name = name
        self.handler = handler
        self.checkpoints = checkpoints
        self.categories = list(categories) if categories is not None else None
        self.types = list(types) if types is not None else None
        self.batch_size = batch_size
        self.retry = retry if retry is not None else RetryPolicy()
        self.poll_interval = poll_interval
        self.checkpoint_every_event = checkpoint_every_event
        self.start_at = start_at
        self.position = 0
        """The last position handled (and checkpointed) so far."""
        self.caught_up = asyncio.Event()
        """Set once a read came back short: everything visible was handled."""
        self._stop = asyncio.Event()
        self._loaded = False
        self._lanes: Lanes | None = None

    def stop(self) -> None:
        """Ask ``run`` to return after the event (in lanes: the events) it
        is handling."""
        self._stop.set()
        if self._lanes is not None:
            self._lanes.stop()

    async def run(self, *, until_caught_up: bool = False) -> None:
        """Handle events until ``stop()`` (or, with ``until_caught_up``, until
        everything visible now has been handled)."""
        self._stop.clear()
        await self._load()
        if self.lanes > 1:
            await self._run_in_lanes(until_caught_up)
            return
        while not self._stop.is_set():
            records, scanned, short = await read_batch(
                self.store,
                self.position,
                limit=self.batch_size,
                categories=self.categories,
                types=self.types,
            )
            if records:
                await self._deliver(records)
            if scanned > self.position and not self._stop.is_set():
                await self._save(scanned)
            if short:
                self.caught_up.set()
                if until_caught_up:
                    return
                await wait_or_stop(self.store, self.position, self.poll_interval, self._stop)

    async def _load(self) -> None:
        if self._loaded:
            return
        self.position = await self.checkpoints.load(self.name)
        if self.position == 0 and self.start_at == "end":
            head = await self.store.head_position()
            if head:
                await self._save(head)
        self._loaded = True

    async def _save(self, position: int) -> None:
        await self.checkpoints.save(self.name, position)
        self.position = position

    async def _deliver(self, records: list[RecordedEvent]) -> None:
        handled = self.position
        for record in records:
            if self._stop.is_set():
                break
            failures = 0
            while True:
                try:
                    await self.handler(self.codec.decode(record, unknown="raw"))
                    break
                except Exception as exc:
                    failures += 1
                    if self.retry.should_retry(exc, failures):
                        await asyncio.sleep(self.retry.delay(failures))
                        continue
                    if handled > self.position:
                        await self._save(handled)
                    raise self._failure(record, exc, failures) from exc
            handled = record.position
            if self.checkpoint_every_event:
                await self._save(handled)
        if handled > self.position:
            await self._save(handled)

    # --- in keyed lanes ---------------------------------------------------------------

    async def _run_in_lanes(self, until_caught_up: bool) -> None:
        lanes = Lanes(
            self.handler,
            lanes=self.lanes,
            key=self.key,
            retry=self.retry,
            failure=self._lane_failure,
            start=self.position,
            window=max(2 * self.batch_size, 4 * self.lanes),
        )
        self._lanes = lanes
        saver = asyncio.ensure_future(self._follow(lanes))
        read_upto = self.position
        try:
            while not self._stop.is_set():
                if saver.done():
                    saver.result()  # a failed save ends the run
                records, scanned, short = await read_batch(
                    self.store,
                    read_upto,
                    limit=self.batch_size,
                    categories=self.categories,
                    types=self.types,
                )
                for record in records:
                    if self._stop.is_set():
                        break
                    await lanes.put(self.codec.decode(record, unknown="raw"))
                else:
                    lanes.skip_to(scanned)
                    read_upto = max(read_upto, scanned)
                if not short or self._stop.is_set():
                    continue
                if lanes.idle:  # everything visible is handled
                    self.caught_up.set()
                    if until_caught_up:
                        return
                    await wait_or_stop(self.store, read_upto, self.poll_interval, self._stop)
                else:
                    # Events are being handled, and may append events this
                    # subscription reads (a process manager's next steps):
                    # read again as soon as there are some, or all is done.
                    await self._wait_for_work(lanes, read_upto)
        finally:
            self._lanes = None
            try:
                await lanes.close()
            finally:
                saver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await saver
                if lanes.watermark > self.position:
                    await self._save(lanes.watermark)

    async def _wait_for_work(self, lanes: Lanes, read_upto: int) -> None:
        """Until the lanes are idle, an event past ``read_upto`` is visible,
        ``poll_interval`` passes, or ``stop()``; the lanes' failure is raised."""
        drained = asyncio.ensure_future(lanes.drain())
        others = {
            asyncio.ensure_future(self.store.wait_for_events(read_upto, self.poll_interval)),
            asyncio.ensure_future(self._stop.wait()),
        }
        try:
            await asyncio.wait({drained, *others}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (drained, *others):
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if drained.done() and not drained.cancelled():
            drained.result()  # raises the lanes' failure

    async def _follow(self, lanes: Lanes) -> None:
        """Save the checkpoint at the lanes' watermark as it moves."""
        while True:
            if lanes.watermark > self.position:
                await self._save(lanes.watermark)
            else:
                await lanes.changed()

    def _lane_failure(
        self, envelope: Envelope[Any], exc: Exception, attempts: int
    ) -> SubscriptionFailed:
        return SubscriptionFailed(
            self.name,
            stream_id=envelope.stream_id,
            version=envelope.version,
            position=envelope.position,
            type=envelope.type,
            cause=exc,
            attempts=attempts,
        )

    def _failure(self, record: RecordedEvent, exc: Exception, attempts: int) -> SubscriptionFailed:
        return SubscriptionFailed(
            self.name,
            stream_id=record.stream_id,
            version=record.version,
            position=record.position,
            type=record.type,
            cause=exc,
            attempts=attempts,
        )
