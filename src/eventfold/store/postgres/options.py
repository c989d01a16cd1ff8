"""Settings of a PostgreSQL store: keyword options and URL query parameters.

Options the store understands are taken out of the URL's query string; what
is left goes to libpq, which rejects parameters it does not know. Keyword
options win over URL parameters. Anything unknown or malformed raises
ConfigurationError before a connection is made.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from eventfold.errors import ConfigurationError
from eventfold.store.routing import check_on_lag

MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: longer names are truncated


@dataclasses.dataclass(frozen=True, slots=True)
class PostgresOptions:
    """Everything a PostgresStore can be told. Timeouts are in seconds; 0 turns
    the server-side timeout off (not recommended). ``create=False`` refuses
    to create the schema (StoreNotFound) where there is none."""

    schema: str = "eventfold"
    pool_min_size: int = 1
    pool_max_size: int = 10
    pool_timeout: float = 30.0
    connect_timeout: float = 10.0
    lock_timeout: float = 5.0
    statement_timeout: float = 30.0
    idle_in_transaction_session_timeout: float = 60.0
    group_commit: bool = True
    max_batch_events: int = 5_000
    notify: bool = True
    poll_interval: float = 1.0
    replicas: tuple[str, ...] = ()
    """Hot standbys to read from: ``host:port`` (the primary's URL with that
    host and port) or a whole ``postgresql://`` URL each."""
    replica_wait: float = 1.0
    """How long a read with a position token waits for a replica to see it."""
    on_lag: str = "primary"
    """Past ``replica_wait``: read the ``primary``, or answer ``stale``."""
    replica_max_lag: float = 5.0
    """A replica further behind than this many seconds gets no reads."""
    replica_check_interval: float = 1.0
    """Seconds between checks of each replica's health and lag."""
    create: bool = True


_FIELDS = {f.name: f for f in dataclasses.fields(PostgresOptions)}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, value: Any) -> Any:
    kind = _FIELDS[name].type
    if kind == "tuple[str, ...]":  # a comma-separated list, or a list of strings
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ConfigurationError(
                f"{name} must be a list of strings, not {value!r}", setting=name
            )
        return tuple(item.strip() for item in items if item.strip())
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigurationError(f"{name} must be a string, not {value!r}", setting=name)
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigurationError(f"{name} must be true or false, not {value!r}", setting=name)
    if kind == "int":
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ConfigurationError(
                    f"{name} must be an integer, not {value!r}", setting=name
                ) from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(f"{name} must be an integer, not {value!r}", setting=name)
        return value
    # float (seconds)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigurationError(
                f"{name} must be a number of seconds, not {value!r}", setting=name
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}", setting=name)
    return float(value)


def check_schema_name(schema: str) -> str:
    """Any name is quoted as an identifier, never spliced into SQL; refuse only
    names PostgreSQL would truncate or cannot store."""
    if not schema:
        raise ConfigurationError("schema must not be empty", setting="schema")
    if "\x00" in schema:
        raise ConfigurationError("schema must not contain NUL characters", setting="schema")
    if len(schema.encode()) > MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(
            f"schema name longer than {MAX_IDENTIFIER_BYTES} bytes: {schema[:20]!r}...",
            setting="schema",
        )
    if schema.lower().startswith("pg_"):
        raise ConfigurationError("schema names starting with 'pg_' are reserved", setting="schema")
    return schema


def _validate(options: PostgresOptions) -> PostgresOptions:
    check_schema_name(options.schema)
    if options.pool_min_size < 1:
        raise ConfigurationError("pool_min_size must be >= 1", setting="pool_min_size")
    if options.pool_max_size < max(options.pool_min_size, 2):
        raise ConfigurationError(
            "pool_max_size must be >= 2 and >= pool_min_size", setting="pool_max_size"
        )
    if not 1 <= options.max_batch_events <= 100_000:
        raise ConfigurationError(
            "max_batch_events must be between 1 and 100000", setting="max_batch_events"
        )
    for name in (
        "pool_timeout",
        "connect_timeout",
        "lock_timeout",
        "statement_timeout",
        "idle_in_transaction_session_timeout",
        "poll_interval",
        "replica_wait",
        "replica_max_lag",
        "replica_check_interval",
    ):
        value = getattr(options, name)
        if value < 0 or value > 86_400:
            raise ConfigurationError(f"{name} must be between 0 and 86400 seconds", setting=name)
    for name in ("pool_timeout", "connect_timeout", "poll_interval", "replica_check_interval"):
        if getattr(options, name) == 0:
            raise ConfigurationError(f"{name} must be > 0", setting=name)
    check_on_lag(options.on_lag)
    return options


def replica_conninfo(primary: str, replica: str) -> str:
    """The connection string of ``replica`` (``host[:port]``, or a whole
    ``postgresql://`` URL) for a store whose primary is ``primary``: the
    primary's user, password, database and libpq settings, on the replica's
    host and port."""
    if "://" in replica:
        scheme = urlsplit(replica).scheme.lower().split("+", 1)[0]
        if scheme not in ("postgresql", "postgres"):
            raise ConfigurationError(
                f"not a PostgreSQL replica URL: {replica!r}", setting="replicas"
            )
        conninfo = urlunsplit(("postgresql", *urlsplit(replica)[1:]))
    else:
        host, sep, port = replica.rpartition(":")
        if not sep:
            host, port = replica, ""
        if not host or (port and not port.isdigit()):
            raise ConfigurationError(
                f"a replica is host:port or a postgresql:// URL, not {replica!r}",
                setting="replicas",
            )
        extra = {"host": host.strip("[]")}
        if port:
            extra["port"] = port
        conninfo = make_conninfo(primary, **extra)
    try:
        conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise ConfigurationError(
            f"invalid replica {replica!r}: {exc}", setting="replicas"
        ) from None
    return conninfo


def parse(url: str, options: Mapping[str, Any]) -> tuple[str, PostgresOptions]:
    """Split ``url`` and keyword ``options`` into a libpq connection string and
    the store's own settings."""
    if not isinstance(url, str):
        raise ConfigurationError(f"not a PostgreSQL URL: {url!r}", setting="url")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"malformed URL: {exc}", setting="url") from None
    scheme = parts.scheme.lower().split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(f"not a PostgreSQL URL: {url!r}", setting="url")
    values: dict[str, Any] = {}
    libpq: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _FIELDS:
            values[key] = value
        else:
            libpq.append((key, value))
    unknown = sorted(set(options) - set(_FIELDS))
    if unknown:
        known = ", ".join(sorted(_FIELDS))
        raise ConfigurationError(
            f"unknown PostgreSQL store option(s) {unknown}; known: {known}", setting=unknown[0]
        )
    values.update(options)
    settings = PostgresOptions(**{k: _coerce(k, v) for k, v in values.items()})
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(libpq), ""))
    try:
        conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise ConfigurationError(f"invalid connection URL: {exc}", setting="url") from None
    return conninfo, _validate(settings)
