"""The one error hierarchy. Every error eventfold raises derives from EventfoldError
and carries the stream, version, type or setting it is about as attributes."""

from __future__ import annotations

from typing import Any


class EventfoldError(Exception):
    """Root of every error raised by eventfold."""


# --- input --------------------------------------------------------------------


class InvalidArgument(EventfoldError, ValueError):
    """An argument is malformed: nothing was read or written."""

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class InvalidPayload(InvalidArgument):
    """An event's data or metadata cannot be stored as given: a number that is
    not finite, a value that would be read back as something else (bytes under
    a field typed ``Any``), nesting deeper than the limit. ``field`` names the
    value (``data.lines[2].price``); nothing was written."""

    def __init__(self, message: str, *, argument: str, event_type: str, field: str) -> None:
        super().__init__(message, argument=argument)
        self.event_type = event_type
        self.field = field


class InvalidStreamId(InvalidArgument):
    """A stream id is empty, too long or contains forbidden characters."""

    def __init__(self, stream_id: object, reason: str) -> None:
        super().__init__(f"invalid stream id {stream_id!r}: {reason}", argument="stream_id")
        self.stream_id = stream_id
        self.reason = reason


# --- concurrency and idempotency --------------------------------------------


class ConcurrencyError(EventfoldError):
    """Another writer got there first."""


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


class DuplicateEventId(EventfoldError):
    """An event id is already stored with other content, or in another place."""

    def __init__(self, event_id: object, stream_id: str, reason: str) -> None:
        super().__init__(f"event id {event_id} in stream {stream_id!r}: {reason}")
        self.event_id = event_id
        self.stream_id = stream_id
        self.reason = reason


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


class RegistrationError(EventfoldError):
    """An event type or upcaster was registered twice or inconsistently."""


# --- stores and configuration ---------------------------------------------------


class ConfigurationError(EventfoldError):
    """A setting or URL is wrong."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class StoreError(EventfoldError):
    """The backing database failed or is not usable."""


class NotAnEventStore(StoreError):
    """The database exists but is not an eventfold store (or is corrupt)."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location} is not a usable eventfold store: {reason}")
        self.location = location
        self.reason = reason


class StoreNotFound(StoreError):
    """A store opened with ``create=False`` does not exist (no file, an empty
    one, no eventfold schema): nothing was created."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: no eventfold store there ({reason}); nothing was created")
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


class StoreTimeout(StoreError):
    """The database did not answer in time: no connection free, a lock held
    too long, a statement cancelled by its timeout. Safe to retry later (an
    append may retry with the same event ids)."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class StoreClosed(StoreError):
    """The store was used after close()."""


# --- domain ---------------------------------------------------------------------


class StreamNotFound(EventfoldError):
    """A stream that must exist does not."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id!r} does not exist")
        self.stream_id = stream_id


def _fmt_expected(expected: object) -> str:
    name = getattr(expected, "name", None)
    return name if isinstance(name, str) else repr(expected)


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
