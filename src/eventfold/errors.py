"""The one error hierarchy. Every error eventfold raises derives from
``EventfoldError`` and carries the stream, version, type or setting it is
about as attributes. Each class is defined here; the modules that raise them
also re-export the ones they raised before they lived here.

::

    EventfoldError
    +-- InvalidArgument (ValueError)
    |   +-- InvalidStreamId
    |   +-- InvalidPayload
    |   +-- MissingAuditMetadata
    |   +-- InvalidCommand
    |   +-- IdempotencyKeyReused
    +-- NotFound
    |   +-- UnknownCommand
    |   +-- UnknownQuery
    |   +-- UnknownOutcome
    |   +-- UnknownProjection (also a ReadModelError)
    |   +-- NoStateView
    |   +-- UnknownTenant
    |   +-- NotParked
    +-- ConcurrencyError
    |   +-- WrongExpectedVersion
    |   +-- ConditionFailed
    |   +-- StreamDeleted
    +-- DuplicateEventId
    +-- InvalidDecision (TypeError)
    +-- CommandRejected
    +-- SerializationError
    |   +-- UnknownEventType
    |   +-- DecryptionError
    |   +-- KeyUnwrapError
    +-- RegistrationError
    +-- ConfigurationError
    |   +-- UnsupportedCapability
    +-- StoreError
    |   +-- NotAnEventStore
    |   +-- SchemaVersionError
    |   +-- StoreNotFound
    |   +-- StoreTimeout
    |   +-- StoreClosed
    +-- ReadOnlyViolation
    +-- SubscriptionFailed
    |   +-- ProjectionFailed
    +-- ReadModelError
    |   +-- UnknownProjection (also a NotFound)
    |   +-- ProjectionNotReady
    |   +-- ProjectionSuperseded
    +-- ReadModelTimeout (TimeoutError)
    +-- BusError
    |   +-- BusUnavailable
    |   +-- PublishFailed
    |   +-- PoisonMessage
    |   +-- MirrorGap
    +-- AuthenticationFailed
    +-- PermissionDenied
    +-- TenantExists
    +-- TestServerError (RuntimeError)
        +-- PostgresServerError
        +-- NatsServerError

A name in parentheses is a second base: ``InvalidArgument`` is also a
``ValueError``, ``InvalidDecision`` a ``TypeError``, ``ReadModelTimeout`` a
``TimeoutError``. Over HTTP a
``NotFound`` answers 404, an ``InvalidArgument`` 422, a ``ConcurrencyError``
409 (see ``eventfold.services.http_common``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventfold.messaging.api import PublishAck

__all__ = [
    "AuthenticationFailed",
    "BusError",
    "BusUnavailable",
    "CommandRejected",
    "ConcurrencyError",
    "ConditionFailed",
    "ConfigurationError",
    "DecryptionError",
    "DuplicateEventId",
    "EventfoldError",
    "IdempotencyKeyReused",
    "InvalidArgument",
    "InvalidCommand",
    "InvalidDecision",
    "InvalidPayload",
    "InvalidStreamId",
    "KeyUnwrapError",
    "MirrorGap",
    "MissingAuditMetadata",
    "NatsServerError",
    "NoStateView",
    "NotAnEventStore",
    "NotFound",
    "NotParked",
    "PermissionDenied",
    "PoisonMessage",
    "PostgresServerError",
    "ProjectionFailed",
    "ProjectionNotReady",
    "ProjectionSuperseded",
    "PublishFailed",
    "ReadModelError",
    "ReadModelTimeout",
    "ReadOnlyViolation",
    "RegistrationError",
    "SchemaVersionError",
    "SerializationError",
    "StoreClosed",
    "StoreError",
    "StoreNotFound",
    "StoreTimeout",
    "StreamDeleted",
    "SubscriptionFailed",
    "TenantExists",
    "TestServerError",
    "UnknownCommand",
    "UnknownEventType",
    "UnknownOutcome",
    "UnknownProjection",
    "UnknownQuery",
    "UnknownTenant",
    "UnsupportedCapability",
    "WrongExpectedVersion",
]


class EventfoldError(Exception):
    """Root of every error raised by eventfold."""


# --- input --------------------------------------------------------------------


class InvalidArgument(EventfoldError, ValueError):
    """An argument is malformed: nothing was read or written."""

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class InvalidStreamId(InvalidArgument):
    """A stream id is empty, too long or contains forbidden characters."""

    def __init__(self, stream_id: object, reason: str) -> None:
        super().__init__(f"invalid stream id {stream_id!r}: {reason}", argument="stream_id")
        self.stream_id = stream_id
        self.reason = reason


class InvalidPayload(InvalidArgument):
    """An event's data or metadata cannot be stored as given: a number that is
    not finite, a value that would be read back as something else (bytes under
    a field typed ``Any``), nesting deeper than the limit. ``field`` names the
    value (``data.lines[2].price``); nothing was written."""

    def __init__(self, message: str, *, argument: str, event_type: str, field: str) -> None:
        super().__init__(message, argument=argument)
        self.event_type = event_type
        self.field = field


class MissingAuditMetadata(InvalidArgument):
    """An event lacks metadata the store requires; nothing was written."""

    def __init__(self, stream_id: str, event_type: str, missing: list[str]) -> None:
        super().__init__(
            f"{event_type} in stream {stream_id!r} lacks required metadata: {', '.join(missing)}",
            argument="metadata",
        )
        self.stream_id = stream_id
        self.event_type = event_type
        self.missing = missing


class InvalidCommand(InvalidArgument):
    """A command's body is not valid JSON (``malformed``) or does not fit
    its type or its rules. Nothing was written."""

    def __init__(
        self, name: str, reason: str, *, malformed: bool = False, field: str | None = None
    ) -> None:
        super().__init__(f"command {name}: {reason}", argument="body")
        self.name = name
        self.reason = reason
        self.malformed = malformed
        self.field = field
        """The body's field that does not fit (``lines[0].quantity``), if known."""


