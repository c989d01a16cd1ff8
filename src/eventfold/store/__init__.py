"""The store contract and its backends."""

from eventfold.store.api import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    EventReader,
    EventStore,
    EventWriter,
    ExpectedVersion,
    JsonText,
    NewEvent,
    RecordedEvent,
    Snapshot,
    SnapshotStore,
    StreamAppend,
    StreamState,
)
from eventfold.store.checks import category_of, validate_stream_id
from eventfold.store.memory import MemoryStore
from eventfold.store.url import connect, register_backend

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "EventReader",
    "EventStore",
    "EventWriter",
    "ExpectedVersion",
    "JsonText",
    "MemoryStore",
    "NewEvent",
    "RecordedEvent",
    "Snapshot",
    "SnapshotStore",
    "StreamAppend",
    "StreamState",
    "category_of",
    "connect",
    "register_backend",
    "validate_stream_id",
]
