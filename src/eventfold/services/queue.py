"""Asynchronous commands: accepted now, handled by a pool of workers.

``CommandQueue.accept`` validates a command, records it ``pending`` in the
outcome store (with the request) and puts it on the bus's command queue (a
JetStream work queue, or the in-process bus), keyed by its command id; the
caller answers 202 with that id. ``CommandWorkers`` take commands off the
queue, handle them with the idempotency key of the command (the client's
key, or ``command:<id>``), record the outcome and only then acknowledge.

A worker killed mid-command never acknowledged it: the bus hands it out
again after ``ack_wait``; handled again with the same key it writes nothing
new, and its outcome (the version and position it first landed at) is
recorded. A command whose outcome is already recorded is acknowledged
without running. So every accepted command takes effect once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import msgspec

from eventfold.domain.events import Metadata
from eventfold.errors import (
    BusError,
    EventfoldError,
    IdempotencyKeyReused,
    InvalidArgument,
    StoreError,
    UnknownCommand,
)
from eventfold.messaging.api import Bus, ConsumerSpec, Delivery, Message
from eventfold.messaging.consumer import fetch_or_stop
from eventfold.messaging.topology import Topology
from eventfold.observability import tracing
from eventfold.services.commands import CommandBus, Prepared, new_command_id, now_text
from eventfold.services.records import CommandError, CommandOutcome, StoredOutcome
from eventfold.store.checks import NOT_JSON

log = logging.getLogger("eventfold.services")


class QueuedCommand(msgspec.Struct, frozen=True):
    """A command on the queue (the message body)."""

    command_id: str
    name: str
    stream_id: str
    body: msgspec.Raw
    idempotency_key: str | None = None
    expected_version: int | None = None
    metadata: Metadata | None = None
    accepted_at: str = ""


_decoder = msgspec.json.Decoder(QueuedCommand)


def repository_key(queued: QueuedCommand) -> str:
    """The idempotency key a queued command is handled with."""
    return queued.idempotency_key or f"command:{queued.command_id}"


class CommandQueue:
    """Accepts commands for the workers (see the module docstring)."""

    def __init__(self, commands: CommandBus, bus: Bus, topology: Topology) -> None:
        self.commands = commands
        self.bus = bus
        self.topology = topology
        self._ready = False

    async def setup(self) -> None:
        if not self._ready:
            await self.bus.ensure_stream(self.topology.commands_spec())
            self._ready = True

    async def accept(self, prepared: Prepared) -> CommandOutcome:
        """Record the command as pending and queue it; its outcome (pending).
        With an idempotency key already used, the first command's outcome
        (pending or done) and nothing queued anew. Raises ``BusError`` if
        the queue cannot take it (the command stays pending: resend it with
        its key, or ``requeue_pending`` queues it again)."""
        outcomes = self.commands.outcomes
        key = prepared.idempotency_key
        if key is not None:
            existing = await outcomes.by_key(key)
            if existing is not None:
                return await self._existing(existing, prepared)
        command_id = new_command_id()
        accepted = now_text()
        queued = QueuedCommand(
            command_id=command_id,
            name=prepared.name,
            stream_id=prepared.stream_id,
            body=msgspec.Raw(prepared.body),
            idempotency_key=key,
            expected_version=prepared.expected_version,
            metadata=prepared.metadata,
            accepted_at=accepted,
        )
        request = msgspec.json.encode(queued)
        pending = CommandOutcome(
            command_id=command_id,
            command=prepared.name,
            status="pending",
            stream_id=prepared.stream_id,
            idempotency_key=key,
            accepted_at=accepted,
        )
        stored = await outcomes.add(StoredOutcome(pending, prepared.fingerprint, request))
        if stored.outcome.command_id != command_id:  # another request with the key won
            return await self._existing(stored, prepared)
        await self._enqueue(command_id, prepared.name, request)
        return pending

    async def _existing(self, existing: StoredOutcome, prepared: Prepared) -> CommandOutcome:
        key = prepared.idempotency_key
        assert key is not None
        if existing.fingerprint and existing.fingerprint != prepared.fingerprint:
            raise IdempotencyKeyReused(key, existing.outcome.command)
        if not existing.outcome.done and existing.request is not None:
            # Queue it again in case it never made it (the bus drops a duplicate).
            await self._enqueue(
                existing.outcome.command_id, existing.outcome.command, existing.request
            )
        return existing.outcome

    async def _enqueue(self, command_id: str, name: str, request: bytes) -> None:
        await self.setup()
        message = Message(
            self.topology.command_subject(name),
            request,
            headers=tracing.carrier(),
            msg_id=command_id,
        )
        await self.bus.publish(self.topology.commands_stream, [message])

    async def requeue_pending(self, *, older_than: float, limit: int = 1000) -> int:
        """Queue again the pending commands accepted more than ``older_than``
        seconds ago (a queue that lost them: an in-process bus after a
        restart, or a publish that failed). Returns how many."""
        count = 0
        for stored in await self.commands.outcomes.pending(older_than=older_than, limit=limit):
            if stored.request is None:
                continue
            await self._enqueue(stored.outcome.command_id, stored.outcome.command, stored.request)
            count += 1
        return count


class CommandWorkers:
    """``concurrency`` workers handling queued commands (see the module
    docstring). ``ack_wait``: seconds before a command a worker holds
    without progress goes to another worker (a busy worker extends it);
    a command failing on store or bus errors is retried up to
    ``max_deliver`` deliveries, then recorded as failed."""

    def __init__(
        self,
        commands: CommandBus,
        bus: Bus,
        topology: Topology,
        *,
        concurrency: int = 2,
        durable: str = "eventfold-workers",
        ack_wait: float = 30.0,
        max_deliver: int = 10,
        fetch_timeout: float = 1.0,
        retry_delay: float = 0.5,
    ) -> None:
        if concurrency < 1:
            raise InvalidArgument("concurrency must be >= 1", argument="concurrency")
        self.commands = commands
        self.bus = bus
        self.topology = topology
        self.concurrency = concurrency
        self.durable = durable
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver
        self.fetch_timeout = fetch_timeout
        self.retry_delay = retry_delay
        self.handled = 0
        self.redelivered = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Run the workers until ``stop()``."""
        self._stop.clear()
        await self.bus.ensure_stream(self.topology.commands_spec())
        tasks = [
            asyncio.create_task(self._worker(n), name=f"eventfold-worker-{n}")
            for n in range(self.concurrency)
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _worker(self, number: int) -> None:
        spec = ConsumerSpec(
            durable=self.durable,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=max(64, 4 * self.concurrency),
        )
        puller = None
        while not self._stop.is_set():
            try:
                if puller is None:
                    puller = await self.bus.puller(self.topology.commands_stream, spec)
                for delivery in await fetch_or_stop(puller, 1, self.fetch_timeout, self._stop):
                    await self.handle(delivery)
            except (BusError, StoreError, OSError) as exc:
                log.warning("worker %d: %s", number, exc)
                if puller is not None:
                    await puller.close()
                    puller = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.retry_delay)
        if puller is not None:
            await puller.close()

    async def handle(self, delivery: Delivery) -> None:
        """Handle one queued command and acknowledge it once its outcome is
        recorded, in a span continuing the trace of the request that queued it."""
        attributes = {
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": self.topology.commands_stream,
            "messaging.consumer.group.name": self.durable,
            "messaging.message.id": str(delivery.seq),
        }
        with tracing.span(
            f"process {self.topology.commands_stream}",
            kind="consumer",
            attributes=attributes,
            parent=dict(delivery.headers),
        ):
            await self._handle(delivery)

    async def _handle(self, delivery: Delivery) -> None:
        try:
            queued = _decoder.decode(delivery.data)
        except NOT_JSON as exc:
            log.error("queue message #%d is not a command (%s): dropped", delivery.seq, exc)
            await delivery.term()
            return
        if delivery.attempt > 1:
            self.redelivered += 1
        outcomes = self.commands.outcomes
        found = await outcomes.get(queued.command_id)
        if found is not None and found.outcome.done:
            await delivery.ack()
            return
        heartbeat = asyncio.create_task(self._heartbeat(delivery))
        try:
            outcome = await self._run(queued)
        except (StoreError, BusError, OSError) as exc:
            if self.max_deliver > 0 and delivery.attempt >= self.max_deliver:
                outcome = _failed(queued, CommandError(type(exc).__name__, str(exc)))
            else:
                log.warning("command %s: %s; retrying", queued.command_id, exc)
                await delivery.nak(self.retry_delay * delivery.attempt)
                return
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await outcomes.complete(outcome)
        await delivery.ack()
        self.handled += 1

    async def _run(self, queued: QueuedCommand) -> CommandOutcome:
        try:
            prepared = self.commands.prepare(
                queued.name,
                bytes(queued.body),
                idempotency_key=queued.idempotency_key,
                expected_version=queued.expected_version,
                metadata=queued.metadata,
            )
        except (UnknownCommand, InvalidArgument) as exc:
            return _failed(queued, CommandError(type(exc).__name__, str(exc)), status="invalid")
        except EventfoldError as exc:
            return _failed(queued, CommandError(type(exc).__name__, str(exc)))
        outcome = await self.commands.run(prepared, queued.command_id, key=repository_key(queued))
        return msgspec.structs.replace(outcome, accepted_at=queued.accepted_at)

    async def _heartbeat(self, delivery: Delivery) -> None:
        """Tell the bus this worker is still on it, so it is not handed out again."""
        while True:
            await asyncio.sleep(max(0.05, self.ack_wait / 3))
            with contextlib.suppress(Exception):
                await delivery.in_progress()


def _failed(
    queued: QueuedCommand, error: CommandError, *, status: str = "failed"
) -> CommandOutcome:
    return CommandOutcome(
        command_id=queued.command_id,
        command=queued.name,
        status="invalid" if status == "invalid" else "failed",
        stream_id=queued.stream_id,
        idempotency_key=queued.idempotency_key,
        error=error,
        accepted_at=queued.accepted_at,
        completed_at=datetime.now(UTC).isoformat(),
    )
