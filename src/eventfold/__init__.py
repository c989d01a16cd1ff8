"""eventfold: event sourcing and CQRS for Python."""

from eventfold.store import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    connect,
)

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "EventStore",
    "NewEvent",
    "RecordedEvent",
    "StreamAppend",
    "connect",
]
