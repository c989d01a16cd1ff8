"""Security for both HTTP apps: every route but ``/health`` authenticates
(``Security``) before anything else is done, checks the permission its
route declares (``opt={"permission": …}``), and leaves the principal for
the handler. Missing or bad credentials: 401 with ``WWW-Authenticate``; a
permission the policy does not grant: 403. Both before the body is read, so
a refused request changes nothing. The OpenAPI document declares the
accepted schemes."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme
from litestar.types import Guard

from eventfold.errors import PermissionDenied
from eventfold.security.authn import Security
from eventfold.security.principal import Principal
from eventfold.services.http_common import openapi_config as documentation

_KEY = "eventfold_principal"

PUBLIC = {"public": True}
"""Route options of a route open to anyone (``/health``)."""


def permission(name: str | None) -> dict[str, Any]:
    """Route options: the permission a route needs (None: authentication only)."""
    return {"permission": name}


def guard(security: Security | None) -> Guard:
    """The guard of every route: authenticate, then check the route's permission."""

    async def check(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        if security is None or handler.opt.get("public"):
            return
        principal = await security.authenticate(connection.headers)
        needed = handler.opt.get("permission")
        if needed is not None:
            security.require(principal, needed)
        connection.state[_KEY] = principal

    return check


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The request's authenticated principal (None when security is off)."""
    found = connection.state.get(_KEY)
    return found if isinstance(found, Principal) else None


def require(
    security: Security | None, connection: ASGIConnection[Any, Any, Any, Any], name: str
) -> None:
    """Check a permission known only once the request is read (an outcome's command)."""
    principal = principal_of(connection)
    if security is not None and principal is not None:
        security.require(principal, name)


def require_platform(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Tenant management is for principals bound to no tenant: one tenant's
    credentials never act on another, whatever roles they carry."""
    principal = principal_of(connection)
    if principal is not None and principal.tenant is not None:
        raise PermissionDenied(principal.id, "manage tenants with a tenant's credentials")


def openapi_config(title: str, security: Security | None) -> OpenAPIConfig:
    """The apps' OpenAPI settings (``http_common.openapi_config``), declaring
    the security schemes when authentication is on."""
    if security is None:
        return documentation(title)
    schemes: dict[str, SecurityScheme] = {}
    for name, spec in security.openapi().items():
        if spec["type"] == "http":
            schemes[name] = SecurityScheme(
                type="http", scheme=spec["scheme"], bearer_format=spec.get("bearerFormat")
            )
        else:
            schemes[name] = SecurityScheme(
                type="apiKey", name=spec["name"], security_scheme_in=spec["in"]
            )
    requirements: list[SecurityRequirement] = [{name: []} for name in schemes]
    return documentation(
        title,
        components=Components(security_schemes=schemes),  # type: ignore[arg-type]
        security=requirements,
    )
