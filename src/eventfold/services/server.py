"""Serving the two apps with uvicorn: the command API and the query API on
their own ports, in this process, over one ``Runtime`` (or, with tenancy,
one per tenant). SIGINT and SIGTERM stop both servers, then the runtimes
(background loops, stores, bus).

Safe by default: without ``security``, serving anywhere but a loopback
address is refused (``ConfigurationError``) unless ``insecure=True``, which
is logged loudly; tenancy without security is refused everywhere (a tenant
comes from credentials)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

import uvicorn

from eventfold.errors import ConfigurationError
from eventfold.observability.http import observed
from eventfold.security.authn import Security
from eventfold.services.http_commands import command_app
from eventfold.services.http_queries import query_app
from eventfold.services.runtime import Runtime, ServeConfig, ServiceDefinition
from eventfold.services.sites import OneRuntime, Site, TenantRuntimes
from eventfold.tenancy.catalog import Tenants

log = logging.getLogger("eventfold.services")


class _Server(uvicorn.Server):
    """Signals are handled once for all servers (by ``serve``), not by each."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def apps(runtime: Runtime | TenantRuntimes, *, security: Security | None = None) -> dict[str, Any]:
    """The ASGI apps of a started runtime (or of tenants' runtimes):
    ``command`` and/or ``query``, as its role says, each request observed
    (a span, and its latency in ``/metrics``)."""
    config, definition = runtime.config, runtime.definition
    site: Site = OneRuntime(runtime) if isinstance(runtime, Runtime) else runtime
    title = definition.title
    out: dict[str, Any] = {}
    if config.role in ("all", "command"):
        out["command"] = observed(
            command_app(
                site,
                definition.commands,
                security=security,
                max_body_size=config.max_body_size,
                max_wait=max(config.max_wait, 30.0),
                title=f"{title} commands",
            ),
            "command",
        )
    if config.role in ("all", "query"):
        out["query"] = observed(
            query_app(
                site,
                definition.queries,
                security=security,
                max_body_size=config.max_body_size,
                title=f"{title} queries",
            ),
            "query",
        )
    return out


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(
    config: ServeConfig, security: Security | None, host: str, *, insecure: bool
) -> None:
    """Refuse to serve without authentication where others can reach it."""
    if security is not None:
        return
    if config.tenancy is not None:
        raise ConfigurationError(
            "serving tenants needs authentication: a tenant comes from credentials",
            setting="tenancy",
        )
    if is_loopback(host):
        return
    if not insecure:
        raise ConfigurationError(
            f"refusing to serve on {host} without authentication: anyone who can reach it "
            "could send any command. Configure authentication (--jwt-* or --api-keys with "
            "--policy), listen on 127.0.0.1, or pass --insecure to accept the risk",
            setting="host",
        )
    log.warning(
        "INSECURE: serving on %s WITHOUT AUTHENTICATION (--insecure): anyone who can reach "
        "this address can send any command and read everything",
        host,
    )


@contextlib.asynccontextmanager
async def running(
    definition: ServiceDefinition, config: ServeConfig
) -> AsyncIterator[Runtime | TenantRuntimes]:
    """The started runtime of ``config``, or its tenants' runtimes."""
    if config.tenancy is None:
        async with Runtime(definition, config) as runtime:
            yield runtime
        return
    tenants = TenantRuntimes(definition, config, Tenants(config.tenancy))
    try:
        yield tenants
    finally:
        await tenants.close()


def _port(server: uvicorn.Server) -> int:
    for listener in getattr(server, "servers", []):
        for sock in listener.sockets:
            port: int = sock.getsockname()[1]
            return port
    return 0


async def serve(
    definition: ServiceDefinition,
    config: ServeConfig,
    *,
    host: str = "127.0.0.1",
    command_port: int = 8000,
    query_port: int = 8001,
    log_level: str = "warning",
    announce: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
    security: Security | None = None,
    insecure: bool = False,
    ssl: dict[str, Any] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set). Port 0 picks a free
    port; ``announce`` is told each API's URL once it listens. ``ssl``:
    uvicorn's TLS settings (``ssl_certfile``, ``ssl_keyfile`` …)."""
    check_exposure(config, security, host, insecure=insecure)
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    scheme = "https" if ssl else "http"
    async with running(definition, config) as runtime:
        ports = {"command": command_port, "query": query_port}
        servers: dict[str, _Server] = {}
        for role, app in apps(runtime, security=security).items():
            servers[role] = _Server(
                uvicorn.Config(
                    app,
                    host=host,
                    port=ports[role],
                    log_level=log_level,
                    lifespan="off",
                    access_log=False,
                    timeout_graceful_shutdown=5,
                    **(ssl or {}),
                )
            )
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
        tasks = [asyncio.create_task(s.serve()) for s in servers.values()]
        try:
            while not all(s.started for s in servers.values()):
                if any(t.done() for t in tasks):
                    break
                await asyncio.sleep(0.02)
            for role, server in servers.items():
                if server.started:
                    announce(f"eventfold serve: {role} API on {scheme}://{host}:{_port(server)}")
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
        finally:
            for server in servers.values():
                server.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            for sig in installed:
                loop.remove_signal_handler(sig)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
