"""What both HTTP apps share: errors mapped to statuses with one JSON shape,
the position headers, and the Litestar settings.

| error | status |
| --- | --- |
| malformed JSON (or nested deeper than 100 levels), a bad header | 400 |
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
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import msgspec
from litestar import Request, Response, Router
from litestar.dto import AbstractDTO, DTOConfig
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Reference, Schema
from litestar.params import Body, Parameter
from litestar.static_files import create_static_files_router
from litestar.types import ExceptionHandlersMap
from litestar.typing import FieldDefinition

from eventfold import __version__
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
T = TypeVar("T")

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
        "field",
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


def json_body(kind: Any) -> Any:
    """``kind`` as a JSON request body (documented by Litestar; decoded by the
    route's DTO where it has one)."""
    return Annotated[kind, Body(media_type=RequestEncodingType.JSON)]


def path_param() -> Any:
    """A path parameter's declaration, in the style this Litestar wants."""
    try:
        from litestar.params import PathParameter
    except ImportError:  # pragma: no cover - Litestar before 2.18
        return Parameter()
    return PathParameter()


class StrictBody(AbstractDTO[T]):
    """A request body decoded by ``decode`` alone (a command's own decoder:
    strict types, its constraints, the depth limit), never coerced by
    Litestar; documented in OpenAPI as ``model_type``. ``StrictBody.of(type,
    decode)`` makes one."""

    config: ClassVar[DTOConfig] = DTOConfig()
    decode: ClassVar[Callable[[bytes], Any]]

    @classmethod
    def of(cls, kind: type[Any], decode: Callable[[bytes], Any]) -> type[StrictBody[Any]]:
        narrowed = cls[kind]  # type: ignore[index]
        return type(f"StrictBody[{kind.__name__}]", (narrowed,), {"decode": staticmethod(decode)})

    @classmethod
    def generate_field_definitions(cls, model_type: type[Any]) -> Generator[Any, None, None]:
        yield from ()

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: Any = None
    ) -> None:
        return None  # decode does all the work: no backend to build

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Reference | Schema:
        # Litestar's own schema of the command type, as for any request body.
        schema: Reference | Schema = schema_creator.for_field_definition(
            FieldDefinition.from_annotation(cls.model_type)
        )
        return schema

    def decode_bytes(self, value: bytes) -> Any:
        return type(self).decode(value)


SCHEMA_PATH = "/schema"
ASSETS = Path(__file__).with_name("assets")
"""Redoc and Swagger UI, served from the package (``/schema/assets/...``), so
the documentation pages work without a network."""


def openapi_config(title: str, **extra: Any) -> OpenAPIConfig:
    """The OpenAPI document at ``/schema/openapi.json``, Redoc at ``/schema``
    (and ``/schema/redoc``) and Swagger UI at ``/schema/swagger``, their
    scripts and styles from ``assets_router()``: no CDN, no web fonts.
    ``extra``: more ``OpenAPIConfig`` settings (the security schemes)."""
    assets = f"{SCHEMA_PATH}/assets"
    return OpenAPIConfig(
        title=title,
        version=__version__,
        path=SCHEMA_PATH,
        **extra,
        render_plugins=[
            RedocRenderPlugin(
                path=["/", "/redoc"],
                js_url=f"{assets}/redoc.standalone.js",
                google_fonts=False,
                favicon="",
            ),
            SwaggerRenderPlugin(
                path="/swagger",
                js_url=f"{assets}/swagger-ui-bundle.js",
                css_url=f"{assets}/swagger-ui.css",
                standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
                favicon="",
            ),
        ],
    )


def assets_router() -> Router:
    return create_static_files_router(
        path=f"{SCHEMA_PATH}/assets",
        directories=[ASSETS],
        include_in_schema=False,
        send_as_attachment=False,
    )


def min_position(*values: int | None) -> int | None:
    """The largest of the positions a request carries (None if none)."""
    given = [v for v in values if v is not None]
    if any(v < 0 for v in given):
        raise InvalidArgument("a position is an int >= 0", argument="min_position")
    return max(given) if given else None
