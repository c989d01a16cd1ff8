"""A bus in this process's memory, with the same contract as JetStream:
numbered streams, message-id de-duplication within a window, expected last
sequence, durable consumers with acknowledgements, redelivery after
``ack_wait``, ``max_deliver``, work queues. Nothing survives the process
(``durable = False``): the embedded default pairs it with a relay that resumes
from what the consumer has applied."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping, Sequence

from eventfold.errors import BusError, InvalidArgument, PublishFailed
from eventfold.messaging.api import (
    ConsumerSpec,
    Delivery,
    Message,
    PublishAck,
    StoredMessage,
    StreamInfo,
    StreamSpec,
)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcards: ``*`` matches one token, a final ``>`` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or (part != "*" and part != have[i]):
            return False
    return len(want) == len(have)


class _Stream:
    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.identity = uuid.uuid4().hex
        self.messages: dict[int, StoredMessage] = {}
        self.last_seq = 0
        self.ids: dict[str, tuple[int, float]] = {}
        self.consumers: dict[str, _Consumer] = {}
        self.changed = asyncio.Event()

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def info(self) -> StreamInfo:
        first = min(self.messages) if self.messages else self.last_seq + 1
        return StreamInfo(self.spec.name, self.identity, first, self.last_seq, len(self.messages))

    def seen(self, msg_id: str, now: float) -> int | None:
        entry = self.ids.get(msg_id)
        if entry is None:
            return None
        if now - entry[1] > self.spec.duplicate_window:
            del self.ids[msg_id]
            return None
        return entry[0]

    def remove(self, seq: int) -> None:
        self.messages.pop(seq, None)


class _Pending:
    __slots__ = ("attempts", "deadline")

    def __init__(self, deadline: float, attempts: int) -> None:
        self.deadline = deadline
        self.attempts = attempts


class _Delivery:
    def __init__(self, consumer: _Consumer, message: StoredMessage, attempt: int) -> None:
        self._consumer = consumer
        self._message = message
        self._attempt = attempt
        self._pending = 0

    @property
    def subject(self) -> str:
        return self._message.subject

    @property
    def data(self) -> bytes:
        return self._message.data

    @property
    def headers(self) -> Mapping[str, str]:
        return self._message.headers

    @property
    def seq(self) -> int:
        return self._message.seq

    @property
    def attempt(self) -> int:
        return self._attempt

    @property
    def pending(self) -> int:
        return self._pending

    async def ack(self) -> None:
        self._consumer.settle(self.seq, remove=self._consumer.stream.spec.work_queue)

    async def term(self) -> None:
        self._consumer.settle(self.seq, remove=False)

    async def nak(self, delay: float | None = None) -> None:
        self._consumer.retry(self.seq, delay or 0.0)

    async def in_progress(self) -> None:
        self._consumer.retry(self.seq, self._consumer.spec.ack_wait)


class _Consumer:
    def __init__(self, stream: _Stream, spec: ConsumerSpec) -> None:
        self.stream = stream
        self.spec = spec
        self.next_seq = 1
        self.pending: dict[int, _Pending] = {}

    def _wanted(self, message: StoredMessage) -> bool:
        pattern = self.spec.filter_subject
        return pattern is None or subject_matches(pattern, message.subject)

    def remaining(self) -> int:
        """Messages not handed out yet (an upper bound when filtering)."""
        return max(0, self.stream.last_seq - self.next_seq + 1)

    def settle(self, seq: int, *, remove: bool) -> None:
        self.pending.pop(seq, None)
        if remove:
            self.stream.remove(seq)

    def retry(self, seq: int, delay: float) -> None:
        entry = self.pending.get(seq)
        if entry is not None:
            entry.deadline = time.monotonic() + delay
            self.stream.wake()

    def _due(self, now: float) -> list[int]:
        limit = self.spec.max_deliver
        due = []
        for seq, entry in sorted(self.pending.items()):
            if seq not in self.stream.messages:
                del self.pending[seq]
            elif entry.deadline <= now and (limit < 0 or entry.attempts < limit):
                due.append(seq)
        return due

    def take(self, batch: int) -> list[_Delivery]:
        now = time.monotonic()
        out: list[_Delivery] = []
        for seq in self._due(now)[:batch]:
            entry = self.pending[seq]
            entry.attempts += 1
            entry.deadline = now + self.spec.ack_wait
            out.append(_Delivery(self, self.stream.messages[seq], entry.attempts))
        stream = self.stream
        while (
            len(out) < batch
            and self.next_seq <= stream.last_seq
            and len(self.pending) < self.spec.max_ack_pending
        ):
            seq = self.next_seq
            self.next_seq += 1
            message = stream.messages.get(seq)
            if message is None or not self._wanted(message):
                continue
            self.pending[seq] = _Pending(now + self.spec.ack_wait, 1)
            out.append(_Delivery(self, message, 1))
        left = self.remaining()
        for i, delivery in enumerate(reversed(out)):
            delivery._pending = left + i
        return out

    def next_due(self) -> float | None:
        limit = self.spec.max_deliver
        times = [e.deadline for e in self.pending.values() if limit < 0 or e.attempts < limit]
        return min(times) if times else None


class _Puller:
    def __init__(self, consumer: _Consumer) -> None:
        self._consumer = consumer
        self._closed = False

    async def fetch(self, batch: int, timeout: float) -> Sequence[Delivery]:
        if batch < 1:
            raise InvalidArgument("batch must be >= 1", argument="batch")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._closed:
            changed = self._consumer.stream.changed
            out = self._consumer.take(batch)
            if out:
                return out
            now = loop.time()
            wait = deadline - now
            if wait <= 0:
                return []
            due = self._consumer.next_due()
            if due is not None:
                wait = min(wait, max(0.0, due - time.monotonic()) + 0.001)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)
        return []

    async def close(self) -> None:
        self._closed = True


class InProcessBus:
    """Streams and durable consumers in memory (see the module docstring)."""

    durable = False

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._closed = False

    def _stream(self, name: str) -> _Stream:
        if self._closed:
            raise BusError("the in-process bus is closed")
        stream = self._streams.get(name)
        if stream is None:
            raise BusError(f"no stream {name!r}")
        return stream

    async def ensure_stream(self, spec: StreamSpec) -> StreamInfo:
        if self._closed:
            raise BusError("the in-process bus is closed")
        stream = self._streams.get(spec.name)
        if stream is None:
            stream = self._streams[spec.name] = _Stream(spec)
        return stream.info()

    async def stream_info(self, stream: str) -> StreamInfo:
        return self._stream(stream).info()

    async def publish(
        self,
        stream: str,
        messages: Sequence[Message],
        *,
        expected_last_seq: int | None = None,
    ) -> list[PublishAck]:
        target = self._stream(stream)
        acks: list[PublishAck] = []
        now = time.monotonic()
        for i, message in enumerate(messages):
            if not any(subject_matches(s, message.subject) for s in target.spec.subjects):
                raise PublishFailed(
                    stream, f"subject {message.subject!r} not in stream", acked=acks
                )
            if expected_last_seq is not None and target.last_seq != expected_last_seq + i:
                raise PublishFailed(stream, f"wrong last sequence: {target.last_seq}", acked=acks)
            if message.msg_id is not None:
                seq = target.seen(message.msg_id, now)
                if seq is not None:
                    acks.append(PublishAck(stream, seq, duplicate=True))
                    continue
            target.last_seq += 1
            seq = target.last_seq
            target.messages[seq] = StoredMessage(
                message.subject, message.data, dict(message.headers), seq
            )
            if message.msg_id is not None:
                target.ids[message.msg_id] = (seq, now)
            acks.append(PublishAck(stream, seq))
        if messages:
            target.wake()
        return acks

    async def get(self, stream: str, seq: int) -> StoredMessage | None:
        return self._stream(stream).messages.get(seq)

    async def puller(self, stream: str, spec: ConsumerSpec) -> _Puller:
        target = self._stream(stream)
        consumer = target.consumers.get(spec.durable)
        if consumer is None:
            consumer = target.consumers[spec.durable] = _Consumer(target, spec)
        else:
            consumer.spec = spec
        return _Puller(consumer)

    async def delete_stream(self, stream: str) -> None:
        removed = self._streams.pop(stream, None)
        if removed is not None:
            removed.wake()

    async def close(self) -> None:
        self._closed = True
        for stream in self._streams.values():
            stream.wake()
