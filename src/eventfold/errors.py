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


class CommandRejected(EventfoldError):
    """A decider refused a command because of a business rule. Raise it (or a
    subclass) from ``decide``; nothing is written."""

    def __init__(self, message: str, *, stream_id: str | None = None) -> None:
        super().__init__(message)
        self.stream_id = stream_id


# --- security and tenancy ---------------------------------------------------------


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
    """A tenant of that id exists already."""

    def __init__(self, tenant: str) -> None:
        super().__init__(f"tenant {tenant!r} exists already")
        self.tenant = tenant


class UnknownTenant(EventfoldError):
    """No tenant of that id is known (or it was deleted)."""

    def __init__(self, tenant: str) -> None:
        super().__init__(f"no tenant {tenant!r}")
        self.tenant = tenant
