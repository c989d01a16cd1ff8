"""eventfold: event sourcing and CQRS for Python.

Events are recorded in an ordered, append-only store; state is a fold over
them. Start with ``connect(url)``, an ``EventRegistry`` for your event types,
a ``Decider`` and a ``Repository``.
"""

from eventfold.audit import AuditingStore, MissingAuditMetadata
from eventfold.domain.aggregate import Aggregate
from eventfold.domain.decider import Decider
from eventfold.domain.events import Envelope, EventRegistry, Metadata
from eventfold.errors import (
    CommandRejected,
    ConcurrencyError,
    ConfigurationError,
    DuplicateEventId,
    EventfoldError,
    InvalidArgument,
    InvalidDecision,
    InvalidPayload,
    InvalidStreamId,
    NotAnEventStore,
    SchemaVersionError,
    SerializationError,
    StoreClosed,
    StoreError,
    StoreNotFound,
    StoreTimeout,
    UnknownEventType,
    WrongExpectedVersion,
)
from eventfold.repository import Handled, Loaded, Repository, SnapshotPolicy
from eventfold.serialization.codec import Codec, RawEvent
from eventfold.serialization.crypto import REDACTED, DecryptionError, EncryptingStore
from eventfold.store import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    EventStore,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
    category_of,
    connect,
)
from eventfold.subscriptions import (
    Freshness,
    ProcessManager,
    Projection,
    ProjectionFailed,
    ProjectionRunner,
    ReadModelTimeout,
    RetryPolicy,
    SQLiteReadModel,
    Subscription,
    SubscriptionFailed,
    Tx,
)

__version__ = "0.1.0"

__all__ = [
    "ANY",
    "NO_STREAM",
    "REDACTED",
    "STREAM_EXISTS",
    "Aggregate",
    "AppendResult",
    "AuditingStore",
    "Codec",
    "CommandRejected",
    "ConcurrencyError",
    "ConfigurationError",
    "Decider",
    "DecryptionError",
    "DuplicateEventId",
    "EncryptingStore",
    "Envelope",
    "EventRegistry",
    "EventStore",
    "EventfoldError",
    "Freshness",
    "Handled",
    "InvalidArgument",
    "InvalidDecision",
    "InvalidPayload",
    "InvalidStreamId",
    "Loaded",
    "Metadata",
    "MissingAuditMetadata",
    "NewEvent",
    "NotAnEventStore",
    "ProcessManager",
    "Projection",
    "ProjectionFailed",
    "ProjectionRunner",
    "RawEvent",
    "ReadModelTimeout",
    "RecordedEvent",
    "Repository",
    "RetryPolicy",
    "SQLiteReadModel",
    "SchemaVersionError",
    "SerializationError",
    "Snapshot",
    "SnapshotPolicy",
    "StoreClosed",
    "StoreError",
    "StoreNotFound",
    "StoreTimeout",
    "StreamAppend",
    "Subscription",
    "SubscriptionFailed",
    "Tx",
    "UnknownEventType",
    "WrongExpectedVersion",
    "category_of",
    "connect",
]
