"""The conformance suite through the wrappers (``DelegatingStore``
subclasses): a wrapped store keeps the contract and exactly the capabilities
of the store it wraps, inspection and the hash chain included.

``EncryptingStore`` wraps SQLite (every capability but DCB, which it does
not pass: it seals a payload to a stream and version) with a registry that
marks nothing personal; ``AuditingStore`` wraps memory (no fast fold reads,
no SQL) requiring no metadata key: both then pass everything through, and
the suite checks that they do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import eventfold
from eventfold import AuditingStore, EncryptingStore, EventRegistry
from eventfold.serialization.keys import MemoryKeyStore
from eventfold.testing import (
    ChainConformance,
    DCBConformance,
    InspectorConformance,
    LifecycleConformance,
    Opening,
    SnapshotConformance,
    SQLConformance,
    StoreConformance,
    StreamDataConformance,
)


class TestEncryptingStoreOverSQLite(
    StoreConformance,
    SnapshotConformance,
    StreamDataConformance,
    ChainConformance,
    InspectorConformance,
    SQLConformance,
    LifecycleConformance,
):
    @pytest.fixture
    def open_store(self, tmp_path: Path) -> Any:
        async def make() -> EncryptingStore:
            inner = await eventfold.connect(f"sqlite:///{tmp_path / 'events.db'}")
            return EncryptingStore(inner, EventRegistry(), MemoryKeyStore())

        return lambda: Opening(make)


class TestAuditingStoreOverMemory(
    StoreConformance,
    SnapshotConformance,
    ChainConformance,
    InspectorConformance,
    DCBConformance,
    LifecycleConformance,
):
    @pytest.fixture
    def open_store(self) -> Any:
        async def make() -> AuditingStore:
            return AuditingStore(await eventfold.connect("memory://"), required=())

        return lambda: Opening(make)
