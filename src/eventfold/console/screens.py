"""The console's pages (GET): what each shows is gathered here; the
templates lay it out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect

from eventfold.console.views import at_position, causation_tree, event_row
from eventfold.domain.clocks import parse_moment
from eventfold.errors import InvalidArgument, NotFound
from eventfold.services.http_common import PathInt, PathText
from eventfold.services.http_security import PUBLIC
from eventfold.services.operator import mirror
from eventfold.store.checks import category_of, validate_stream_id

if TYPE_CHECKING:
    from eventfold.console.pages import Console, Visit

RATE_MINUTES = 15


def _optional_int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be a whole number", argument=name) from None


async def overview(visit: Visit) -> Response[Any]:
    runtime = visit.runtime
    store = mirror(runtime)
    stats = await store.stats()
    rate = await store.per_minute(RATE_MINUTES)
    details = await runtime.details()
    assert runtime.runner is not None
    projections = await runtime.runner.status()
    states: dict[str, int] = {}
    for status in projections:
        states[status.state] = states.get(status.state, 0) + 1
    bus = "NATS JetStream" if runtime.bus is not None and runtime.bus.durable else "in-process"
    return visit.page(
        "overview.html",
        "overview",
        stats=stats,
        rate=rate,
        peak=max(rate) or 1,
        minutes=RATE_MINUTES,
        details=details,
        states=states,
        projections=projections,
        bus=bus,
        operations=[op.public() for op in runtime.operations.latest(5)],
    )


async def streams(visit: Visit) -> Response[Any]:
    store = mirror(visit.runtime)
    query = (visit.request.query_params.get("q") or "").strip()
    category = visit.request.query_params.get("category") or None
    message = None
    if query:
        try:
            validate_stream_id(query)
            if await store.stream_version(query) > 0:
                return Redirect(f"/console/streams/{query}", status_code=303)
        except InvalidArgument:
            pass
        category = query
    found = await store.list_streams(category=category, limit=100)
    if query and not found:
        message = f"no stream or category named {query!r}"
    return visit.page(
        "streams.html",
        "streams",
        categories=await store.list_categories(),
        streams=found,
        category=category,
        query=query,
        message=message,
    )


async def stream(visit: Visit, stream_id: str) -> Response[Any]:
    validate_stream_id(stream_id)
    runtime = visit.runtime
    assert runtime.query is not None
    reader = runtime.query.store
    params = visit.request.query_params
    start = _optional_int(params.get("from"), "from") or 1
    rows = [
        event_row(r) async for r in reader.read_stream(stream_id, from_version=start, limit=100)
    ]
    version = await reader.stream_version(stream_id)
    decider = visit.queries.states.get(category_of(stream_id))
    state = None
    at_version = _optional_int(params.get("version"), "version")
    as_of_text = (params.get("as_of") or "").strip()
    by = params.get("by") or "recorded"
    if by not in ("recorded", "occurred"):
        raise InvalidArgument("by is recorded or occurred", argument="by")
    if decider is not None and version > 0:
        as_of = parse_moment(as_of_text, "as_of") if as_of_text else None
        state = await runtime.query.state(
            stream_id,
            version=at_version,
            as_of=as_of,
            by=by,  # type: ignore[arg-type]
        )
    return visit.page(
        "stream.html",
        "streams",
        stream_id=stream_id,
        version=version,
        events=rows,
        start=start,
        has_state=decider is not None,
        state=state,
        at_version=at_version,
        as_of=as_of_text,
        by=by,
    )


async def event(visit: Visit, position: int) -> Response[Any]:
    runtime = visit.runtime
    assert runtime.query is not None
    reader = runtime.query.store
    record = await at_position(reader, position)
    if record is None:
        raise NotFound(f"no event at position {position}")
    row = event_row(record)
    correlation = row.metadata.get("correlation_id")
    related = [row]
    if isinstance(correlation, str):
        related = []
        for at in await mirror(runtime).correlated(correlation):
            found = await at_position(reader, at)
            if found is not None:
                related.append(event_row(found))
    return visit.page(
        "event.html",
        "streams",
        event=row,
        correlation=correlation,
        tree=causation_tree(related),
        count=len(related),
    )


async def projections(visit: Visit) -> Response[Any]:
    runtime = visit.runtime
    assert runtime.runner is not None
    rows = []
    for status in await runtime.runner.status():
        fresh = status.freshness
        position = status.active.position if status.active is not None else 0
        behind = fresh.events_behind if fresh is not None else 0
        rebuilding = runtime.operations.running("rebuild", status.name)
        rows.append(
            {
                "status": status,
                "position": position,
                "behind": behind,
                "seconds": fresh.seconds_behind if fresh is not None else 0.0,
                "eta": visit.pace.eta(status.name, position, behind),
                "rebuild": rebuilding.public() if rebuilding is not None else None,
            }
        )
    ops = [op.public() for op in runtime.operations.latest(10) if op.kind == "rebuild"]
    return visit.page("projections.html", "projections", rows=rows, operations=ops)


async def parked(visit: Visit) -> Response[Any]:
    store = mirror(visit.runtime)
    found = await store.parked(limit=200)
    log = await store.parked_log(limit=20)
    return visit.page("parked.html", "parked", parked=found, log=log)


async def commands(visit: Visit) -> Response[Any]:
    runtime = visit.runtime
    only = visit.request.query_params.get("status") or None
    recent = [] if runtime.commands is None else list(reversed(runtime.commands.recent))
    counts: dict[str, int] = {}
    for outcome in recent:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    if only == "failures":
        recent = [o for o in recent if o.status not in ("succeeded", "pending")]
    return visit.page(
        "commands.html",
        "commands",
        here=runtime.commands is not None,
        outcomes=recent,
        counts=counts,
        only=only,
    )


async def verify_page(visit: Visit) -> Response[Any]:
    runtime = visit.runtime
    op_id = _optional_int(visit.request.query_params.get("op"), "op")
    op = runtime.operations.get(op_id) if op_id is not None else None
    if op is None:
        found = [o for o in runtime.operations.latest(50) if o.kind == "verify"]
        op = found[0] if found else None
    return visit.page(
        "verify.html",
        "verify",
        here=runtime.store is not None,
        op=op.public() if op is not None else None,
    )


def routes(console: Console) -> list[HTTPRouteHandler]:
    @get("/console/", opt=PUBLIC, include_in_schema=False)
    async def overview_route(request: Request[Any, Any, Any]) -> Response[Any]:
        return await console.show(request, "status:read", overview)

    @get("/console/streams", opt=PUBLIC, include_in_schema=False)
    async def streams_route(request: Request[Any, Any, Any]) -> Response[Any]:
        return await console.show(request, "stream:read", streams)

    @get("/console/streams/{stream_id:str}", opt=PUBLIC, include_in_schema=False)
    async def stream_route(request: Request[Any, Any, Any], stream_id: PathText) -> Response[Any]:
        return await console.show(request, "stream:read", lambda v: stream(v, stream_id))

    @get("/console/events/{position:int}", opt=PUBLIC, include_in_schema=False)
    async def event_route(request: Request[Any, Any, Any], position: PathInt) -> Response[Any]:
        return await console.show(request, "stream:read", lambda v: event(v, position))

    @get("/console/projections", opt=PUBLIC, include_in_schema=False)
    async def projections_route(request: Request[Any, Any, Any]) -> Response[Any]:
        return await console.show(request, "status:read", projections)

    @get("/console/parked", opt=PUBLIC, include_in_schema=False)
    async def parked_route(request: Request[Any, Any, Any]) -> Response[Any]:
        return await console.show(request, "status:read", parked)

    @get("/console/commands", opt=PUBLIC, include_in_schema=False)
    async def commands_route(request: Request[Any, Any, Any]) -> Response[Any]:
        return await console.show(request, "status:read", commands)

    @get("/console/verify", opt=PUBLIC, include_in_schema=False)
    async def verify_route(request: Request[Any, Any, Any]) -> Response[Any]:
        return await console.show(request, "store:verify", verify_page)

    @get("/console/operations/{op_id:int}", opt=PUBLIC, include_in_schema=False)
    async def operation_route(request: Request[Any, Any, Any], op_id: PathInt) -> Response[Any]:
        async def body(visit: Visit) -> Response[Any]:
            op = visit.runtime.operations.get(op_id)
            if op is None:
                raise NotFound(f"no operation {op_id}")
            return Response(op.public(), headers={"Cache-Control": "no-store"})

        return await console.show(request, "status:read", body)

    return [
        overview_route,
        streams_route,
        stream_route,
        event_route,
        projections_route,
        parked_route,
        commands_route,
        verify_route,
        operation_route,
    ]
