"""The console's actions (POST forms): each checks the form's CSRF token,
the visitor and the action's own permission (``Console.act``), does it
through ``eventfold.services.operator``, leaves a message for the next page
and sends the browser back to it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler

from eventfold.services import operator
from eventfold.services.http_common import PathInt, PathText
from eventfold.services.http_security import PUBLIC

if TYPE_CHECKING:
    from eventfold.console.pages import Console, Visit


def _by(visit: Visit) -> str | None:
    return visit.principal.id if visit.principal is not None else None


def routes(console: Console) -> list[HTTPRouteHandler]:
    @post("/console/projections/{name:str}/rebuild", opt=PUBLIC, include_in_schema=False)
    async def rebuild(request: Request[Any, Any, Any], name: PathText) -> Response[Any]:
        async def body(visit: Visit, form: dict[str, Any]) -> str:
            op = operator.rebuild(visit.runtime, name, by=_by(visit))
            visit.session.flash = f"rebuilding {name} (operation {op.id})"
            return "/console/projections"

        return await console.act(request, "projection:rebuild", body)

    @post("/console/projections/{name:str}/pause", opt=PUBLIC, include_in_schema=False)
    async def pause(request: Request[Any, Any, Any], name: PathText) -> Response[Any]:
        async def body(visit: Visit, form: dict[str, Any]) -> str:
            await operator.pause(visit.runtime, name, by=_by(visit))
            visit.session.flash = f"{name} paused"
            return "/console/projections"

        return await console.act(request, "projection:pause", body)

    @post("/console/projections/{name:str}/resume", opt=PUBLIC, include_in_schema=False)
    async def resume(request: Request[Any, Any, Any], name: PathText) -> Response[Any]:
        async def body(visit: Visit, form: dict[str, Any]) -> str:
            await operator.resume(visit.runtime, name)
            visit.session.flash = f"{name} resumed"
            return "/console/projections"

        return await console.act(request, "projection:resume", body)

    @post("/console/parked/{seq:int}/retry", opt=PUBLIC, include_in_schema=False)
    async def retry(request: Request[Any, Any, Any], seq: PathInt) -> Response[Any]:
        async def body(visit: Visit, form: dict[str, Any]) -> str:
            identity = form.get("identity") or None
            done = await operator.retry(visit.runtime, seq, identity=identity, by=_by(visit))
            if done is None:
                visit.session.flash = f"message #{seq} is not parked"
            elif done.retried.outcome == "applied":
                rebuilt = ", ".join(sorted(done.rebuilds))
                visit.session.flash = (
                    f"message #{seq} applied at position {done.retried.position}"
                    + (f"; rebuilding {rebuilt} to include it" if rebuilt else "")
                )
            elif done.retried.outcome == "duplicate":
                visit.session.flash = f"message #{seq}: the event was applied already"
            else:
                visit.session.flash = f"message #{seq} is still parked: {done.retried.reason}"
            return "/console/parked"

        return await console.act(request, "parked:retry", body)

    @post("/console/parked/{seq:int}/skip", opt=PUBLIC, include_in_schema=False)
    async def skip(request: Request[Any, Any, Any], seq: PathInt) -> Response[Any]:
        async def body(visit: Visit, form: dict[str, Any]) -> str:
            identity = form.get("identity") or None
            done = await operator.skip(visit.runtime, seq, identity=identity, by=_by(visit))
            visit.session.flash = f"message #{seq} " + ("skipped" if done else "is not parked")
            return "/console/parked"

        return await console.act(request, "parked:skip", body)

    @post("/console/verify", opt=PUBLIC, include_in_schema=False)
    async def verify(request: Request[Any, Any, Any]) -> Response[Any]:
        async def body(visit: Visit, form: dict[str, Any]) -> str:
            op = operator.check_chains(visit.runtime, by=_by(visit))
            return f"/console/verify?op={op.id}"

        return await console.act(request, "store:verify", body)

    return [rebuild, pause, resume, retry, skip, verify]
