"""Administrative routes, each behind its permission (docs/security.md):

Command API:

- ``POST /admin/forget/{subject}`` (``subject:forget``): crypto-shred a data
  subject of the caller's tenant;
- ``GET /admin/verify`` (``store:verify``): check the tenant's hash chains;
- ``GET /admin/export`` (``store:export``): the tenant's log as JSON Lines,
  personal fields decrypted, forgotten ones ``[redacted]``;
- ``POST /admin/tenants``, ``GET /admin/tenants``, ``DELETE
  /admin/tenants/{tenant}`` (``tenant:create``, ``tenant:list``,
  ``tenant:delete``), where tenants are served, for credentials bound to no
  tenant.

Query API:

- ``POST /admin/projections/{name}/rebuild?purge=true``
  (``projection:rebuild``): rebuild a read model of the caller's tenant;
- ``POST /admin/projections/{name}/pause``, ``…/resume``
  (``projection:pause``, ``projection:resume``): stop and start applying
  events to it;
- ``GET /admin/parked`` (``status:read``): the parked bus messages;
- ``POST /admin/parked/{seq}/retry``, ``…/skip`` (``parked:retry``,
  ``parked:skip``): take one in again, or drop it from the list.

Both APIs: ``GET /metrics`` (``status:read``), the Prometheus text format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream

from eventfold.compliance.chain import verify
from eventfold.compliance.export import exported
from eventfold.errors import ConfigurationError, NotParked
from eventfold.messaging.mirror import Parked
from eventfold.observability.metrics import CONTENT_TYPE, METRICS
from eventfold.services import operator
from eventfold.services.http_common import json_body, path_param, query_param
from eventfold.services.http_security import permission, principal_of, require_platform
from eventfold.services.sites import Site, TenantRuntimes
from eventfold.store.capabilities import ChainReader, require
from eventfold.tenancy.catalog import TenantInfo

Name = Annotated[str, path_param()]
Seq = Annotated[int, path_param()]
Identity = Annotated[
    str | None,
    query_param(
        required=False,
        description="The bus stream's incarnation (GET /admin/parked); default: the current one",
    ),
]
Purge = Annotated[
    bool,
    query_param(description="Drop the replaced tables at once and compact (after a forget)."),
]


class NewTenant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tenant: str
    server: str | None = None


class Forgotten(msgspec.Struct, frozen=True):
    subject: str
    keys_destroyed: int


class Verified(msgspec.Struct, frozen=True):
    clean: bool
    streams: int
    events: int
    findings: list[dict[str, Any]]


class Rebuilt(msgspec.Struct, frozen=True):
    projection: str
    build: int
    purged: bool


class Paused(msgspec.Struct, frozen=True):
    projection: str
    paused: bool
    paused_by: str | None = None
    paused_at: str | None = None


class ParkedView(msgspec.Struct, frozen=True):
    """A parked bus message: where it was (stream, incarnation, sequence),
    its subject and headers, why it was parked, and its body as text."""

    stream: str
    identity: str
    seq: int
    subject: str
    reason: str
    parked_at: str
    headers: dict[str, str]
    body: str


class RetryAnswer(msgspec.Struct, frozen=True):
    """How a retry ended (``applied``, ``duplicate`` or ``parked`` again, with
    the reason), and the rebuilds it started (projection: operation id)."""

    seq: int
    outcome: str
    reason: str = ""
    position: int | None = None
    rebuilds: dict[str, int] = {}


class Skipped(msgspec.Struct, frozen=True):
    seq: int
    skipped: bool


def admin_routes(site: Site) -> list[HTTPRouteHandler]:
    """The command API's administrative routes."""

    @post(
        "/admin/forget/{subject:str}",
        operation_id="admin_forget",
        tags=["admin"],
        summary="Forget a data subject (destroy their keys)",
        status_code=200,
        opt=permission("subject:forget"),
    )
    async def forget(request: Request[Any, Any, Any], subject: Name) -> Forgotten:
        runtime = await site.runtime(principal_of(request))
        return Forgotten(subject, await runtime.forget(subject))

    @get(
        "/admin/verify",
        operation_id="admin_verify",
        tags=["admin"],
        summary="Check the hash chains",
        opt=permission("store:verify"),
    )
    async def verify_chains(request: Request[Any, Any, Any]) -> Verified:
        runtime = await site.runtime(principal_of(request))
        if runtime.store is None:
            raise ConfigurationError("this service has no event store to verify")
        report = await verify(require(runtime.store, ChainReader))
        findings = [msgspec.to_builtins(f) for f in report.findings]
        return Verified(report.clean, report.streams, report.events, findings)

    @get(
        "/admin/export",
        operation_id="admin_export",
        tags=["admin"],
        summary="The log as JSON Lines",
        opt=permission("store:export"),
    )
    async def export(request: Request[Any, Any, Any]) -> Stream:
        runtime = await site.runtime(principal_of(request))
        store = runtime.store
        assert store is not None

        async def lines() -> AsyncIterator[bytes]:
            encoder = msgspec.json.Encoder()
            async for r in store.read_all():
                yield encoder.encode(exported(r)) + b"\n"

        return Stream(lines(), media_type="application/x-ndjson")

    routes = [forget, verify_chains, export]
    if not isinstance(site, TenantRuntimes):
        return routes
    tenants = site

    @post(
        "/admin/tenants",
        operation_id="admin_tenant_create",
        tags=["admin"],
        summary="Create a tenant",
        status_code=201,
        opt=permission("tenant:create"),
    )
    async def create_tenant(
        request: Request[Any, Any, Any], data: Annotated[NewTenant, json_body(NewTenant)]
    ) -> TenantInfo:
        require_platform(request)
        return await tenants.create(data.tenant, server=data.server)

    @get(
        "/admin/tenants",
        operation_id="admin_tenant_list",
        tags=["admin"],
        summary="The tenants",
        opt=permission("tenant:list"),
    )
    async def list_tenants(request: Request[Any, Any, Any]) -> list[TenantInfo]:
        require_platform(request)
        return await tenants.list()

    @delete(
        "/admin/tenants/{tenant:str}",
        operation_id="admin_tenant_delete",
        tags=["admin"],
        summary="Delete a tenant: its keys and all of its data",
        opt=permission("tenant:delete"),
    )
    async def delete_tenant(request: Request[Any, Any, Any], tenant: Name) -> None:
        require_platform(request)
        await tenants.delete(tenant)

    return [*routes, create_tenant, list_tenants, delete_tenant]


