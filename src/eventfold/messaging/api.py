"""The bus contract: a few records and three small Protocols.

A ``Bus`` holds named streams of messages, each message numbered by a
sequence (1, 2, 3 … per stream, in the order they were stored). Publishing
waits for the bus to acknowledge each message as stored; ``expected_last_seq``
makes a batch land in order or not at all past the first failure. A
``Puller`` is a durable consumer: it hands out ``Delivery`` objects that must
be acknowledged, and hands a message out again if it is not acknowledged
within ``ack_wait`` seconds.

Two implementations: ``InProcessBus`` (memory, for the embedded default and
tests) and ``JetStreamBus`` (NATS JetStream)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import msgspec

MSG_ID = "Nats-Msg-Id"
"""The header carrying a message's id: the bus drops a second message with
the same id within the stream's duplicate window."""


class Message(msgspec.Struct, frozen=True):
    """A message to publish. ``msg_id`` makes a re-publish a no-op within the
    stream's duplicate window."""

    subject: str
    data: bytes
    headers: dict[str, str] = {}
    msg_id: str | None = None


class PublishAck(msgspec.Struct, frozen=True):
    """The bus stored the message as ``seq`` (``duplicate``: it already held it)."""

    stream: str
    seq: int
    duplicate: bool = False


class StoredMessage(msgspec.Struct, frozen=True):
    subject: str
    data: bytes
    headers: dict[str, str]
    seq: int


class StreamInfo(msgspec.Struct, frozen=True):
    """``identity`` tells apart two incarnations of a stream with the same
    name (a stream deleted and created again starts its sequences anew)."""

    name: str
    identity: str
    first_seq: int
    last_seq: int
    messages: int


class StreamSpec(msgspec.Struct, frozen=True):
    """A stream to create if missing. ``work_queue``: a message is removed
    once acknowledged (a command queue); otherwise messages are kept
    (``max_age`` seconds, 0 = for ever). ``replicas``: copies kept by a
    clustered bus. ``duplicate_window``: how long message ids are remembered."""

    name: str
    subjects: tuple[str, ...]
    work_queue: bool = False
    replicas: int = 1
    duplicate_window: float = 120.0
    max_age: float = 0.0


class ConsumerSpec(msgspec.Struct, frozen=True):
    """A durable consumer. A delivery not acknowledged within ``ack_wait``
    seconds is handed out again, at most ``max_deliver`` times in all (-1:
    no limit); at most ``max_ack_pending`` are out unacknowledged at once."""

    durable: str
    ack_wait: float = 30.0
    max_deliver: int = -1
    max_ack_pending: int = 1000
    filter_subject: str | None = None


class Delivery(Protocol):
    """One message handed out by a durable consumer."""

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def seq(self) -> int:
        """The message's sequence in its stream."""
        ...

    @property
    def attempt(self) -> int:
        """1 for the first delivery, 2 for the first redelivery …"""
        ...

    @property
    def pending(self) -> int:
        """Messages still waiting for this consumer after this one."""
        ...

    async def ack(self) -> None:
        """Done: never hand it out again."""
        ...

    async def nak(self, delay: float | None = None) -> None:
        """Not done: hand it out again (after ``delay`` seconds)."""
        ...

    async def term(self) -> None:
        """Never hand it out again, although it was not processed (poison)."""
        ...

    async def in_progress(self) -> None:
        """Still working on it: restart its ``ack_wait``."""
        ...


class Puller(Protocol):
    async def fetch(self, batch: int, timeout: float) -> Sequence[Delivery]:
        """Up to ``batch`` deliveries, redeliveries first; waits at most
        ``timeout`` seconds for the first one (empty if none came)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class Bus(Protocol):
    durable: bool
    """Whether stored messages outlive this process (JetStream: yes)."""

    async def ensure_stream(self, spec: StreamSpec) -> StreamInfo:
        """Create the stream if it is missing; its state either way."""
        ...

    async def stream_info(self, stream: str) -> StreamInfo: ...

    async def publish(
        self,
        stream: str,
        messages: Sequence[Message],
        *,
        expected_last_seq: int | None = None,
    ) -> list[PublishAck]:
        """Store ``messages`` in order and return their acknowledgements.
        With ``expected_last_seq``, message ``i`` is stored only if the
        stream's last sequence is then ``expected_last_seq + i``: the
        messages stored are always a prefix of the batch, in order. Raises
        ``PublishFailed`` carrying the acknowledgements received."""
        ...

    async def get(self, stream: str, seq: int) -> StoredMessage | None:
        """The message stored as ``seq`` (None if there is none)."""
        ...

    async def puller(self, stream: str, spec: ConsumerSpec) -> Puller:
        """A durable consumer of ``stream`` (created if missing)."""
        ...

    async def delete_stream(self, stream: str) -> None:
        """Remove ``stream``, its messages and its consumers (nothing if it
        does not exist)."""
        ...

    async def close(self) -> None: ...
