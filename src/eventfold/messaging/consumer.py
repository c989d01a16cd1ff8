"""The consumer on the query side: a durable consumer of the events stream
(explicit acknowledgements) that fills the mirror, which projections read.

Each fetched batch is taken into the mirror in one transaction; only then
are its messages acknowledged (parked ones terminated). A process killed
before that leaves them unacknowledged: the bus hands them out again and the
mirror recognises what it already has. So every event takes effect once.

The consumer reads the whole stream, unfiltered: the mirror relies on seeing
every sequence number (projections filter categories themselves)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from eventfold.errors import BusError, EventfoldError, MirrorGap, StoreError
from eventfold.messaging.api import Bus, ConsumerSpec, Delivery, Puller
from eventfold.messaging.mirror import Incoming, MirrorStore, TakenIn, mirror_headers
from eventfold.messaging.topology import Topology
from eventfold.observability import tracing

log = logging.getLogger("eventfold.messaging")


class BusConsumer:
    """Feed ``mirror`` from ``topology.events_stream`` through the durable
    consumer ``durable``. ``ack_wait``: seconds before the bus hands an
    unacknowledged message out again (after a crash, the time until the
    messages it held flow again). ``batch_size`` messages per transaction."""

    def __init__(
        self,
        bus: Bus,
        mirror: MirrorStore,
        topology: Topology,
        *,
        durable: str = "eventfold-mirror",
        batch_size: int = 256,
        ack_wait: float = 30.0,
        fetch_timeout: float = 1.0,
        retry_delay: float = 0.1,
        max_retry_delay: float = 2.0,
    ) -> None:
        self.bus = bus
        self.mirror = mirror
        self.topology = topology
        self.stream = topology.events_stream
        self.durable = durable
        self.batch_size = batch_size
        self.ack_wait = ack_wait
        self.fetch_timeout = fetch_timeout
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.bus_pending = 0
        """Messages waiting on the bus for this consumer after the last fetch."""
        self.applied = 0
        self.parked = 0
        self.failures = 0
        self.last: TakenIn | None = None
        self.idle = asyncio.Event()
        """Set while a fetch finds nothing new and no message waits for an earlier one."""
        self._stop = asyncio.Event()
        self._puller: Puller | None = None
        self._identity = ""

    def stop(self) -> None:
        self._stop.set()

    async def _connect(self) -> Puller:
        info = await self.bus.ensure_stream(self.topology.events_spec())
        self._identity = info.identity
        spec = ConsumerSpec(
            durable=self.durable,
            ack_wait=self.ack_wait,
            max_deliver=-1,  # poison is parked by the mirror, never dropped by the bus
            max_ack_pending=max(1000, 4 * self.batch_size),
        )
        return await self.bus.puller(self.stream, spec)

    async def run(self, *, until_idle: bool = False) -> None:
        """Consume until ``stop()`` (or, with ``until_idle``, until a fetch
        finds nothing and nothing waits for an earlier message)."""
        self._stop.clear()
        delay = self.retry_delay
        try:
            while not self._stop.is_set():
                try:
                    if self._puller is None:
                        self._puller = await self._connect()
                    idle = await self._step(self._puller)
                except (BusError, StoreError, OSError) as exc:
                    if isinstance(exc, MirrorGap):
                        raise
                    self.failures += 1
                    log.warning("consumer %s: %s; retrying in %.2fs", self.durable, exc, delay)
                    await self._close_puller()
                    await self._sleep(delay)
                    delay = min(delay * 2, self.max_retry_delay)
                    continue
                delay = self.retry_delay
                if idle and until_idle:
                    return
        finally:
            await self._close_puller()

    async def _close_puller(self) -> None:
        puller, self._puller = self._puller, None
        if puller is not None:
            await puller.close()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _step(self, puller: Puller) -> bool:
        started = time.time_ns()
        deliveries = await fetch_or_stop(puller, self.batch_size, self.fetch_timeout, self._stop)
        if not deliveries:
            return await self._idle()
        self.idle.clear()
        received = tracing.start_span(
            f"receive {self.stream}",
            kind="consumer",
            attributes={
                **self._attributes("receive"),
                "messaging.batch.message_count": len(deliveries),
            },
            links=[dict(d.headers) for d in deliveries] if tracing.recording() else (),
            start_time=started,
        )
        if received is not None:
            received.end()
        items = [
            Incoming(d.seq, d.subject, mirror_headers(d.headers), bytes(d.data)) for d in deliveries
        ]
        spans = self._spans(items)
        try:
            taken = await self.mirror.take_in(self.stream, self._identity, items)
        except EventfoldError as exc:
            _end(spans, None, exc)
            await self._settle(deliveries, None)
            raise
        _end(spans, taken, None)
        self.last = taken
        self.applied += taken.applied
        self.parked += taken.parked
        self.bus_pending = deliveries[-1].pending
        await self._settle(deliveries, taken)
        return False

    def _attributes(self, operation: str) -> dict[str, str]:
        return {
            "messaging.system": "nats",
            "messaging.operation.type": operation,
            "messaging.destination.name": self.stream,
            "messaging.consumer.group.name": self.durable,
        }

    def _spans(self, items: Sequence[Incoming]) -> list[tuple[int, Any]]:
        """A ``process`` span per message, child of the trace its headers
        carry (none when nothing records)."""
        if not tracing.recording():
            return []
        out = []
        for item in items:
            attributes = {**self._attributes("process"), "messaging.message.id": str(item.seq)}
            span = tracing.start_span(
                f"process {self.stream}",
                kind="consumer",
                parent=item.headers,
                attributes=attributes,
            )
            out.append((item.seq, span))
        return out

    async def _settle(self, deliveries: Sequence[Delivery], taken: TakenIn | None) -> None:
        attributes = {
            **self._attributes("settle"),
            "messaging.batch.message_count": len(deliveries),
        }
        links = [dict(d.headers) for d in deliveries]
        with tracing.span(
            f"settle {self.stream}", kind="client", attributes=attributes, links=links
        ):
            await _settle(deliveries, taken)

    async def _idle(self) -> bool:
        """Nothing came: done, unless messages wait for an earlier one, which
        is coming again (after ``ack_wait``) or is gone from the stream."""
        state = await self.mirror.source(self.stream)
        if state is not None and state.pending:
            missing = state.seq + 1
            info = await self.bus.stream_info(self.stream)
            if (
                info.identity == state.identity
                and info.last_seq >= missing
                and (missing < info.first_seq or await self.bus.get(self.stream, missing) is None)
            ):
                raise MirrorGap(self.stream, missing, state.next_waiting or info.first_seq)
            return False
        self.bus_pending = 0
        self.idle.set()
        return True


async def fetch_or_stop(
    puller: Puller, batch: int, timeout: float, stop: asyncio.Event
) -> Sequence[Delivery]:
    """``puller.fetch``, given up as soon as ``stop`` is set (what it would
    have fetched is handed out again after its ``ack_wait``)."""
    if stop.is_set():
        return []
    fetch = asyncio.ensure_future(puller.fetch(batch, timeout))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not fetch.done():
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await fetch
    if fetch.cancelled():
        return []
    return fetch.result()


def _end(spans: list[tuple[int, Any]], taken: TakenIn | None, failed: BaseException | None) -> None:
    for seq, span in spans:
        if failed is not None:
            span.record_exception(failed)
        elif taken is not None:
            span.set_attribute("eventfold.verdict", taken.verdicts.get(seq, "duplicate"))
        span.end()


async def _settle(deliveries: Sequence[Delivery], taken: TakenIn | None) -> None:
    """Acknowledge what the mirror committed (terminate what it parked); on
    failure hand everything back at once instead of after ``ack_wait``."""
    for delivery in deliveries:
        try:
            if taken is None:
                await delivery.nak()
            elif taken.verdicts.get(delivery.seq) == "parked":
                await delivery.term()
            else:
                await delivery.ack()
        except Exception as exc:  # an unsent ack only means a redelivery
            log.debug("consumer: settling #%s failed: %s", delivery.seq, exc)
