"""Read models in a PostgreSQL database (or a schema of one) through psycopg.
Table names go through ``psycopg.sql.Identifier``; values are parameters.
Queries run in REPEATABLE READ, READ ONLY transactions: the pointer row and
the rows it points to come from one snapshot."""

from __future__ import annotations

import contextlib
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


class _PipelinedCursor:
    """A cursor whose statement may not have run yet: reading its row count
    waits for the results sent so far."""

    def __init__(self, cur: psycopg.Cursor[Any], pipeline: psycopg.Pipeline) -> None:
        self._cur = cur
        self._pipeline = pipeline

    @property
    def rowcount(self) -> int:
        self._pipeline.sync()
        return self._cur.rowcount

    @property
    def description(self) -> Any:
        self._pipeline.sync()
        return self._cur.description

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()


class _PostgresConnection(Connection):
    dialect = "postgresql"

    def __init__(self, conninfo: str, schema: str | None, role: Role) -> None:
        super().__init__()
        self.raw = psycopg.connect(conninfo, autocommit=True)
        self._pipeline: psycopg.Pipeline | None = None
        self._pipeline_cm: contextlib.AbstractContextManager[psycopg.Pipeline] | None = None
        if schema is not None:
            ident = sql.Identifier(schema)
            if role == "write":
                with contextlib.suppress(psycopg.errors.UniqueViolation):
                    self.raw.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
            self.raw.execute(sql.SQL("SET search_path TO {}").format(ident))

    @property
    def pipelined(self) -> bool:
        return self._pipeline is not None

    def raw_execute(self, sql_text: str, params: Sequence[Any] = ()) -> Cursor:
        cur = self.raw.execute(sql_text, params)
        if self._pipeline is not None:
            return _PipelinedCursor(cur, self._pipeline)
        return cur

    def raw_executemany(self, sql_text: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(sql_text, rows)

    def quote(self, physical: str) -> str:
        return sql.Identifier(physical).as_string(self.raw)

    def begin(self, role: Role, *, pipeline: bool = False) -> None:
        if role == "write":
            if pipeline:
                self._pipeline_cm = self.raw.pipeline()
                self._pipeline = self._pipeline_cm.__enter__()
            self.raw.execute("BEGIN")
        else:
            self.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def commit(self) -> None:
        self.raw.execute("COMMIT")
        self._pipeline = None
        pipeline, self._pipeline_cm = self._pipeline_cm, None
        if pipeline is not None:
            pipeline.__exit__(None, None, None)  # waits for every result; raises a failure

    def rollback(self) -> None:
        self._pipeline = None
        pipeline, self._pipeline_cm = self._pipeline_cm, None
        if pipeline is not None:
            with contextlib.suppress(psycopg.Error):
                pipeline.__exit__(None, None, None)
        if self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()


class PostgresReadModel(ReadModel):
    """Read models in the PostgreSQL database at ``conninfo``; with ``schema``,
    in that schema (created if missing). Keep it apart from the event store's
    database or schema."""

    dialect = "postgresql"
    pipelines = True

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
