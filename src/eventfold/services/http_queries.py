"""The query API, a Litestar app (ASGI), OpenAPI at ``/schema``.

- ``GET /queries/<name>?param=…``: a named query's rows;
- ``GET /streams/<stream_id>/events?from_version=&limit=``: a stream's history;
- ``GET /streams/<stream_id>/state?as_of=<ISO time>&by=recorded|occurred``
  or ``?version=<n>``: its state;
- ``GET /status``: every projection's build and lag, the mirror, the bus;
- ``GET /queries``: the named queries and their parameters.

Every answer carries ``freshness`` (position reached, head, events behind,
seconds behind, events still on the bus) and the ``Eventfold-Position``
header. A request with ``min_position`` (or the ``Eventfold-Min-Position``
header) waits up to ``wait`` seconds (bounded by the server) until the read
side has reached that position, and answers 503 if it does not."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from litestar import Litestar, Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec

from eventfold.domain.clocks import Clock, parse_moment
from eventfold.errors import InvalidArgument, UnknownQuery
from eventfold.security.authn import Security
from eventfold.security.policy import query_permission
from eventfold.services.http_admin import query_admin_routes
from eventfold.services.http_common import (
    MAX_BODY,
    MIN_POSITION,
    POSITION,
    ErrorBody,
    assets_router,
    exception_handlers,
    header_param,
    min_position,
    path_param,
    query_param,
)
from eventfold.services.http_security import PUBLIC, guard, openapi_config, permission, principal_of
from eventfold.services.queries import (
    FreshnessInfo,
    HistoryAnswer,
    NamedQuery,
    Queries,
    QueryAnswer,
    QueryService,
    StateAnswer,
    StatusAnswer,
    param_type_name,
)
from eventfold.services.sites import Site

MinPosition = Annotated[
    int | None,
    query_param(
        "min_position",
        required=False,
        description="Answer once the read side has reached this position (a command's token).",
    ),
]
MinPositionHeader = Annotated[
    int | None,
    header_param(MIN_POSITION, required=False, description="Same as min_position."),
]
Wait = Annotated[
    float | None,
    query_param(
        "wait",
        required=False,
        description="Seconds to wait for min_position (bounded by the server).",
    ),
]
StreamId = Annotated[str, path_param()]
FromVersion = Annotated[int, query_param(description="The first version to list.")]
Limit = Annotated[int, query_param(description="At most this many events (1-1000).")]
AsOf = Annotated[
    str | None,
    query_param(
        required=False,
        description="The state from the events recorded (or, by=occurred, happened) at or "
        "before this ISO 8601 date or time; UTC unless it has an offset (Z, %2B02:00), "
        "a date alone is its start. The same rule as `eventfold at --time`.",
    ),
]
By = Annotated[
    Clock,
    query_param(
        required=False,
        description="The clock as_of is read on: recorded (when the store recorded each "
        "event) or occurred (when it happened, Metadata.occurred_at).",
    ),
]
Version = Annotated[
    int | None, query_param(required=False, description="The state at this version.")
]


def _headers(freshness: FreshnessInfo, cached: bool | None = None) -> dict[str, str]:
    headers = {
        POSITION: str(freshness.position),
        "Eventfold-Events-Behind": str(freshness.events_behind + freshness.bus_pending),
        "Cache-Control": "no-store",
    }
    if cached is not None:
        headers["Eventfold-Cache"] = "hit" if cached else "miss"
    return headers


def _responses() -> dict[int, ResponseSpec]:
    return {
        404: ResponseSpec(ErrorBody, description="unknown"),
        422: ResponseSpec(ErrorBody, description="bad parameter"),
        503: ResponseSpec(ErrorBody, description="the read side did not reach min_position"),
    }


async def _service(site: Site, request: Request[Any, Any, Any]) -> QueryService:
    runtime = await site.runtime(principal_of(request))
    assert runtime.query is not None
    return runtime.query


def _query_route(query: NamedQuery, site: Site) -> HTTPRouteHandler:
    names = list(query.params)

    async def handler(**kwargs: Any) -> Response[QueryAnswer]:
        args = tuple(kwargs[n] for n in names)
        service = await _service(site, kwargs["request"])
        answer = await service.query(
            query.name,
            args,
            min_position=min_position(kwargs["min_position"], kwargs["min_position_header"]),
            wait=kwargs["wait"],
        )
        return Response(answer, headers=_headers(answer.freshness, answer.cached))

    params = [
        inspect.Parameter(
            "request", inspect.Parameter.KEYWORD_ONLY, annotation=Request[Any, Any, Any]
        )
    ]
    for name, kind in query.params.items():
        has_default = name in query.defaults
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=query.defaults[name] if has_default else inspect.Parameter.empty,
                annotation=Annotated[kind, query_param(name, required=not has_default)],
            )
        )
    for name, annotation in (
        ("min_position", MinPosition),
        ("min_position_header", MinPositionHeader),
        ("wait", Wait),
    ):
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
            )
        )
    # The signature Litestar reads (and documents): this query's parameters.
    handler.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        params, return_annotation=Response[QueryAnswer]
    )
    handler.__annotations__ = {p.name: p.annotation for p in params}
    handler.__annotations__["return"] = Response[QueryAnswer]
    return get(
        f"/queries/{query.name}",
        operation_id=f"query_{query.name}",
        summary=query.description or f"Query {query.name}",
        tags=["queries"],
        responses=_responses(),
        opt=permission(query_permission(query.name)),
    )(handler)


def query_app(
    site: Site,
    queries: Queries,
    *,
    security: Security | None = None,
    max_body_size: int = MAX_BODY,
    title: str = "eventfold queries",
    lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[Any]]] = (),
) -> Litestar:
    """The query API for ``queries``, answered by the query service of the
    runtime ``site`` gives each request. ``security``: who may read what
    (None: anyone who can reach it)."""

    @get(
        "/streams/{stream_id:str}/events",
        operation_id="stream_events",
        tags=["streams"],
        summary="A stream's history",
        responses=_responses(),
        opt=permission("stream:read"),
    )
    async def events(
        request: Request[Any, Any, Any],
        stream_id: StreamId,
        from_version: FromVersion = 1,
        limit: Limit = 100,
        min_position: MinPosition = None,
        min_position_header: MinPositionHeader = None,
        wait: Wait = None,
    ) -> Response[HistoryAnswer]:
        service = await _service(site, request)
        answer = await service.history(
            stream_id,
            from_version=from_version,
            limit=limit,
            min_position=_min(min_position, min_position_header),
            wait=wait,
        )
        return Response(answer, headers=_headers(answer.freshness))

    @get(
        "/streams/{stream_id:str}/state",
        operation_id="stream_state",
        tags=["streams"],
        summary="A stream's state, now, at a version, or as of a time",
        responses=_responses(),
        opt=permission("stream:read"),
    )
    async def state(
        request: Request[Any, Any, Any],
        stream_id: StreamId,
        as_of: AsOf = None,
        by: By = "recorded",
        version: Version = None,
        min_position: MinPosition = None,
        min_position_header: MinPositionHeader = None,
        wait: Wait = None,
    ) -> Response[StateAnswer]:
        if version is not None and version < 0:
            raise InvalidArgument("version must be >= 0", argument="version")
        service = await _service(site, request)
        answer = await service.state(
            stream_id,
            as_of=None if as_of is None else parse_moment(as_of, "as_of"),
            by=by,
            version=version,
            min_position=_min(min_position, min_position_header),
            wait=wait,
        )
        return Response(answer, headers=_headers(answer.freshness))

    @get(
        "/status",
        operation_id="status",
        tags=["status"],
        summary="Projections and lag",
        opt=permission("status:read"),
    )
    async def status(request: Request[Any, Any, Any]) -> StatusAnswer:
        return await (await _service(site, request)).status()

    @get(
        "/queries",
        operation_id="queries",
        tags=["queries"],
        summary="The named queries",
        opt=permission(None),
    )
    async def list_queries() -> list[dict[str, Any]]:
        return [
            {
                "name": q.name,
                "projection": q.projection,
                "description": q.description,
                "params": {n: param_type_name(t) for n, t in q.params.items()},
                "defaults": q.defaults,
            }
            for q in queries
        ]

    @get("/health", operation_id="health", include_in_schema=False, opt=PUBLIC)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    routes = [_query_route(q, site) for q in queries]
    known = [q.name for q in queries]

    @get("/queries/{name:str}", include_in_schema=False, opt=permission(None))
    async def unknown_query(name: Annotated[str, path_param()]) -> None:
        raise UnknownQuery(name, known)

    return Litestar(
        [
            *routes,
            events,
            state,
            status,
            list_queries,
            health,
            unknown_query,
            assets_router(),
            *query_admin_routes(site),
        ],
        guards=[guard(security)],
        exception_handlers=exception_handlers(),
        request_max_body_size=max_body_size,
        openapi_config=openapi_config(title, security),
        lifespan=list(lifespan),
        logging_config=None,
    )


def _min(query: int | None, header: int | None) -> int | None:
    return min_position(query, header)
