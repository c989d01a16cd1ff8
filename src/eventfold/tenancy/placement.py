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
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from eventfold.errors import ConfigurationError, StoreError
from eventfold.security.principal import check_tenant


class Place(msgspec.Struct, frozen=True):
    """One tenant's databases."""

    tenant: str
    server: str
    store: str
    read_model: str
    outcomes: str


def _with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    query.append(("schema", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _kind(url: str) -> str:
    scheme = url.split("://", 1)[0].lower().split("+", 1)[0]
    if scheme == "sqlite" and url.startswith("sqlite:///"):
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise ConfigurationError(
        f"a tenant server is sqlite:///directory or postgresql://…, not {url!r}",
        setting="servers",
    )


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
            _kind(url)

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
        base = self.server_url(server)
        if _kind(base) == "sqlite":
            root = base.split("?", 1)[0].removeprefix("sqlite:///").rstrip("/")
            return Place(
                tenant,
                server,
                store=f"sqlite:///{root}/{tenant}/events.db",
                read_model=f"sqlite:///{root}/{tenant}/reads.db",
                outcomes=f"sqlite:///{root}/{tenant}/events-services.db",
            )
        return Place(
            tenant,
            server,
            store=_with_schema(base, f"t_{tenant}"),
            read_model=_with_schema(base, f"t_{tenant}_reads"),
            outcomes=_with_schema(base, f"t_{tenant}_services"),
        )


def prepare(place: Place) -> None:
    """Make room for a new tenant (its directory on SQLite)."""
    if place.store.startswith("sqlite:///"):
        Path(place.store.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def destroy(place: Place) -> None:
    """Delete a tenant's subject keys, then all of its data."""
    if place.store.startswith("sqlite:///"):
        _destroy_sqlite(Path(place.store.removeprefix("sqlite:///")))
    else:
        _destroy_postgres(place)


def _destroy_sqlite(events: Path) -> None:
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
