"""The outbox relay: the event store's log is the outbox. The relay reads it
in global order from where it got to and publishes each event to the bus,
batch by batch, waiting for the bus to acknowledge every message before it
moves its checkpoint.

Order and no loss, also across crashes:

- A batch is published with ``expected_last_seq``: the bus stores a message
  only if the stream's last sequence is the one the relay expects, so what is
  stored is always an in-order prefix of the batch, never a later event
  without an earlier one.
- On start, and after any failure, the relay reads the stream's last message
  (its ``Eventfold-Position`` header) and resumes after it, or from its
  checkpoint if that is further (a category-filtered relay). Events published
  but not yet checkpointed when it died are therefore not published again.
- Every message carries ``Nats-Msg-Id`` = the event id, so even a re-publish
  the above cannot prevent (two relays racing) is dropped by the bus within
  its duplicate window, and consumers drop it by event id after that."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import msgspec

from eventfold.errors import (
    BusError,
    ConfigurationError,
    EventfoldError,
    InvalidArgument,
    StoreError,
)
from eventfold.messaging.api import Bus, Message
from eventfold.messaging.topology import Topology
from eventfold.messaging.wire import event_message, position_of
from eventfold.observability import tracing
from eventfold.observability.tracing import trace_of
from eventfold.store.api import EventReader, RecordedEvent
from eventfold.subscriptions.checkpoints import CheckpointStore
from eventfold.subscriptions.subscription import read_batch, wait_or_stop

log = logging.getLogger("eventfold.messaging")


class Relay:
    """Publish ``store``'s log to ``bus`` (``topology.events_stream``).

    ``checkpoints`` remembers the last published position under ``name``
    (default ``relay:<stream>``). ``batch_size`` events are read and published
    at a time; ``poll_interval`` bounds how long it waits for new events
    between checks; after a bus failure it waits ``retry_delay`` seconds
    (doubling up to ``max_retry_delay``) and re-synchronises with the stream."""

    def __init__(
        self,
        store: EventReader,
        bus: Bus,
        topology: Topology,
        *,
        checkpoints: CheckpointStore,
        name: str | None = None,
        batch_size: int = 256,
        categories: Sequence[str] | None = None,
        poll_interval: float = 1.0,
        retry_delay: float = 0.1,
        max_retry_delay: float = 2.0,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgument("batch_size must be an int >= 1", argument="batch_size")
        self.store = store
        self.bus = bus
        self.topology = topology
        self.checkpoints = checkpoints
        self.stream = topology.events_stream
        self.name = name or f"relay:{self.stream}"
        self.batch_size = batch_size
        self.categories = list(categories) if categories is not None else None
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.position = 0
        """The last position published (and acknowledged) so far."""
        self.published = 0
        """Messages this relay has had acknowledged."""
        self.failures = 0
        self.caught_up = asyncio.Event()
        self._last_seq = 0
        self._synced = False
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def _sync(self) -> None:
        """Find where the stream stands: its last sequence and the position
        of the last event in it."""
        info = await self.bus.ensure_stream(self.topology.events_spec())
        tail = 0
        if info.last_seq:
            last = await self.bus.get(self.stream, info.last_seq)
            if last is not None:
                found = position_of(last.headers)
                if found is None:
                    raise ConfigurationError(
                        f"stream {self.stream!r} holds a message without a position "
                        f"(#{info.last_seq}, {last.subject}): only the relay may publish to it",
                        setting="prefix",
                    )
                tail = found
        stored = await self.checkpoints.load(self.name)
        self.position = max(stored, tail)
        self._last_seq = info.last_seq
        self._synced = True

    async def run(self, *, until_caught_up: bool = False) -> None:
        """Publish until ``stop()`` (or, with ``until_caught_up``, until
        everything visible in the store now has been published)."""
        self._stop.clear()
        delay = self.retry_delay
        while not self._stop.is_set():
            try:
                if not self._synced:
                    await self._sync()
                short = await self._step()
            except (BusError, StoreError, OSError) as exc:
                # The bus or the store is away: wait, then find out again where
                # the stream stands (a failed batch may be partly stored).
                self.failures += 1
                self._synced = False
                log.warning("relay %s: %s; retrying in %.2fs", self.name, exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
                continue
            delay = self.retry_delay
            if short:
                self.caught_up.set()
                if until_caught_up:
                    return
                await wait_or_stop(self.store, self.position, self.poll_interval, self._stop)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _step(self) -> bool:
        records, scanned, short = await read_batch(
            self.store, self.position, limit=self.batch_size, categories=self.categories
        )
        if records:
            spans, messages = self._traced(
                [event_message(self.topology, r) for r in records], records
            )
            try:
                acks = await self.bus.publish(
                    self.stream, messages, expected_last_seq=self._last_seq
                )
            finally:
                for span in spans:
                    if span is not None:
                        span.end()
            self._last_seq = acks[-1].seq
            self.published += sum(1 for a in acks if not a.duplicate)
        if scanned > self.position:
            self.position = scanned
            try:
                await self.checkpoints.save(self.name, scanned)
            except EventfoldError as exc:
                # The stream's tail says how far we got: a lost checkpoint only
                # means a slower start next time.
                log.warning("relay %s: checkpoint not saved: %s", self.name, exc)
        return short

    def _traced(
        self, messages: list[Message], records: list[RecordedEvent]
    ) -> tuple[list[Any], list[Message]]:
        """Each message with a trace context in its headers: a ``send`` span's,
        child of the event's trace, when spans are recorded; else the
        event's own, as its metadata carries it."""
        spans: list[Any] = []
        out = []
        for message, record in zip(messages, records, strict=True):
            trace = trace_of(record.metadata)
            span = tracing.start_span(
                f"send {self.stream}",
                kind="producer",
                parent=trace,
                attributes={
                    "messaging.system": "nats",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": self.stream,
                    "messaging.message.id": str(record.event_id),
                    "eventfold.stream_id": record.stream_id,
                    "eventfold.event.type": record.type,
                    "eventfold.position": record.position,
                },
            )
            if span is not None:
                spans.append(span)
                trace = tracing.carrier_of(span)
            if trace:
                message = msgspec.structs.replace(message, headers={**message.headers, **trace})
            out.append(message)
        return spans, out