def query_admin_routes(site: Site) -> list[HTTPRouteHandler]:
    """The query API's administrative routes."""

    @post(
        "/admin/projections/{name:str}/rebuild",
        operation_id="admin_rebuild",
        tags=["admin"],
        summary="Rebuild a read model from the log",
        status_code=200,
        opt=permission("projection:rebuild"),
    )
    async def rebuild(request: Request[Any, Any, Any], name: Name, purge: Purge = False) -> Rebuilt:
        runtime = await site.runtime(principal_of(request))
        assert runtime.runner is not None
        build = await runtime.runner.rebuild(name, purge=purge)
        return Rebuilt(name, build.build, purge)

    @post(
        "/admin/projections/{name:str}/pause",
        operation_id="admin_pause",
        tags=["admin"],
        summary="Stop applying events to a projection (it keeps answering queries)",
        status_code=200,
        opt=permission("projection:pause"),
    )
    async def pause(request: Request[Any, Any, Any], name: Name) -> Paused:
        principal = principal_of(request)
        runtime = await site.runtime(principal)
        found = await operator.pause(runtime, name, by=principal.id if principal else None)
        return Paused(name, True, found.paused_by, found.paused_at)

    @post(
        "/admin/projections/{name:str}/resume",
        operation_id="admin_resume",
        tags=["admin"],
        summary="Apply events to a paused projection again",
        status_code=200,
        opt=permission("projection:resume"),
    )
    async def resume(request: Request[Any, Any, Any], name: Name) -> Paused:
        runtime = await site.runtime(principal_of(request))
        await operator.resume(runtime, name)
        return Paused(name, False)

    @get(
        "/admin/parked",
        operation_id="admin_parked",
        tags=["admin"],
        summary="The parked bus messages, newest first",
        opt=permission("status:read"),
    )
    async def parked(request: Request[Any, Any, Any]) -> list[ParkedView]:
        runtime = await site.runtime(principal_of(request))
        return [parked_view(p) for p in await operator.mirror(runtime).parked()]

    @post(
        "/admin/parked/{seq:int}/retry",
        operation_id="admin_parked_retry",
        tags=["admin"],
        summary="Take a parked message in again",
        status_code=200,
        opt=permission("parked:retry"),
    )
    async def retry(
        request: Request[Any, Any, Any], seq: Seq, identity: Identity = None
    ) -> RetryAnswer:
        principal = principal_of(request)
        runtime = await site.runtime(principal)
        done = await operator.retry(
            runtime, seq, identity=identity, by=principal.id if principal else None
        )
        if done is None:
            raise NotParked(seq)
        r = done.retried
        return RetryAnswer(seq, r.outcome, r.reason, r.position, done.rebuilds)

    @post(
        "/admin/parked/{seq:int}/skip",
        operation_id="admin_parked_skip",
        tags=["admin"],
        summary="Drop a parked message from the list, applying nothing",
        status_code=200,
        opt=permission("parked:skip"),
    )
    async def skip(request: Request[Any, Any, Any], seq: Seq, identity: Identity = None) -> Skipped:
        principal = principal_of(request)
        runtime = await site.runtime(principal)
        if not await operator.skip(
            runtime, seq, identity=identity, by=principal.id if principal else None
        ):
            raise NotParked(seq)
        return Skipped(seq, True)

    return [rebuild, pause, resume, parked, retry, skip]


def parked_view(found: Parked) -> ParkedView:
    return ParkedView(
        stream=found.name,
        identity=found.identity,
        seq=found.seq,
        subject=found.subject,
        reason=found.reason,
        parked_at=found.parked_at,
        headers=found.headers,
        body=found.data.decode("utf-8", "replace"),
    )


def metrics_route(site: Site) -> HTTPRouteHandler:
    """``GET /metrics``: the process's metrics, in Prometheus's text format.
    They cover every tenant this process serves (labelled ``tenant``), so
    with tenants only credentials bound to no tenant may read them."""

    @get(
        "/metrics",
        operation_id="metrics",
        tags=["status"],
        summary="Metrics in the Prometheus text format",
        opt=permission("status:read"),
        media_type=CONTENT_TYPE,
    )
    async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        if isinstance(site, TenantRuntimes):
            require_platform(request)
        return Response(await METRICS.exposition(), media_type=CONTENT_TYPE)

    return metrics
