"""``eventfold tenants`` (create, list, delete) and ``eventfold keys``
(create, list, revoke API keys). Both work on the control database named
by the tenants file (``--tenants``, or ``EVENTFOLD_TENANTS``); ``keys`` can
also name a control database of a single-tenant deployment (``--control``).

``--tenant NAME`` on ``verify``, ``export``, ``forget`` and ``eventfold
projections`` picks that tenant's databases from the tenants file."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import typer
from rich.table import Table

from eventfold.cli.bus import (
    NatsOption,
    NatsPasswordFileOption,
    NatsTokenFileOption,
    NatsUserOption,
    PrefixOption,
)
from eventfold.cli.common import console, errors, run
from eventfold.errors import ConfigurationError
from eventfold.security.apikeys import APIKeyStore, create_key, open_api_keys
from eventfold.tenancy.catalog import Tenants
from eventfold.tenancy.placement import Place, Tenancy

TENANTS_ENV = "EVENTFOLD_TENANTS"

TenantsOption = Annotated[
    str | None,
    typer.Option(
        "--tenants",
        envvar=TENANTS_ENV,
        help="the tenants file (TOML: control database, servers); see docs/security.md",
    ),
]
TenantOption = Annotated[
    str | None,
    typer.Option("--tenant", envvar="EVENTFOLD_TENANT", help="work on this tenant's databases"),
]

tenants_app = typer.Typer(help="Tenants: create, list, delete.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)


def tenancy(path: str | None) -> Tenancy:
    if path is None:
        raise ConfigurationError(
            f"name the tenants file with --tenants or {TENANTS_ENV}", setting="tenants"
        )
    return Tenancy.from_file(path)


async def tenant_place(tenant: str, tenants_file: str | None) -> Place:
    """Where ``tenant``'s databases are (``UnknownTenant`` if it has none)."""
    async with Tenants(tenancy(tenants_file)) as catalog:
        return await catalog.place(tenant)


def place_for(tenant: str | None, tenants_file: str | None) -> Place | None:
    return None if tenant is None else run(tenant_place(tenant, tenants_file))


def store_of(store: str | None, tenant: str | None, tenants_file: str | None) -> str:
    """The event store a command works on: the tenant's, or ``--store``."""
    place = place_for(tenant, tenants_file)
    if place is not None:
        if store is not None:
            raise typer.BadParameter("give --store or --tenant, not both", param_hint="--store")
        return place.store
    if store is None:
        raise typer.BadParameter(
            "name the store (--store or EVENTFOLD_STORE)", param_hint="--store"
        )
    return store


@tenants_app.command("create")
def create(
    tenant: str,
    tenants: TenantsOption = None,
    server: Annotated[
        str | None, typer.Option("--server", help="the server to place it on")
    ] = None,
) -> None:
    """Create a tenant: record it and create its event store on its server."""

    async def main() -> str:
        async with Tenants(tenancy(tenants)) as catalog:
            return (await catalog.create(tenant, server=server)).server

    placed = run(main())
    console().print(f"tenant {tenant!r} created on {placed!r}")


@tenants_app.command("list")
def list_tenants(tenants: TenantsOption = None) -> None:
    """The tenants and their servers."""

    async def main() -> Table:
        async with Tenants(tenancy(tenants)) as catalog:
            table = Table("tenant", "server", "status", "created", title="tenants")
            for info in await catalog.list():
                table.add_row(info.tenant, info.server, info.status, info.created_at)
            return table

    console().print(run(main()))


@tenants_app.command("delete")
def delete(
    tenant: str,
    tenants: TenantsOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="do it: there is no undo")] = False,
    nats: NatsOption = None,
    prefix: PrefixOption = "eventfold",
    nats_user: NatsUserOption = None,
    nats_password_file: NatsPasswordFileOption = None,
    nats_token_file: NatsTokenFileOption = None,
) -> None:
    """Delete a tenant: its API keys, its subject keys, all of its data
    (events, read models, outcomes) and, with --nats (or EVENTFOLD_NATS), its
    bus streams. Stop the services serving it first, or delete it through the
    API (DELETE /admin/tenants/NAME), which does."""
    if not yes:
        raise typer.BadParameter(
            "deleting a tenant destroys its data: add --yes", param_hint="--yes"
        )
    from eventfold.services.runtime import ServeConfig, open_config_bus
    from eventfold.services.sites import delete_tenant_streams

    bus_config = ServeConfig(
        nats=nats,
        prefix=prefix,
        nats_user=nats_user,
        nats_password_file=str(nats_password_file) if nats_password_file else None,
        nats_token_file=str(nats_token_file) if nats_token_file else None,
    )

    async def main() -> None:
        async with Tenants(tenancy(tenants)) as catalog:
            if bus_config.nats is not None:
                bus = open_config_bus(bus_config)
                try:
                    await delete_tenant_streams(bus, bus_config.prefix, tenant)
                finally:
                    await bus.close()
            await catalog.delete(tenant)

    run(main())
    console().print(f"tenant {tenant!r} deleted")
    if nats is None:
        console().print("no --nats given: bus streams, if the tenant had any, were left")


ControlOption = Annotated[
    str | None,
    typer.Option(
        "--control",
        envvar="EVENTFOLD_CONTROL",
        help="the control database holding API keys (default: the tenants file's)",
    ),
]


@contextlib.asynccontextmanager
async def _keys(control: str | None, tenants: str | None) -> AsyncIterator[APIKeyStore]:
    store = open_api_keys(control if control is not None else tenancy(tenants).control)
    try:
        yield store
    finally:
        await store.close()


@keys_app.command("create")
def create_api_key(
    principal: Annotated[str, typer.Option("--principal", help="who the key speaks for")],
    role: Annotated[list[str] | None, typer.Option("--role", help="a role (repeat)")] = None,
    scope: Annotated[list[str] | None, typer.Option("--scope", help="a scope (repeat)")] = None,
    tenant: TenantOption = None,
    control: ControlOption = None,
    tenants: TenantsOption = None,
) -> None:
    """Create an API key and print it once: only its digest is kept."""

    async def main() -> tuple[str, str]:
        async with _keys(control, tenants) as store:
            if tenant is not None and control is None:
                await tenant_place(tenant, tenants)  # the tenant must exist
            key, secret = await create_key(
                store, principal, tenant=tenant, roles=role, scopes=scope
            )
            return key.key_id, secret

    key_id, secret = run(main())
    errors().print(f"key {key_id} created; it is shown once, keep it now:", style="bold")
    print(secret, flush=True)


@keys_app.command("list")
def list_keys(
    tenant: TenantOption = None, control: ControlOption = None, tenants: TenantsOption = None
) -> None:
    """The keys (never the keys themselves): id, principal, tenant, roles, state."""

    async def main() -> Table:
        async with _keys(control, tenants) as store:
            table = Table("key id", "principal", "tenant", "roles", "scopes", "revoked")
            for key in await store.list(tenant=tenant):
                table.add_row(
                    key.key_id,
                    key.principal,
                    key.tenant or "-",
                    ", ".join(key.roles),
                    ", ".join(key.scopes),
                    key.revoked_at or "-",
                )
            return table

    console().print(run(main()))


@keys_app.command("revoke")
def revoke(key_id: str, control: ControlOption = None, tenants: TenantsOption = None) -> None:
    """Revoke a key: it is refused from the next request on."""

    async def main() -> bool:
        async with _keys(control, tenants) as store:
            return await store.revoke(key_id)

    if not run(main()):
        console().print(f"no active key {key_id!r}")
        raise typer.Exit(1)
    console().print(f"key {key_id} revoked")
