"""The tenants of a deployment, kept in the control database
(``eventfold_tenant``), and their lifecycle: create, list, delete.

Creating a tenant records where it is placed and creates its event store
(file or schema). Deleting one marks it ``deleting`` (it is served no more),
removes its API keys, destroys its subject keys and all of its data, and
only then forgets the tenant: a delete that fails half-way is finished by
running it again."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from typing import Any

import msgspec

from eventfold.errors import TenantExists, UnknownTenant
from eventfold.security.apikeys import SQLAPIKeyStore
from eventfold.security.principal import check_tenant
from eventfold.store.api import EventStore
from eventfold.store.url import connect
from eventfold.subscriptions.readmodel import Connection, open_read_model
from eventfold.tenancy.placement import Place, Tenancy, destroy, prepare


class TenantInfo(msgspec.Struct, frozen=True):
    tenant: str
    server: str
    status: str
    created_at: str


_SCHEMA = """CREATE TABLE IF NOT EXISTS eventfold_tenant (
    tenant TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL
)"""
_SELECT = "SELECT tenant, server, status, created_at FROM eventfold_tenant"


def _info(row: Any) -> TenantInfo:
    return TenantInfo(row[0], row[1], row[2], row[3])


def _insert(info: TenantInfo, conn: Connection) -> bool:
    cur = conn.execute(
        "INSERT INTO eventfold_tenant (tenant, server, status, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (info.tenant, info.server, info.status, info.created_at),
    )
    return bool(cur.rowcount)


def _get(tenant: str, conn: Connection) -> TenantInfo | None:
    row = conn.execute(_SELECT + " WHERE tenant = ?", (tenant,)).fetchone()
    return None if row is None else _info(row)


def _all(conn: Connection) -> list[TenantInfo]:
    return [_info(r) for r in conn.execute(_SELECT + " ORDER BY tenant").fetchall()]


def _set_status(tenant: str, status: str, conn: Connection) -> None:
    conn.execute("UPDATE eventfold_tenant SET status = ? WHERE tenant = ?", (status, tenant))


def _remove(tenant: str, conn: Connection) -> None:
    conn.execute("DELETE FROM eventfold_tenant WHERE tenant = ?", (tenant,))


class Tenants:
    """The tenants of ``tenancy`` (an async context manager, or ``close()``).
    ``api_keys`` share the control database."""

    def __init__(self, tenancy: Tenancy) -> None:
        self.tenancy = tenancy
        self.database = open_read_model(tenancy.control)
        self.api_keys = SQLAPIKeyStore(self.database)
        self._ready = False

    async def __aenter__(self) -> Tenants:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _setup(self) -> None:
        if not self._ready:
            await self.database.write(lambda conn: conn.execute(_SCHEMA))
            self._ready = True

    async def create(self, tenant: str, *, server: str | None = None) -> TenantInfo:
        """Record a new tenant on ``server`` (the default one) and create its
        event store. ``TenantExists`` if the id is taken."""
        check_tenant(tenant)
        server = server or self.tenancy.default
        self.tenancy.server_url(server)
        await self._setup()
        info = TenantInfo(tenant, server, "active", datetime.now(UTC).isoformat())
        if not await self.database.write(functools.partial(_insert, info)):
            raise TenantExists(tenant)
        place = self.tenancy.place(tenant, server)
        await asyncio.to_thread(prepare, place)
        async with connect(place.store):
            pass
        return info

    async def list(self) -> list[TenantInfo]:
        await self._setup()
        found: list[TenantInfo] = await self.database.read(_all)
        return found

    async def get(self, tenant: str) -> TenantInfo:
        """An active tenant, or ``UnknownTenant``."""
        check_tenant(tenant)
        await self._setup()
        info: TenantInfo | None = await self.database.read(functools.partial(_get, tenant))
        if info is None or info.status != "active":
            raise UnknownTenant(tenant)
        return info

    async def place(self, tenant: str) -> Place:
        info = await self.get(tenant)
        return self.tenancy.place(tenant, info.server)

    async def connect(self, tenant: str) -> EventStore:
        """A store bound to ``tenant``: it opens the tenant's own database or
        schema, so nothing of another tenant can be read or written through
        it. Close it when done."""
        place = await self.place(tenant)
        return await connect(place.store)

    async def delete(self, tenant: str) -> None:
        """Destroy the tenant: its API keys, subject keys, events, read models
        and outcomes. Stop whatever serves it first."""
        check_tenant(tenant)
        await self._setup()
        info: TenantInfo | None = await self.database.read(functools.partial(_get, tenant))
        if info is None:
            raise UnknownTenant(tenant)
        await self.database.write(functools.partial(_set_status, tenant, "deleting"))
        await self.api_keys.delete_tenant(tenant)
        await asyncio.to_thread(destroy, self.tenancy.place(tenant, info.server))
        await self.database.write(functools.partial(_remove, tenant))

    async def close(self) -> None:
        await self.database.close()
