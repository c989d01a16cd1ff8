"""A store that passes every call to another one: the base for behaviour that
wraps a store (encryption, audit rules) instead of living in every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Self

from eventfold.compliance.chain import ChainLink
from eventfold.errors import StoreError
from eventfold.store.api import (
    ANY,
    AppendResult,
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
)


class DelegatingStore:
    """Forwards the whole ``EventStore`` contract to ``inner``; subclasses
    override what they change. ``append`` goes through ``append_many``."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.url = inner.url

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.inner.close()

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        (result,) = await self.append_many([StreamAppend(stream_id, events, expected_version)])
        return result

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        return await self.inner.append_many(appends)

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        async for record in self.inner.read_stream(
            stream_id,
            from_version=from_version,
            to_version=to_version,
            backwards=backwards,
            limit=limit,
        ):
            yield await self.on_read(record)

    async def read_all(
        self,
        *,
        from_position: int = 0,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        async for record in self.inner.read_all(
            from_position=from_position, categories=categories, types=types, limit=limit
        ):
            yield await self.on_read(record)

    async def on_read(self, record: RecordedEvent) -> RecordedEvent:
        """Hook for each record read; returns it unchanged here."""
        return record

    async def stream_version(self, stream_id: str) -> int:
        return await self.inner.stream_version(stream_id)

    async def head_position(self) -> int:
        return await self.inner.head_position()

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        return await self.inner.wait_for_events(after_position, timeout)

    async def read_chain(self) -> AsyncIterator[ChainLink]:
        """The inner store's hash chain, as stored (nothing decrypted)."""
        read_chain = getattr(self.inner, "read_chain", None)
        if read_chain is None:
            raise StoreError(f"{self.url}: this store keeps no hash chain")
        async for link in read_chain():
            yield link

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        await self.inner.save_snapshot(snapshot)

    async def load_snapshot(self, stream_id: str, name: str) -> Snapshot | None:
        return await self.inner.load_snapshot(stream_id, name)
