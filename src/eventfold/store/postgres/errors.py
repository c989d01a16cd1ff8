"""Translate psycopg and pool exceptions into eventfold's error hierarchy, so
that no driver exception escapes the store."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg
from psycopg_pool import PoolTimeout, TooManyRequests

from eventfold.errors import (
    ConcurrencyError,
    EventfoldError,
    InvalidArgument,
    StoreClosed,
    StoreError,
    StoreTimeout,
)

NOT_FIRST_WRITE = "EF001"  # raised by the append function

# SQLSTATEs after which a whole batch may simply be tried again (alone).
RETRYABLE = (
    pg.UniqueViolation,
    pg.DeadlockDetected,
    pg.SerializationFailure,
)


RETRIES = 4
"""Times an append is tried while it keeps failing with one of RETRYABLE."""


def unknown_outcome(exc: BaseException) -> StoreError:
    """The error of an append whose connection failed mid-statement."""
    return StoreError(
        f"append: the connection failed, the outcome is unknown ({exc}); "
        "retrying with the same event ids is safe"
    )


def is_connection_failure(exc: BaseException) -> bool:
    """True if the outcome of the statement is unknown (the connection broke)."""
    if isinstance(exc, PoolTimeout | TooManyRequests):
        return False  # nothing was sent
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    sqlstate = exc.sqlstate
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def translate(exc: BaseException, what: str) -> EventfoldError:
    """The eventfold error for a driver exception raised while doing ``what``."""
    if isinstance(exc, EventfoldError):
        return exc
    if isinstance(exc, PoolTimeout | TooManyRequests):
        return StoreTimeout(
            f"{what}: no database connection available in time ({exc})", setting="pool_timeout"
        )
    if isinstance(exc, pg.LockNotAvailable):
        return StoreTimeout(
            f"{what}: lock_timeout expired waiting for a lock held by another session",
            setting="lock_timeout",
        )
    if isinstance(exc, pg.QueryCanceled):
        return StoreTimeout(
            f"{what}: statement_timeout expired or the statement was cancelled",
            setting="statement_timeout",
        )
    if isinstance(exc, pg.IdleInTransactionSessionTimeout):
        return StoreTimeout(
            f"{what}: the session was idle in a transaction for too long",
            setting="idle_in_transaction_session_timeout",
        )
    if isinstance(exc, RETRYABLE):
        return ConcurrencyError(f"{what}: conflict with a concurrent writer ({exc.sqlstate})")
    if getattr(exc, "sqlstate", None) == NOT_FIRST_WRITE:
        return InvalidArgument(
            f"{what}: an append must be the first write of its transaction "
            "(append before writing anything else in it)",
            argument="conn",
        )
    if isinstance(exc, pg.ProgramLimitExceeded):
        return InvalidArgument(f"{what}: {exc}", argument="events")
    if isinstance(exc, psycopg.DataError):
        # e.g. a JSON payload PostgreSQL's jsonb refuses ("\\u0000"), a number out of range
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return InvalidArgument(f"{what}: PostgreSQL refused a value: {detail}", argument="data")
    if isinstance(exc, psycopg.InterfaceError) and "closed" in str(exc):
        return StoreClosed(f"{what}: the connection is closed")
    if isinstance(exc, psycopg.Error):
        sqlstate = getattr(exc, "sqlstate", None)
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        code = f" [{sqlstate}]" if sqlstate else ""
        return StoreError(f"{what}: {detail}{code}")
    return StoreError(f"{what}: {type(exc).__name__}: {exc}")
