"""What both HTTP apps share: errors mapped to statuses with one JSON shape,
the position headers, and the Litestar settings.

| error | status |
| --- | --- |
| malformed JSON, a bad header | 400 |
| missing or bad credentials (``AuthenticationFailed``), with ``WWW-Authenticate`` | 401 |
| outside the policy (``PermissionDenied``) | 403 |
| unknown command, query, outcome or state | 404 |
| concurrency conflict (``WrongExpectedVersion``), a tenant that exists | 409 |
| body too large | 413 |
| invalid (``InvalidArgument``), rejected (``CommandRejected``), a key reused | 422 |
| not set up here (``ConfigurationError``: forget without encryption) | 501 |
| a wait for freshness timed out, the store, bus or read model is away | 503 |
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import Body, Parameter
from litestar.types import ExceptionHandlersMap

from eventfold.errors import (
    AuthenticationFailed,
    BusError,
    CommandRejected,
    ConcurrencyError,
    ConfigurationError,
    EventfoldError,
    InvalidArgument,
    InvalidCommand,
    NotFound,
    PermissionDenied,
    ProjectionFailed,
    ReadModelError,
    ReadModelTimeout,
    StoreError,
    TenantExists,
)
from eventfold.errors import UnknownOutcome as UnknownOutcome

log = logging.getLogger("eventfold.services")

POSITION = "Eventfold-Position"
"""Response header: the position a command's events reached (its token), or
the position a query's answer reflects."""
MIN_POSITION = "Eventfold-Min-Position"
"""Request header (or ``min_position`` query parameter): answer only once
the read side has reached this position (read your writes)."""

MAX_BODY = 1024 * 1024


class ErrorBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """Every error answer: the status, the error's type, a message, and what
    it is about."""

    status_code: int
    error: str
    detail: str
    extra: dict[str, Any] | list[Any] | None = None


def status_of(exc: BaseException) -> int:
    if isinstance(exc, AuthenticationFailed):
        return 401
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, InvalidCommand) and exc.malformed:
        return 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, ConcurrencyError | TenantExists):
        return 409
    if isinstance(exc, InvalidArgument | CommandRejected):
        return 422
    if isinstance(exc, ConfigurationError):
        return 501
    if isinstance(
        exc,
        ReadModelTimeout
        | ProjectionFailed
        | ReadModelError
        | BusError
        | StoreError
        | sqlite3.OperationalError,
    ):
        return 503
    if type(exc).__module__.startswith("psycopg") and type(exc).__name__ == "OperationalError":
        return 503
    return 500


def _extra(exc: BaseException) -> dict[str, Any] | None:
    fields = (
        "stream_id",
        "expected",
        "actual",
        "argument",
        "projection",
        "position",
        "reached",
        "known",
        "key",
        "name",
        "permission",
        "tenant",
    )
    out = {}
    for name in fields:
        value = getattr(exc, name, None)
        if value is not None:
            out[name] = value if isinstance(value, int | str | list) else str(value)
    return out or None


def error_response(exc: BaseException) -> Response[ErrorBody]:
    status = status_of(exc)
    if status >= 500 and status not in (501, 503):
        log.error("request failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
    headers = {"Retry-After": "1"} if status == 503 else None
    if isinstance(exc, AuthenticationFailed):
        headers = {"WWW-Authenticate": exc.challenge}
    body = ErrorBody(status, type(exc).__name__, str(exc), _extra(exc))
    return Response(body, status_code=status, headers=headers)


def _on_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    return error_response(exc)


def _on_validation(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ErrorBody]:
    # Litestar found a body, parameter or header that does not fit its type.
    body = ErrorBody(422, "ValidationError", str(exc.detail), exc.extra)
    return Response(body, status_code=422)


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    names = {
        400: "BadRequest",
        401: "NotAuthorized",
        403: "PermissionDenied",
        404: "NotFound",
        405: "MethodNotAllowed",
        413: "RequestEntityTooLarge",
        415: "UnsupportedMediaType",
    }
    status = exc.status_code
    body = ErrorBody(status, names.get(status, "HTTPError"), str(exc.detail), exc.extra)
    return Response(body, status_code=status, headers=exc.headers)


def _on_undecodable(
    request: Request[Any, Any, Any], exc: UnicodeDecodeError
) -> Response[ErrorBody]:
    # Litestar's JSON decoding lets bytes that are not UTF-8 inside a string
    # or key through as UnicodeDecodeError: the body is malformed.
    body = ErrorBody(400, "BadRequest", f"the body is not UTF-8 JSON: {exc}")
    return Response(body, status_code=400)


def exception_handlers() -> ExceptionHandlersMap:
    handlers: ExceptionHandlersMap = {
        ValidationException: _on_validation,
        HTTPException: _on_http,
        UnicodeDecodeError: _on_undecodable,
        EventfoldError: _on_error,
        sqlite3.OperationalError: _on_error,
    }
    try:
        import psycopg
    except ImportError:  # pragma: no cover - depends on installed extras
        return handlers
    handlers[psycopg.OperationalError] = _on_error
    return handlers


def query_param(name: str | None = None, **options: Any) -> Any:
    """A query parameter's declaration, in the style this Litestar wants."""
    try:
        from litestar.params import QueryParameter
    except ImportError:  # pragma: no cover - Litestar before 2.18
        return Parameter(query=name, **options)
    return QueryParameter(name=name, **options)


def header_param(name: str, **options: Any) -> Any:
    """A header parameter's declaration, in the style this Litestar wants."""
    try:
        from litestar.params import HeaderParameter
    except ImportError:  # pragma: no cover - Litestar before 2.18
        return Parameter(header=name, **options)
    return HeaderParameter(name=name, **options)


def path_param() -> Any:
    """A path parameter's declaration, in the style this Litestar wants."""
    try:
        from litestar.params import PathParameter
    except ImportError:  # pragma: no cover - Litestar before 2.18
        return Parameter()
    return PathParameter()


PathText = Annotated[str, path_param()]
PathInt = Annotated[int, path_param()]


def json_body(kind: Any) -> Any:
    """``kind`` as a JSON request body (decoded and validated by Litestar)."""
    return Annotated[kind, Body(media_type=RequestEncodingType.JSON)]


def min_position(*values: int | None) -> int | None:
    """The largest of the positions a request carries (None if none)."""
    given = [v for v in values if v is not None]
    if any(v < 0 for v in given):
        raise InvalidArgument("a position is an int >= 0", argument="min_position")
    return max(given) if given else None