class IdempotencyKeyReused(InvalidArgument):
    """An idempotency key came back with a different command."""

    def __init__(self, key: str, first: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was first used for another command ({first})",
            argument="idempotency_key",
        )
        self.key = key
        self.first = first


# --- not found ------------------------------------------------------------------


class NotFound(EventfoldError):
    """What was asked for is not there: a command, query, outcome, projection
    or state view by that name or id. (A stream is never missing: one without
    events is at version 0 and reads as empty.)"""


class UnknownCommand(NotFound):
    """No command of that name is registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown command {name!r} (known: {', '.join(known) or 'none'})")
        self.name = name
        self.known = known


class UnknownQuery(NotFound):
    """No query of that name is declared."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown query {name!r} (known: {', '.join(known) or 'none'})")
        self.name = name
        self.known = known


class UnknownOutcome(NotFound):
    """No command with that id is known to the outcome store."""

    def __init__(self, command_id: str) -> None:
        super().__init__(f"no command {command_id!r} is known here")
        self.command_id = command_id


class NotParked(NotFound):
    """No bus message with that sequence is parked (it never was, or it was
    retried or skipped already)."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"no parked message #{seq}")
        self.seq = seq


class NoStateView(NotFound):
    """No decider is registered for a stream's category."""

    def __init__(self, stream_id: str, known: list[str]) -> None:
        super().__init__(
            f"no state is kept for stream {stream_id!r} "
            f"(categories with a state: {', '.join(known) or 'none'})"
        )
        self.stream_id = stream_id
        self.known = known


# --- concurrency and idempotency --------------------------------------------


class ConcurrencyError(EventfoldError):
    """Another writer got there first."""


def _fmt_expected(expected: object) -> str:
    name = getattr(expected, "name", None)
    return name if isinstance(name, str) else repr(expected)


class WrongExpectedVersion(ConcurrencyError):
    """The stream is not at the version the append expected."""

    def __init__(self, stream_id: str, expected: object, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r}: expected version {_fmt_expected(expected)}, "
            f"actual version {actual}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.stream_id, self.expected, self.actual))


class ConditionFailed(ConcurrencyError):
    """A conditional (DCB) append found an event matching its condition's
    query after its ``after`` position: nothing was written. ``query`` is the
    condition's query, ``after`` its position (None: from the start) and
    ``position`` the first conflicting event's."""

    def __init__(self, query: object, after: int | None, position: int) -> None:
        since = "the start" if after is None else f"position {after}"
        super().__init__(
            f"append condition failed: an event at position {position} matches "
            f"{query!r} after {since}"
        )
        self.query = query
        self.after = after
        self.position = position

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.query, self.after, self.position))


