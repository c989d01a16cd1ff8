"""The console's routes on the query API, under ``/console/``.

| page | shows | needs |
| --- | --- | --- |
| ``/console/`` | store statistics, events per minute, services, bus | ``status:read`` |
| ``/console/streams`` | categories, streams, search by id or category | ``stream:read`` |
| ``/console/streams/<id>`` | events, data, metadata; state at a version or time | ``stream:read`` |
| ``/console/events/<pos>`` | an event, its correlation and causation chain | ``stream:read`` |
| ``/console/projections`` | position, lag, time to catch up, state | ``status:read`` |
| ``/console/parked`` | parked bus messages with their reason | ``status:read`` |
| ``/console/commands`` | recent command outcomes and failures | ``status:read`` |
| ``/console/verify`` | the hash-chain check, with progress and findings | ``store:verify`` |

Each action (a form, always POST) needs its own permission (``projection:
rebuild``, ``projection:pause``, ``projection:resume``, ``parked:retry``,
``parked:skip``, ``store:verify``), checked again when the form arrives;
the buttons are shown only to those who have it. These routes are outside
the APIs' header authentication: the console authenticates with its own
sessions (``eventfold.console.session``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect

from eventfold.console import render
from eventfold.console.session import COOKIE, LIFETIME, Session, Sessions, check_form
from eventfold.console.views import Pace
from eventfold.errors import (
    AuthenticationFailed,
    EventfoldError,
    PermissionDenied,
)
from eventfold.security.authn import Security
from eventfold.security.principal import Principal
from eventfold.services.http_common import PathText, status_of
from eventfold.services.http_security import PUBLIC
from eventfold.services.queries import Queries
from eventfold.services.runtime import Runtime
from eventfold.services.sites import Site

ACTIONS = (
    "projection:rebuild",
    "projection:pause",
    "projection:resume",
    "parked:retry",
    "parked:skip",
    "store:verify",
)

NAV = (
    ("overview", "/console/", "Overview"),
    ("streams", "/console/streams", "Streams"),
    ("projections", "/console/projections", "Projections"),
    ("parked", "/console/parked", "Parked"),
    ("commands", "/console/commands", "Commands"),
    ("verify", "/console/verify", "Verify"),
)


@dataclasses.dataclass
class Visit:
    """One request to the console: the session, who is asking, the runtime
    that serves them, and the cookie to set if the session is new."""

    request: Request[Any, Any, Any]
    session: Session
    principal: Principal | None
    runtime: Runtime
    sessions: Sessions
    queries: Queries
    pace: Pace
    cookie: Cookie | None = None

    def can(self, permission: str) -> bool:
        return self.sessions.allows(self.principal, permission)

    def page(self, template: str, active: str, status: int = 200, **context: Any) -> Response[Any]:
        flash, self.session.flash = self.session.flash, None
        return render.html(
            template,
            status=status,
            cookies=[self.cookie] if self.cookie is not None else None,
            nav=NAV,
            active=active,
            csrf=self.session.csrf,
            who=self.principal.id if self.principal is not None else None,
            secured=self.sessions.security is not None,
            can={p: self.can(p) for p in ACTIONS},
            flash=flash,
            **context,
        )


def _cookie(session: Session, request: Request[Any, Any, Any]) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=session.id,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=int(LIFETIME),
    )


def _error(exc: BaseException, secured: bool) -> Response[Any]:
    status = 403 if isinstance(exc, PermissionDenied) else status_of(exc)
    return render.html(
        "error.html",
        status=status,
        nav=NAV,
        active="",
        csrf="",
        who=None,
        secured=secured,
        can={},
        flash=None,
        status_code=status,
        error=type(exc).__name__,
        message=str(exc),
    )


class Console:
    """The console over ``site`` (see the module docstring)."""

    def __init__(self, site: Site, queries: Queries, security: Security | None) -> None:
        self.site = site
        self.queries = queries
        self.sessions = Sessions(security)
        self.pace = Pace()

    async def visit(self, request: Request[Any, Any, Any], permission: str) -> Visit:
        sessions = self.sessions
        session = sessions.get(request.cookies)
        cookie = None
        if session is None or not session.logged_in:
            if sessions.security is not None:
                raise AuthenticationFailed("log in first")
            if session is None:
                session = sessions.new()
                cookie = _cookie(session, request)
        principal = await sessions.principal(session)
        sessions.require(principal, permission)
        runtime = await self.site.runtime(principal)
        return Visit(
            request, session, principal, runtime, sessions, self.queries, self.pace, cookie
        )

    async def show(
        self,
        request: Request[Any, Any, Any],
        permission: str,
        body: Callable[[Visit], Awaitable[Response[Any]]],
    ) -> Response[Any]:
        """A page: the visitor checked, then ``body``; errors as pages."""
        try:
            return await body(await self.visit(request, permission))
        except AuthenticationFailed:
            return Redirect("/console/login", status_code=303)
        except EventfoldError as exc:
            return _error(exc, self.sessions.security is not None)

    async def act(
        self,
        request: Request[Any, Any, Any],
        permission: str,
        body: Callable[[Visit, dict[str, Any]], Awaitable[str]],
    ) -> Response[Any]:
        """An action: the form's CSRF token and origin checked, the visitor
        and the permission checked, then ``body`` (which returns where to go
        next, with a message for the session)."""
        form = dict(await request.form())
        session = self.sessions.get(request.cookies)
        if not check_form(session, form, request.headers):
            return _error(
                PermissionDenied("this form", "be sent from another page or site (CSRF)"),
                self.sessions.security is not None,
            )
        try:
            visit = await self.visit(request, permission)
            return Redirect(await body(visit, form), status_code=303)
        except AuthenticationFailed:
            return Redirect("/console/login", status_code=303)
        except EventfoldError as exc:
            return _error(exc, self.sessions.security is not None)


def console_routes(
    site: Site, *, definition_queries: Queries, security: Security | None
) -> list[HTTPRouteHandler]:
    """The console's routes (see the module docstring)."""
    from eventfold.console import actions, screens

    console = Console(site, definition_queries, security)

    @get("/console/static/{name:str}", opt=PUBLIC, include_in_schema=False)
    async def static(name: PathText) -> Response[bytes]:
        found = render.static(name)
        if found is None:
            return Response(b"not found", status_code=404, media_type="text/plain")
        data, media = found
        return Response(data, media_type=media, headers={"Cache-Control": "max-age=300"})

    @get("/console/login", opt=PUBLIC, include_in_schema=False)
    async def login_page(request: Request[Any, Any, Any]) -> Response[Any]:
        if security is None:
            return Redirect("/console/", status_code=303)
        session = console.sessions.get(request.cookies) or console.sessions.new()
        return render.html(
            "login.html",
            cookies=[_cookie(session, request)],
            nav=(),
            active="",
            csrf=session.csrf,
            who=None,
            secured=True,
            can={},
            flash=None,
            failed=False,
        )

    @post("/console/login", opt=PUBLIC, include_in_schema=False, status_code=200)
    async def login(request: Request[Any, Any, Any]) -> Response[Any]:
        form = dict(await request.form())
        old = console.sessions.get(request.cookies)
        if not check_form(old, form, request.headers):
            return _error(PermissionDenied("this form", "be sent from another site"), True)
        try:
            session = await console.sessions.login(old, str(form.get("credential", "")))
        except AuthenticationFailed:
            fresh = console.sessions.new()
            return render.html(
                "login.html",
                status=401,
                cookies=[_cookie(fresh, request)],
                nav=(),
                active="",
                csrf=fresh.csrf,
                who=None,
                secured=True,
                can={},
                flash=None,
                failed=True,
            )
        response: Response[Any] = Redirect("/console/", status_code=303)
        response.set_cookie(_cookie(session, request))
        return response

    @post("/console/logout", opt=PUBLIC, include_in_schema=False, status_code=200)
    async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
        form = dict(await request.form())
        session = console.sessions.get(request.cookies)
        if check_form(session, form, request.headers):
            console.sessions.logout(session)
        return Redirect("/console/login" if security else "/console/", status_code=303)

    return [static, login_page, login, logout, *screens.routes(console), *actions.routes(console)]
