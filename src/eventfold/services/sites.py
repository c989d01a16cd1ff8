"""Which running services answer a request: the one ``Runtime`` of a
single-tenant deployment, or, with tenancy, the runtime of the tenant the
caller's credentials are bound to (started on first use, each on the
tenant's own databases and bus subjects). A tenant never comes from a
header or a path: only from the authenticated principal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from eventfold.errors import PermissionDenied
from eventfold.messaging.api import Bus
from eventfold.messaging.topology import Topology
from eventfold.security.principal import Principal
from eventfold.services.runtime import Runtime, ServeConfig, ServiceDefinition, open_config_bus
from eventfold.tenancy.catalog import TenantInfo, Tenants

log = logging.getLogger("eventfold.services")


class Site(Protocol):
    async def runtime(self, principal: Principal | None) -> Runtime:
        """The runtime that serves ``principal`` (None: security is off)."""
        ...


class OneRuntime:
    """A single-tenant site: every request goes to ``runtime``."""

    def __init__(self, runtime: Runtime) -> None:
        self.one = runtime

    async def runtime(self, principal: Principal | None) -> Runtime:
        return self.one


def tenant_prefix(prefix: str, tenant: str) -> str:
    """The bus prefix of a tenant's subjects and streams."""
    return f"{prefix}_{tenant}"


async def delete_tenant_streams(bus: Bus, prefix: str, tenant: str) -> None:
    """Remove a tenant's bus streams (its events and its queued commands)."""
    topology = Topology(tenant_prefix(prefix, tenant))
    for stream in (topology.events_stream, topology.commands_stream):
        await bus.delete_stream(stream)


class TenantRuntimes:
    """One runtime per tenant, started when its first request arrives, on
    the tenant's place; ``delete`` stops it and destroys the tenant."""

    def __init__(self, definition: ServiceDefinition, config: ServeConfig, tenants: Tenants):
        self.definition = definition
        self.config = config
        self.catalog = tenants
        self._running: dict[str, Runtime] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def runtime(self, principal: Principal | None) -> Runtime:
        if principal is None or principal.tenant is None:
            who = principal.id if principal is not None else "anonymous"
            raise PermissionDenied(who, "use tenant data without a tenant in its credentials")
        return await self.for_tenant(principal.tenant)

    async def for_tenant(self, tenant: str) -> Runtime:
        running = self._running.get(tenant)
        if running is not None:
            return running
        lock = self._locks.setdefault(tenant, asyncio.Lock())
        async with lock:
            running = self._running.get(tenant)
            if running is None:
                place = await self.catalog.place(tenant)
                config = self.config.for_tenant(place, tenant_prefix(self.config.prefix, tenant))
                running = Runtime(self.definition, config)
                try:
                    await running.start()
                except BaseException:
                    await running.stop()
                    raise
                self._running[tenant] = running
                log.info("tenant %s: services started", tenant)
        return running

    async def create(self, tenant: str, server: str | None = None) -> TenantInfo:
        return await self.catalog.create(tenant, server=server)

    async def list(self) -> list[TenantInfo]:
        return await self.catalog.list()

    async def delete(self, tenant: str) -> None:
        """Stop the tenant's services, remove its bus streams, destroy it."""
        lock = self._locks.setdefault(tenant, asyncio.Lock())
        async with lock:
            await self._stop(tenant)
            await self._delete_streams(tenant)
            await self.catalog.delete(tenant)

    async def stop(self, tenant: str) -> None:
        """Stop the tenant's services (its next request starts them again)."""
        async with self._locks.setdefault(tenant, asyncio.Lock()):
            await self._stop(tenant)

    async def _stop(self, tenant: str) -> None:
        running = self._running.pop(tenant, None)
        if running is not None:
            await running.stop()
            log.info("tenant %s: services stopped", tenant)

    async def _delete_streams(self, tenant: str) -> None:
        if self.config.nats is None:
            return  # an in-process bus went with the runtime
        bus = open_config_bus(self.config)
        try:
            await delete_tenant_streams(bus, self.config.prefix, tenant)
        finally:
            await bus.close()

    async def close(self) -> None:
        running, self._running = list(self._running.values()), {}
        for runtime in running:
            with contextlib.suppress(Exception):
                await runtime.stop()
        await self.catalog.close()
