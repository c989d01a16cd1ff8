"""Where each tenant's data lives: a placement maps server names to base
URLs, and a tenant (placed on one server when it is created) gets its own
databases there:

- ``sqlite:///dir``: ``dir/<tenant>/events.db`` (events and subject keys),
  ``reads.db`` (read models), ``events-services.db`` (outcomes, checkpoints);
- ``postgresql://host/db``: schemas ``t_<tenant>``, ``t_<tenant>_reads`` and
  ``t_<tenant>_services`` of that database.

Several PostgreSQL servers spread tenants (and their writes) over machines;
a tenant stays on its server until it is moved (docs/security.md).
Destroying a tenant's place deletes its subject keys first (overwritten on
SQLite), then every file or schema."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from eventfold.errors import ConfigurationError, StoreError
from eventfold.security.principal import check_tenant
from eventfold.urls import SchemeRegistry, split_sqlite_url


class Place(msgspec.Struct, frozen=True):
    """One tenant's databases."""

    tenant: str
    server: str
    store: str
    read_model: str
    outcomes: str


class TenantServer(NamedTuple):
    """How tenants are placed on servers of one URL scheme:
    ``urls(base, tenant)`` gives a tenant's (store, read model, outcomes) URLs
    on the server at ``base`` (a ConfigurationError if ``base`` cannot hold
    tenants), ``prepare(place)`` makes room for a new tenant and
    ``destroy(place)`` deletes its subject keys, then all of its data."""

    urls: Callable[[str, str], tuple[str, str, str]]
    prepare: Callable[[Place], None]
    destroy: Callable[[Place], None]


_servers: SchemeRegistry[TenantServer] = SchemeRegistry("tenant server", "servers")


def register_tenant_server(scheme: str, server: TenantServer) -> None:
    """Let tenants be placed on servers whose URLs have ``scheme``."""
    _servers.register(scheme, server)


def _urls_of(base: str, tenant: str) -> tuple[str, str, str]:
    return _servers.entry(base).urls(base, tenant)


class Tenancy(msgspec.Struct, frozen=True, kw_only=True):
    """Multi-tenant serving: ``control`` is the database listing tenants and
    API keys; ``servers`` names the base URLs tenants are placed on; new
    tenants go to ``default`` unless told otherwise."""

    control: str
    servers: dict[str, str]
    default: str = "main"

    def __post_init__(self) -> None:
        if self.default not in self.servers:
            raise ConfigurationError(
                f"the default server {self.default!r} is not among the servers "
                f"({', '.join(sorted(self.servers)) or 'none'})",
                setting="default",
            )
        for url in self.servers.values():
            _urls_of(url, "probe")  # a base that cannot hold tenants is refused now

    @classmethod
    def from_file(cls, path: str | Path) -> Tenancy:
        """A TOML file::

        control = "sqlite:///control.db"
        default = "main"
        [servers]
        main = "postgresql://app@db1/shop"
        eu = "postgresql://app@db2/shop"

        Passwords do not belong here: use libpq's ``PGPASSFILE`` or
        ``PGPASSWORD`` (see docs/security.md)."""
        try:
            data = tomllib.loads(Path(path).read_text())
            return msgspec.convert(data, cls)
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read the tenants file {path}: {exc}") from None
        except msgspec.ValidationError as exc:
            raise ConfigurationError(f"{path}: {exc}", setting="tenants") from None

    def server_url(self, server: str) -> str:
        url = self.servers.get(server)
        if url is None:
            raise ConfigurationError(
                f"no server {server!r} (known: {', '.join(sorted(self.servers))})",
                setting="server",
            )
        return url

    def place(self, tenant: str, server: str) -> Place:
        check_tenant(tenant)
        store, read_model, outcomes = _urls_of(self.server_url(server), tenant)
        return Place(tenant, server, store=store, read_model=read_model, outcomes=outcomes)


def prepare(place: Place) -> None:
    """Make room for a new tenant (its directory on SQLite)."""
    _servers.entry(place.store).prepare(place)


def destroy(place: Place) -> None:
    """Delete a tenant's subject keys, then all of its data."""
    _servers.entry(place.store).destroy(place)


# --- SQLite: a directory per tenant ------------------------------------------------


def _sqlite_urls(base: str, tenant: str) -> tuple[str, str, str]:
    root, _ = split_sqlite_url(base, setting="servers")
    root = root.rstrip("/")
    return (
        f"sqlite:///{root}/{tenant}/events.db",
        f"sqlite:///{root}/{tenant}/reads.db",
        f"sqlite:///{root}/{tenant}/events-services.db",
    )


def _sqlite_events(place: Place) -> Path:
    return Path(split_sqlite_url(place.store)[0])


def _prepare_sqlite(place: Place) -> None:
    _sqlite_events(place).parent.mkdir(parents=True, exist_ok=True)


def _destroy_sqlite(place: Place) -> None:
    events = _sqlite_events(place)
    if events.exists():
        try:
            conn = sqlite3.connect(events, isolation_level=None)
            try:
                conn.execute("PRAGMA busy_timeout = 5000")
                conn.execute("PRAGMA secure_delete = ON")
                with contextlib.suppress(sqlite3.OperationalError):  # no key table: no keys
                    conn.execute("DELETE FROM eventfold_subject_keys")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{events}: cannot destroy the tenant's keys: {exc}") from exc
    shutil.rmtree(events.parent, ignore_errors=True)


# --- PostgreSQL: schemas per tenant ------------------------------------------------


def _with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    query.append(("schema", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _postgres_urls(base: str, tenant: str) -> tuple[str, str, str]:
    return (
        _with_schema(base, f"t_{tenant}"),
        _with_schema(base, f"t_{tenant}_reads"),
        _with_schema(base, f"t_{tenant}_services"),
    )


def _prepare_postgres(place: Place) -> None:
    """Nothing to do: the schemas are made when the databases are opened."""


def _destroy_postgres(place: Place) -> None:
    import psycopg
    from psycopg import sql

    from eventfold.store.postgres.options import parse

    conninfo, settings = parse(place.store, {})
    schemas = [settings.schema, f"{settings.schema}_reads", f"{settings.schema}_services"]
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
    except psycopg.Error as exc:
        raise StoreError(f"cannot drop the tenant's schemas: {exc}") from None


register_tenant_server("sqlite", TenantServer(_sqlite_urls, _prepare_sqlite, _destroy_sqlite))
_POSTGRES = TenantServer(_postgres_urls, _prepare_postgres, _destroy_postgres)
register_tenant_server("postgresql", _POSTGRES)
register_tenant_server("postgres", _POSTGRES)
