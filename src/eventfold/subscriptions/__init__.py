"""The query side: subscriptions over the log, projections into SQL read
models (with their checkpoints in the same transaction), rebuilds without
downtime, lag and read-your-writes, time travel, and process managers."""

from eventfold.errors import (
    ProjectionFailed,
    ProjectionNotReady,
    ProjectionSuperseded,
    ReadModelError,
    ReadModelTimeout,
    SubscriptionFailed,
    UnknownProjection,
)
from eventfold.subscriptions.builds import Build
from eventfold.subscriptions.checkpoints import (
    CheckpointStore,
    ClosableCheckpointStore,
    MemoryCheckpointStore,
)
from eventfold.subscriptions.checkpoints_sql import (
    SQLCheckpointStore,
    open_checkpoints,
    register_checkpoints,
)
from eventfold.subscriptions.freshness import (
    BuildStatus,
    Freshness,
    ProjectionStatus,
    QueryResult,
)
from eventfold.subscriptions.process_manager import ProcessContext, ProcessManager
from eventfold.subscriptions.projection import Index, Projection, ProjectionSet, Tx
from eventfold.subscriptions.queries import query_read_model
from eventfold.subscriptions.readmodel import ReadModel, open_read_model, register_read_model
from eventfold.subscriptions.readmodel_sqlite import SQLiteReadModel
from eventfold.subscriptions.retry import RetryPolicy
from eventfold.subscriptions.runner import ProjectionRunner
from eventfold.subscriptions.subscription import Subscription
from eventfold.subscriptions.timetravel import build_as_of

__all__ = [
    "Build",
    "BuildStatus",
    "CheckpointStore",
    "ClosableCheckpointStore",
    "Freshness",
    "Index",
    "MemoryCheckpointStore",
    "ProcessContext",
    "ProcessManager",
    "Projection",
    "ProjectionFailed",
    "ProjectionNotReady",
    "ProjectionRunner",
    "ProjectionSet",
    "ProjectionStatus",
    "ProjectionSuperseded",
    "QueryResult",
    "ReadModel",
    "ReadModelError",
    "ReadModelTimeout",
    "RetryPolicy",
    "SQLCheckpointStore",
    "SQLiteReadModel",
    "Subscription",
    "SubscriptionFailed",
    "Tx",
    "UnknownProjection",
    "build_as_of",
    "open_checkpoints",
    "open_read_model",
    "query_read_model",
    "register_checkpoints",
    "register_read_model",
]


def __getattr__(name: str) -> object:
    # PostgresReadModel needs psycopg (the 'postgres' extra): import it on first use.
    if name == "PostgresReadModel":
        from eventfold.subscriptions.readmodel_postgres import PostgresReadModel

        return PostgresReadModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
