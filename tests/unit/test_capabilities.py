"""Store capabilities: declared by each backend, asked for by Protocol, passed
through exactly by wrappers, and never found by looking for a method."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

import eventfold
from eventfold import AuditingStore, Codec, Decider, EncryptingStore, EventRegistry, Repository
from eventfold.compliance import verify
from eventfold.errors import UnsupportedCapability
from eventfold.repository import SnapshotPolicy
from eventfold.serialization.keys import MemoryKeyStore
from eventfold.store import (
    CAPABILITIES,
    ChainLink,
    ChainReader,
    DataRow,
    DCBStore,
    DelegatingStore,
    Inspector,
    MemoryStore,
    NewEvent,
    RecordedEvent,
    ReplicaReads,
    SnapshotStore,
    SQLReader,
    StreamDataReader,
    StreamLifecycle,
    capability,
    require,
)

SRC = Path(eventfold.__file__).parent


class Counted(msgspec.Struct, frozen=True):
    n: int


registry = EventRegistry()
registry.add(Counted, "Counted")
codec = Codec(registry)
total: Decider[Any, Counted, int] = Decider(lambda c, s: [], lambda s, e: s + e.n, int)


class UndeclaredChain(MemoryStore):
    """Has every chain method (inherited) but declares no capability at all."""

    capabilities: ClassVar[frozenset[type]] = frozenset()


async def test_a_capability_is_what_the_store_declares_not_what_it_has() -> None:
    store = MemoryStore()
    assert capability(store, ChainReader) is store
    assert capability(store, SQLReader) is None
    assert require(store, Inspector) is store
    with pytest.raises(UnsupportedCapability) as info:
        require(store, StreamDataReader)
    assert (info.value.store, info.value.capability) == ("MemoryStore", "StreamDataReader")
    assert "MemoryStore does not offer StreamDataReader" in str(info.value)
    quiet = UndeclaredChain()
    assert hasattr(quiet, "read_chain")
    assert capability(quiet, ChainReader) is None
    with pytest.raises(UnsupportedCapability):
        await verify(require(quiet, ChainReader))


async def test_every_backend_declares_its_capabilities(tmp_path: Path) -> None:
    async with eventfold.connect(f"sqlite:///{tmp_path / 'e.db'}") as sqlite:
        # Everything but reads on replicas (one file has none).
        assert sqlite.capabilities == frozenset(CAPABILITIES) - {ReplicaReads}
    assert MemoryStore().capabilities == {
        SnapshotStore,
        ChainReader,
        Inspector,
        DCBStore,
        StreamLifecycle,
    }


async def test_a_wrapper_passes_exactly_its_inner_stores_capabilities(tmp_path: Path) -> None:
    memory = MemoryStore()
    for wrapper in (
        DelegatingStore(memory),
        AuditingStore(memory, required=()),
        DelegatingStore(DelegatingStore(memory)),
    ):
        assert wrapper.capabilities == memory.capabilities
    # Encryption seals a payload to its stream and version, which an event
    # appended without a stream has only once it is stored: no DCB.
    encrypting = EncryptingStore(memory, registry, MemoryKeyStore())
    assert encrypting.capabilities == memory.capabilities - {DCBStore}
    wrapped = DelegatingStore(memory)
    with pytest.raises(UnsupportedCapability):
        await wrapped.sql("SELECT 1")
    with pytest.raises(UnsupportedCapability):
        [page async for page in wrapped.read_stream_data("a-1")]
    async with eventfold.connect(f"sqlite:///{tmp_path / 'e.db'}") as sqlite:
        assert DelegatingStore(sqlite).capabilities == sqlite.capabilities
        assert EncryptingStore(sqlite, registry, MemoryKeyStore()).capabilities == (
            sqlite.capabilities - {DCBStore}
        )


async def test_a_wrapper_passes_only_what_it_lists() -> None:
    class NoChain(DelegatingStore):
        passes = frozenset(CAPABILITIES) - {ChainReader}

    store = NoChain(MemoryStore())
    assert store.capabilities == {SnapshotStore, Inspector, DCBStore, StreamLifecycle}
    with pytest.raises(UnsupportedCapability):
        [link async for link in store.read_chain()]
    assert await store.stats() is not None


def test_a_wrapper_that_changes_records_must_change_fold_rows_too() -> None:
    with pytest.raises(TypeError, match="on_read_data"):

        class Upper(DelegatingStore):
            async def on_read(self, record: RecordedEvent) -> RecordedEvent:
                return record

    class UpperAll(DelegatingStore):
        async def on_read(self, record: RecordedEvent) -> RecordedEvent:
            return record

        async def on_read_data(
            self, stream_id: str, first_version: int, rows: list[DataRow]
        ) -> list[DataRow]:
            return rows

    class UpperRecordsOnly(DelegatingStore):
        passes = frozenset(CAPABILITIES) - {StreamDataReader}

        async def on_read(self, record: RecordedEvent) -> RecordedEvent:
            return record

    assert UpperAll and UpperRecordsOnly


class CountingPages(DelegatingStore):
    """A wrapper that counts the fast fold pages read through it."""

    pages = 0

    async def on_read_data(
        self, stream_id: str, first_version: int, rows: list[DataRow]
    ) -> list[DataRow]:
        self.pages += 1
        return rows


async def test_the_repository_folds_through_a_declared_fast_path(tmp_path: Path) -> None:
    async with eventfold.connect(f"sqlite:///{tmp_path / 'e.db'}") as sqlite:
        await sqlite.append("a-1", [codec.encode(Counted(i)) for i in range(7000)])
        counting = CountingPages(sqlite)
        loaded = await Repository(counting, total, codec).load("a-1")
        assert (loaded.state, loaded.version) == (sum(range(7000)), 7000)
        assert counting.pages == 7  # 1,000 rows a page on SQLite
        slow = await Repository(counting, total, codec).load("a-1", as_of=dt.datetime.now(dt.UTC))
        assert slow.version == 7000 and counting.pages == 7  # as of a time: records


async def test_a_snapshot_policy_needs_a_store_that_keeps_snapshots() -> None:
    class NoSnapshots(DelegatingStore):
        passes = frozenset(CAPABILITIES) - {SnapshotStore}

    store = NoSnapshots(MemoryStore())
    Repository(store, total, codec)  # fine without a policy
    with pytest.raises(UnsupportedCapability, match="SnapshotStore"):
        Repository(store, total, codec, snapshots=SnapshotPolicy(every=10, state_type=int))


async def test_a_wrapped_store_reads_its_chain_and_can_be_inspected() -> None:
    memory = MemoryStore()
    store = AuditingStore(memory, required=())
    await store.append("order-1", [NewEvent("Placed", b"{}")])
    assert [s.stream_id for s in await store.list_streams()] == ["order-1"]
    assert (await store.stats()).events == 1
    links: list[ChainLink] = [link async for link in store.read_chain()]
    assert links == [link async for link in memory.read_chain()]


def _capability_methods() -> set[str]:
    names: set[str] = set()
    for kind in CAPABILITIES:
        names |= {n for n in vars(kind) if not n.startswith("_")}
    return names


def test_nothing_finds_a_capability_by_looking_for_it() -> None:
    """No getattr/hasattr on a capability's method, no isinstance against a
    capability Protocol, anywhere in eventfold (the conformance suite's
    check that a declared capability is implemented aside)."""
    methods = "|".join(sorted(_capability_methods()))
    probes = re.compile(
        rf"(?:getattr|hasattr)\([^)]*[\"'](?:{methods})[\"']"
        rf"|isinstance\([^)]*\b(?:{'|'.join(k.__name__ for k in CAPABILITIES)})\b"
    )
    allowed = {"testing/conformance/support.py"}
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative in allowed:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if probes.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []
