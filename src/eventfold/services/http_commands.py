"""The command API, a Litestar app (ASGI), with its OpenAPI document at
``/schema`` (``/schema/openapi.json``) made from the command types.

- ``POST /commands/<Name>``: the command as JSON. Headers:
  ``Idempotency-Key`` (a retry with it returns the first outcome and writes
  nothing), ``Prefer: respond-async`` (queue it: 202 with the command id;
  ``respond-async, wait=5``: and wait up to 5 s for the outcome, 200 if it
  came), ``Eventfold-Expected-Version`` (fail with 409 unless the stream is there),
  ``Eventfold-Actor``, ``Eventfold-Correlation-Id`` and
  ``Eventfold-Occurred-At`` (event metadata; when it happened, if not now;
  with security on, the actor is the authenticated principal and the header
  at most an ``on_behalf_of``, see ``http_security``).
  Answers 200 with the outcome: the stream's version and the position token
  (also in the ``Eventfold-Position`` header); 409, 422 or 500 with the
  outcome's error; 202 with ``Location: /outcomes/<id>`` when queued.
- ``GET /outcomes/<id>?wait=5``: a queued (or keyed) command's outcome;
  202 while it is pending (after waiting up to ``wait`` seconds), 200 once done.
- ``GET /commands``: the commands and their JSON schemas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Annotated, Any

from litestar import Litestar, Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.types import Empty

from eventfold.domain.clocks import parse_moment
from eventfold.domain.events import Metadata
from eventfold.errors import InvalidArgument, UnknownCommand, UnknownOutcome
from eventfold.security.authn import Security
from eventfold.security.policy import ON_BEHALF, command_permission
from eventfold.security.principal import Principal
from eventfold.services.commands import CommandRoute, Commands
from eventfold.services.http_admin import admin_routes, metrics_route
from eventfold.services.http_common import (
    MAX_BODY,
    POSITION,
    ErrorBody,
    StrictBody,
    assets_router,
    exception_handlers,
    header_param,
    json_body,
    path_param,
    query_param,
)
from eventfold.services.http_security import (
    PUBLIC,
    guard,
    openapi_config,
    permission,
    principal_of,
    require,
)
from eventfold.services.records import CommandOutcome
from eventfold.services.sites import Site

_STATUS = {
    "pending": 202,
    "succeeded": 200,
    "rejected": 422,
    "conflict": 409,
    "invalid": 422,
    "failed": 500,
}

Key = Annotated[
    str | None,
    header_param(
        "Idempotency-Key",
        required=False,
        description="A retry with the same key returns the first outcome and writes nothing.",
    ),
]
Prefer = Annotated[
    str | None,
    header_param(
        "Prefer",
        required=False,
        description="'respond-async': queue the command and answer 202 with its id; "
        "'respond-async, wait=5': and wait up to 5 s for its outcome.",
    ),
]
Expected = Annotated[
    int | None,
    header_param(
        "Eventfold-Expected-Version",
        required=False,
        description="Fail with 409 unless the stream is at this version (0: new stream).",
    ),
]
Actor = Annotated[str | None, header_param("Eventfold-Actor", required=False)]
Correlation = Annotated[str | None, header_param("Eventfold-Correlation-Id", required=False)]
OCCURRED_AT = "Eventfold-Occurred-At"
OccurredAt = Annotated[
    str | None,
    header_param(
        OCCURRED_AT,
        required=False,
        description="When it happened, if not now (ISO 8601; UTC unless an offset is given): "
        "the events' occurred_at.",
    ),
]
CommandId = Annotated[str, path_param()]
WaitSeconds = Annotated[
    float, query_param(description="Seconds to wait for the command to be done (bounded).")
]


def outcome_response(outcome: CommandOutcome, *, status: int | None = None) -> Response[Any]:
    headers = {}
    if outcome.position is not None:
        headers[POSITION] = str(outcome.position)
    if not outcome.done:
        headers["Location"] = f"/outcomes/{outcome.command_id}"
    code = status if status is not None else _STATUS[outcome.status]
    return Response(outcome, status_code=code, headers=headers)


def _responses() -> dict[int, ResponseSpec]:
    return {
        202: ResponseSpec(CommandOutcome, description="queued (Prefer: respond-async)"),
        400: ResponseSpec(ErrorBody, description="malformed JSON"),
        409: ResponseSpec(CommandOutcome, description="concurrency conflict"),
        413: ResponseSpec(ErrorBody, description="body too large"),
        422: ResponseSpec(CommandOutcome, description="invalid or rejected"),
        503: ResponseSpec(ErrorBody, description="store or queue unavailable"),
    }


def _preferences(prefer: str | None) -> tuple[bool, float]:
    """``Prefer: respond-async`` (queue it), ``wait=N`` (for up to N seconds)."""
    asynchronous, wait = False, 0.0
    for part in (prefer or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "respond-async":
            asynchronous = True
        elif name.lower() == "wait":
            try:
                wait = max(0.0, float(value))
            except ValueError:
                raise InvalidArgument(f"Prefer: wait={value!r} is not a number") from None
    return asynchronous, wait


def _metadata(
    security: Security | None,
    principal: Principal | None,
    actor: str | None,
    correlation_id: str | None,
    occurred_at: datetime | None,
) -> Metadata | None:
    """The events' metadata. With security on, the actor is the principal;
    an ``Eventfold-Actor`` header is kept as ``on_behalf_of`` if the policy
    grants ``actor:on-behalf``, and ignored otherwise."""
    if security is None or principal is None:
        if actor is None and correlation_id is None and occurred_at is None:
            return None
        return Metadata(correlation_id=correlation_id, actor=actor, occurred_at=occurred_at)
    extra: dict[str, Any] = {}
    if actor is not None and security.allows(principal, ON_BEHALF):
        extra["on_behalf_of"] = actor
    return Metadata(
        correlation_id=correlation_id, actor=principal.id, occurred_at=occurred_at, extra=extra
    )


def _command_route(
    route: CommandRoute[Any], site: Site, security: Security | None, max_wait: float
) -> HTTPRouteHandler:
    async def handler(
        request: Request[Any, Any, Any],
        data: Any = None,
        idempotency_key: str | None = None,
        prefer: str | None = None,
        expected_version: int | None = None,
        actor: str | None = None,
        correlation_id: str | None = None,
        occurred_at: str | None = None,
    ) -> Response[Any]:
        if data is None or data is Empty:  # no body at all
            data = route.decode(b"")  # raises the typed error
        principal = principal_of(request)
        runtime = await site.runtime(principal)
        commands, queue = runtime.commands, runtime.queue
        assert commands is not None
        occurred = None if occurred_at is None else parse_moment(occurred_at, OCCURRED_AT)
        metadata = _metadata(security, principal, actor, correlation_id, occurred)
        prepared = commands.prepare(
            route.name,
            data,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
            metadata=metadata,
        )
        asynchronous, wait = _preferences(prefer)
        if asynchronous:
            if queue is None:
                raise InvalidArgument("asynchronous commands are not enabled here")
            outcome = await queue.accept(prepared)
            if wait and not outcome.done:
                found = await commands.outcomes.wait(outcome.command_id, min(wait, max_wait))
                if found is not None:
                    outcome = found.outcome
            return outcome_response(outcome)
        return outcome_response(await commands.execute(prepared))

    # The signature Litestar reads (and documents): the body is this command's
    # type, decoded by the command's own strict decoder (StrictBody).
    handler.__annotations__ = {
        "request": Request[Any, Any, Any],
        "data": json_body(route.command_type),
        "idempotency_key": Key,
        "prefer": Prefer,
        "expected_version": Expected,
        "actor": Actor,
        "correlation_id": Correlation,
        "occurred_at": OccurredAt,
        "return": Response[CommandOutcome],
    }
    return post(
        f"/commands/{route.name}",
        operation_id=f"command_{route.name}",
        summary=f"Send {route.name}",
        description=route.description or None,
        tags=["commands"],
        status_code=200,
        responses=_responses(),
        opt=permission(command_permission(route.name)),
        dto=StrictBody.of(route.command_type, route.decode),
        return_dto=None,
    )(handler)


def command_app(
    site: Site,
    known: Commands,
    *,
    security: Security | None = None,
    max_body_size: int = MAX_BODY,
    max_wait: float = 30.0,
    title: str = "eventfold commands",
    lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[Any]]] = (),
) -> Litestar:
    """The command API for the commands ``known``, run by the runtime
    ``site`` gives each request (with a queue: asynchronous commands too).
    ``security``: who may do what (None: anyone who can reach it).
    ``max_body_size``: larger bodies get 413. ``max_wait`` bounds
    ``GET /outcomes/<id>?wait=``."""

    @post("/commands/{name:str}", include_in_schema=False, status_code=404, opt=permission(None))
    async def unknown_command(
        name: Annotated[str, path_param()], request: Request[Any, Any, Any]
    ) -> Response[Any]:
        raise UnknownCommand(name, known.names)

    @get(
        "/outcomes/{command_id:str}",
        operation_id="outcome",
        tags=["commands"],
        summary="A command's outcome",
        responses={202: ResponseSpec(CommandOutcome, description="still pending")},
        opt=permission(None),
    )
    async def outcome(
        request: Request[Any, Any, Any], command_id: CommandId, wait: WaitSeconds = 0.0
    ) -> Response[CommandOutcome]:
        if wait < 0:
            raise InvalidArgument("wait must be >= 0 seconds", argument="wait")
        runtime = await site.runtime(principal_of(request))
        assert runtime.commands is not None
        found = await runtime.commands.outcomes.wait(command_id, min(wait, max_wait))
        if found is None:
            raise UnknownOutcome(command_id)
        require(security, request, command_permission(found.outcome.command))
        return outcome_response(found.outcome, status=200 if found.outcome.done else 202)

    # The commands and their JSON Schemas, built once: they are fixed when the app is.
    catalogue = [
        {"name": r.name, "description": r.description, "schema": r.schema()} for r in known
    ]

    @get(
        "/commands",
        operation_id="commands",
        tags=["commands"],
        summary="The commands",
        opt=permission(None),
    )
    async def list_commands() -> list[dict[str, Any]]:
        return catalogue

    @get("/health", operation_id="health", include_in_schema=False, opt=PUBLIC)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    handlers = [_command_route(r, site, security, max_wait) for r in known]
    return Litestar(
        [
            *handlers,
            unknown_command,
            outcome,
            list_commands,
            health,
            metrics_route(site),
            assets_router(),
            *admin_routes(site),
        ],
        guards=[guard(security)],
        exception_handlers=exception_handlers(),
        request_max_body_size=max_body_size,
        openapi_config=openapi_config(title, security),
        lifespan=list(lifespan),
        logging_config=None,
    )