class StreamDeleted(ConcurrencyError):
    """The stream was deleted for good (a tombstone): nothing can be
    appended to it again. Nothing was written."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id!r} was deleted for good and cannot be written")
        self.stream_id = stream_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.stream_id,))


class DuplicateEventId(EventfoldError):
    """An event id is already stored with other content, or in another place."""

    def __init__(self, event_id: object, stream_id: str, reason: str) -> None:
        super().__init__(f"event id {event_id} in stream {stream_id!r}: {reason}")
        self.event_id = event_id
        self.stream_id = stream_id
        self.reason = reason


class InvalidDecision(EventfoldError, TypeError):
    """A decider's ``decide`` returned something other than a list of events
    (``None``, or a lone event instead of a list holding it). A bug in the
    decider: nothing was written."""

    def __init__(self, decide: object, command: object, returned: object) -> None:
        self.decider = _qualified(decide)
        self.command = type(command).__name__
        what = "None" if returned is None else f"a {type(returned).__name__}"
        super().__init__(
            f"decider {self.decider} returned {what} for command {self.command}: "
            "decide must return a list of events ([] for none)"
        )


def _qualified(fn: object) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{name}" if module else str(name)


class CommandRejected(EventfoldError):
    """A decider refused a command because of a business rule. Raise it (or a
    subclass) from ``decide``; nothing is written."""

    def __init__(self, message: str, *, stream_id: str | None = None) -> None:
        super().__init__(message)
        self.stream_id = stream_id


# --- encoding -------------------------------------------------------------------


class SerializationError(EventfoldError):
    """An event, metadata or state could not be encoded or decoded."""

    def __init__(self, message: str, *, event_type: str | None = None) -> None:
        super().__init__(message)
        self.event_type = event_type


class UnknownEventType(SerializationError):
    """A stored event's type name is not registered."""

    def __init__(
        self, event_type: str, *, stream_id: str | None = None, version: int | None = None
    ) -> None:
        where = f" (stream {stream_id!r} version {version})" if stream_id is not None else ""
        super().__init__(f"unknown event type {event_type!r}{where}", event_type=event_type)
        self.stream_id = stream_id
        self.version = version


class DecryptionError(SerializationError):
    """A ciphertext does not decrypt where it is: moved, altered, or the wrong key."""

    def __init__(self, message: str, *, stream_id: str, version: int, field: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.version = version
        self.field = field


class KeyUnwrapError(SerializationError):
    """A stored key could not be unwrapped: wrong master key or tampering."""


class RegistrationError(EventfoldError):
    """An event type or upcaster was registered twice or inconsistently."""


# --- stores and configuration ---------------------------------------------------


class ConfigurationError(EventfoldError):
    """A setting or URL is wrong."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class UnsupportedCapability(ConfigurationError):
    """A store was asked for an optional capability (a hash chain, inspection,
    SQL, snapshots ...) that it does not declare. ``capability`` names the
    Protocol, ``store`` the store's class."""

    def __init__(self, store: str, capability: str) -> None:
        super().__init__(f"{store} does not offer {capability}")
        self.store = store
        self.capability = capability


class StoreError(EventfoldError):
    """The backing database failed or is not usable."""


class NotAnEventStore(StoreError):
    """The database exists but is not an eventfold store (or is corrupt)."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location} is not a usable eventfold store: {reason}")
        self.location = location
        self.reason = reason


class SchemaVersionError(StoreError):
    """The store was written by a newer (or unknown) schema version."""

    def __init__(self, location: str, found: int, supported: int) -> None:
        super().__init__(
            f"{location} has schema version {found}; this eventfold supports up to {supported}"
        )
        self.location = location
        self.found = found
        self.supported = supported


class StoreNotFound(StoreError):
    """A store opened with ``create=False`` does not exist (no file, an empty
    one, no eventfold schema): nothing was created."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: no eventfold store there ({reason}); nothing was created")
        self.location = location
        self.reason = reason


class StoreTimeout(StoreError):
    """The database did not answer in time: no connection free, a lock held
    too long, a statement cancelled by its timeout. Safe to retry later (an
    append may retry with the same event ids)."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class StoreClosed(StoreError):
    """The store was used after close()."""


class ReadOnlyViolation(EventfoldError):
    """A query given to ``sql`` tried to change something, or to reach outside
    the store's tables."""


# --- the query side -------------------------------------------------------------


class SubscriptionFailed(EventfoldError):
    """A handler failed on an event (after the retry policy ran out). The
    subscription stopped; its checkpoint is at the event before this one, so a
    restart resumes with this event."""

    def __init__(
        self,
        subscription: str,
        *,
        stream_id: str,
        version: int,
        position: int,
        type: str,
        cause: BaseException,
        attempts: int = 1,
    ) -> None:
        super().__init__(
            f"{self._what} {subscription!r} failed on {type} at stream {stream_id!r} "
            f"version {version} (position {position}) after {attempts} attempt(s): "
            f"{cause.__class__.__name__}: {cause}"
        )
        self.subscription = subscription
        self.stream_id = stream_id
        self.version = version
        self.position = position
        self.type = type
        self.cause = cause
        self.attempts = attempts

    _what = "subscription"


class ProjectionFailed(SubscriptionFailed):
    """A projection's handler failed on an event; its read model and checkpoint
    hold every event before that one, and nothing of it."""

    _what = "projection"

    @property
    def projection(self) -> str:
        return self.subscription


class ReadModelError(EventfoldError):
    """A read model database is unusable or was asked for something it cannot do."""

    def __init__(self, message: str, *, projection: str | None = None) -> None:
        super().__init__(message)
        self.projection = projection


