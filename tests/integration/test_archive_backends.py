"""Archiving on every backend (memory, SQLite, PostgreSQL): events move to
segment files and read back (read_stream, read_all, loads) exactly as the
backend returned them before; the chain verifies across the boundary;
forget redacts archived personal fields; the store's own reads no longer
return the moved events and its versions go on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

import eventfold
from eventfold import Codec, EventRegistry
from eventfold.archive import ArchivedStore, Archiver, ArchiveRoot, Selection, verify_archive
from eventfold.compliance.chain import verify
from eventfold.serialization.crypto import REDACTED, EncryptingStore
from eventfold.serialization.keys import MemoryKeyStore
from eventfold.store.api import EventStore, NewEvent, RecordedEvent
from eventfold.store.capabilities import StreamLifecycle, require

registry = EventRegistry()


@registry.register("Registered", personal=("name",), subject="customer_id")
class Registered(msgspec.Struct, frozen=True):
    customer_id: str
    name: str


@registry.register("Noted")
class Noted(msgspec.Struct, frozen=True):
    n: int


codec = Codec(registry)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'events.db'}"}[request.param]


def _key(r: RecordedEvent) -> tuple[Any, ...]:
    data = r.data.decode() if isinstance(r.data, bytes) else r.data
    meta = r.metadata.decode() if isinstance(r.metadata, bytes) else r.metadata
    return (
        r.stream_id,
        r.version,
        r.position,
        r.event_id,
        r.type,
        data,
        meta,
        r.recorded_at,
        r.tags,
    )


async def test_archive_reads_back_and_verifies_on_each_backend(url: str, tmp_path: Path) -> None:
    async with eventfold.connect(url) as store:
        await _archive_reads_back_and_verifies(store, tmp_path)


async def _archive_reads_back_and_verifies(store: EventStore, tmp_path: Path) -> None:
    keys = MemoryKeyStore()
    writer = EncryptingStore(store, registry, keys)
    for n in range(1, 5):
        await writer.append(f"customer-{n}", [codec.encode(Registered(f"c-{n}", f"name {n}"))])
        for stream in ("order-1", "order-2"):
            await writer.append(stream, [NewEvent("Noted", b'{"n": %d}' % n, tags=("x",))])
    cutoff = datetime.now(UTC)
    await writer.append("order-1", [codec.encode(Noted(99))])
    before = [_key(r) async for r in store.read_all()]
    streams = {s: [_key(r) async for r in store.read_stream(s)] for s in ("order-1", "customer-2")}

    root = ArchiveRoot(tmp_path / "archive")
    archiver = Archiver(store, root, key=b"k", segment_events=5)
    await archiver.run(Selection(streams=("customer-1", "customer-2")))
    await archiver.run(Selection(older_than=cutoff, category="order"))

    assert [r.version async for r in store.read_stream("order-1")] == [5]
    assert [r async for r in store.read_stream("customer-2")] == []
    archived = ArchivedStore(store, root)
    assert [_key(r) async for r in archived.read_all()] == before
    for stream, records in streams.items():
        assert [_key(r) async for r in archived.read_stream(stream)] == records
        assert [_key(r) async for r in archived.read_stream(stream, backwards=True)] == records[
            ::-1
        ]
    assert (await verify(store, key=b"k")).clean
    report = await verify_archive(require(store, StreamLifecycle), root, key=b"k")
    assert report.clean and report.events == 10

    # Versions go on after the archive, and the chain with them.
    await store.append("customer-2", [codec.encode(Noted(7))], expected_version=1)
    assert (await verify(store)).clean

    reader = EncryptingStore(archived, registry, keys)
    assert await reader.forget("c-2") == 1
    names = [
        codec.decode_event(r).name  # type: ignore[attr-defined]
        async for r in reader.read_all(types=["Registered"])
    ]
    assert names == ["name 1", REDACTED, "name 3", "name 4"]
