"""Read models in a PostgreSQL database (or a schema of one) through psycopg.
Table names go through ``psycopg.sql.Identifier``; values are parameters.
Queries run in REPEATABLE READ, READ ONLY transactions: the pointer row and
the rows it points to come from one snapshot."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from eventfold.errors import ConfigurationError
from eventfold.subscriptions.projection import Cursor
from eventfold.subscriptions.readmodel import Connection, ReadModel, Role
from eventfold.subscriptions.sqltemplate import check_name

try:
    import psycopg
    from psycopg import sql
except ImportError as exc:  # pragma: no cover - depends on installed extras
    raise ConfigurationError(
        "PostgreSQL read models need the 'postgres' extra: pip install 'eventfold[postgres]'",
        setting="read_model",
    ) from exc


class _PostgresConnection(Connection):
    dialect = "postgresql"

    def __init__(self, conninfo: str, schema: str | None, role: Role) -> None:
        super().__init__()
        self.raw = psycopg.connect(conninfo, autocommit=True)
        if schema is not None:
            ident = sql.Identifier(schema)
            if role == "write":
                self.raw.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
            self.raw.execute(sql.SQL("SET search_path TO {}").format(ident))

    def raw_execute(self, sql_text: str, params: Sequence[Any] = ()) -> Cursor:
        return self.raw.execute(sql_text, params)

    def raw_executemany(self, sql_text: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(sql_text, rows)

    def quote(self, physical: str) -> str:
        return sql.Identifier(physical).as_string(self.raw)

    def begin(self, role: Role) -> None:
        if role == "write":
            self.raw.execute("BEGIN")
        else:
            self.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def commit(self) -> None:
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()


class PostgresReadModel(ReadModel):
    """Read models in the PostgreSQL database at ``conninfo``; with ``schema``,
    in that schema (created if missing). Keep it apart from the event store's
    database or schema."""

    dialect = "postgresql"

    def __init__(self, conninfo: str, *, schema: str | None = None) -> None:
        if schema is not None:
            check_name(schema, "schema")
        shown = conninfo if schema is None else f"{conninfo} (schema {schema})"
        super().__init__(shown)
        self.conninfo = conninfo
        self.schema = schema

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresReadModel:
        """``postgresql://user@host:port/db``; ``?schema=name`` picks a schema."""
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        schema = options.pop("schema", None)
        rest = []
        for key, value in query:
            if key == "schema":
                schema = value
            else:
                rest.append((key, value))
        conninfo = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(rest)))
        if options:
            raise ConfigurationError(f"unknown options {sorted(options)}", setting="read_model")
        return cls(conninfo, schema=schema)

    def _connect(self, role: Role) -> Connection:
        return _PostgresConnection(self.conninfo, self.schema, role)