class UnknownProjection(ReadModelError, NotFound):
    """No projection of that name is declared (or stored in the read model)."""

    def __init__(self, projection: str, known: list[str] | None = None) -> None:
        listed = f" (known: {', '.join(known)})" if known else ""
        super().__init__(f"no projection named {projection!r}{listed}", projection=projection)


class ProjectionNotReady(ReadModelError):
    """The projection has no build that has caught up yet, so there is nothing to query."""

    def __init__(self, projection: str) -> None:
        super().__init__(
            f"projection {projection!r} has not caught up yet: nothing to query",
            projection=projection,
        )


class ProjectionSuperseded(ReadModelError):
    """The read model serves a newer version of this projection than the code
    running it: an old deployment must not write into it."""

    def __init__(self, projection: str, version: int, active_version: int) -> None:
        super().__init__(
            f"projection {projection!r}: this code has version {version}, the read model "
            f"already serves version {active_version}",
            projection=projection,
        )
        self.version = version
        self.active_version = active_version


class ReadModelTimeout(EventfoldError, TimeoutError):
    """A read model did not reach a position within the time allowed."""

    def __init__(self, projection: str, position: int, reached: int | None, timeout: float) -> None:
        got = "no build caught up yet" if reached is None else f"reached {reached}"
        super().__init__(
            f"projection {projection!r} did not reach position {position} within "
            f"{timeout:g}s ({got})"
        )
        self.projection = projection
        self.position = position
        self.reached = reached
        self.timeout = timeout


# --- the message bus ------------------------------------------------------------


class BusError(EventfoldError):
    """The message bus failed or refused a request."""


class BusUnavailable(BusError):
    """The bus cannot be reached (no connection, no stream leader)."""


class PublishFailed(BusError):
    """Publishing to ``stream`` failed. ``acked`` are the acknowledgements
    received for the leading messages before the failure (a prefix of the
    batch); whether later messages were stored is unknown."""

    def __init__(
        self,
        stream: str,
        reason: str,
        *,
        acked: Sequence[PublishAck] = (),
    ) -> None:
        super().__init__(f"publishing to stream {stream!r} failed: {reason}")
        self.stream = stream
        self.reason = reason
        self.acked = list(acked)


class PoisonMessage(BusError):
    """A message that can never be taken in (it is parked, not retried)."""

    def __init__(self, reason: str, *, subject: str | None = None, seq: int | None = None) -> None:
        where = f" ({subject} #{seq})" if subject is not None else ""
        super().__init__(f"poison message{where}: {reason}")
        self.reason = reason
        self.subject = subject
        self.seq = seq


class MirrorGap(BusError):
    """Messages the mirror still needs are no longer in the bus stream
    (removed by a retention limit, or the stream was purged): the read side
    must be rebuilt from the event store."""

    def __init__(self, stream: str, missing_from: int, first_available: int) -> None:
        super().__init__(
            f"stream {stream!r}: messages from sequence {missing_from} to "
            f"{first_available - 1} are gone; rebuild the mirror from the event store"
        )
        self.stream = stream
        self.missing_from = missing_from
        self.first_available = first_available


# --- security and tenancy -------------------------------------------------------


class AuthenticationFailed(EventfoldError):
    """Credentials are missing, malformed, expired, revoked or not ours (HTTP
    401). The message says why, without echoing a credential."""

    def __init__(self, reason: str, *, challenge: str = "Bearer") -> None:
        super().__init__(reason)
        self.reason = reason
        self.challenge = challenge


class PermissionDenied(EventfoldError):
    """An authenticated principal asked for something its policy does not
    grant (HTTP 403). Nothing was read or written."""

    def __init__(self, principal: str, permission: str) -> None:
        super().__init__(f"{principal!r} may not {permission}")
        self.principal = principal
        self.permission = permission


class TenantExists(EventfoldError):
    """A tenant of that id exists already (HTTP 409)."""

    def __init__(self, tenant: str) -> None:
        super().__init__(f"tenant {tenant!r} exists already")
        self.tenant = tenant


class UnknownTenant(NotFound):
    """No tenant of that id is known (or it was deleted)."""

    def __init__(self, tenant: str) -> None:
        super().__init__(f"no tenant {tenant!r}")
        self.tenant = tenant


# --- test servers (eventfold.testing) -------------------------------------------


class TestServerError(EventfoldError, RuntimeError):
    """A server a test needs (from ``eventfold.testing``) could not be started,
    or failed."""

    __test__ = False  # not a test class, whatever pytest's naming rule says


class PostgresServerError(TestServerError):
    """The embedded PostgreSQL server could not be set up, started or stopped."""


class NatsServerError(TestServerError):
    """The NATS server could not be started or did not become ready."""
