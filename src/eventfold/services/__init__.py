"""The services: the command side (a command bus with idempotency keys,
asynchronous commands on a queue with workers, outcomes by id), the query
side (named queries, histories, states as of a time, each answer with its
freshness, read-your-writes by position, a cache), the two HTTP apps
(Litestar, OpenAPI at ``/schema``) and the wiring that runs them
(``Runtime``, ``serve``; ``eventfold serve`` on the command line).

The HTTP apps need the ``http`` extra; they are imported on first use."""

from eventfold.services.cache import QueryCache
from eventfold.services.commands import (
    CommandBus,
    CommandRoute,
    Commands,
    IdempotencyKeyReused,
    InvalidCommand,
    Prepared,
    UnknownCommand,
)
from eventfold.services.outcomes import (
    MemoryOutcomeStore,
    OutcomeStore,
    SQLOutcomeStore,
    open_outcomes,
    register_outcome_store,
)
from eventfold.services.queries import (
    EventView,
    FreshnessInfo,
    HistoryAnswer,
    NamedQuery,
    NoStateView,
    Queries,
    QueryAnswer,
    QueryService,
    StateAnswer,
    StatusAnswer,
    UnknownQuery,
)
from eventfold.services.queue import CommandQueue, CommandWorkers, QueuedCommand
from eventfold.services.records import CommandError, CommandOutcome, Status, StoredOutcome
from eventfold.services.runtime import Runtime, ServeConfig, ServiceDefinition

__all__ = [
    "CommandBus",
    "CommandError",
    "CommandOutcome",
    "CommandQueue",
    "CommandRoute",
    "CommandWorkers",
    "Commands",
    "EventView",
    "FreshnessInfo",
    "HistoryAnswer",
    "IdempotencyKeyReused",
    "InvalidCommand",
    "MemoryOutcomeStore",
    "NamedQuery",
    "NoStateView",
    "OutcomeStore",
    "Prepared",
    "Queries",
    "QueryAnswer",
    "QueryCache",
    "QueryService",
    "QueuedCommand",
    "Runtime",
    "SQLOutcomeStore",
    "ServeConfig",
    "ServiceDefinition",
    "StateAnswer",
    "Status",
    "StatusAnswer",
    "StoredOutcome",
    "UnknownCommand",
    "UnknownQuery",
    "command_app",
    "open_outcomes",
    "query_app",
    "register_outcome_store",
    "serve",
]


def __getattr__(name: str) -> object:
    # The HTTP apps need litestar and uvicorn (the 'http' extra): import on first use.
    if name == "command_app":
        from eventfold.services.http_commands import command_app

        return command_app
    if name == "query_app":
        from eventfold.services.http_queries import query_app

        return query_app
    if name == "serve":
        from eventfold.services.server import serve

        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
