"""Read models in a PostgreSQL database (or a schema of one) through psycopg.
Table names go through ``psycopg.sql.Identifier``; values are parameters.
Queries run in REPEATABLE READ, READ ONLY transactions: the pointer row and
the rows it points to come from one snapshot.

With ``replicas`` (hot standbys of the database, ``?replicas=host:port,...``),
``read_routed`` runs reads there: the query service's named queries, its
waits for a position, and the mirror's reads. A monitor
(``eventfold.store.postgres.replicas``) checks their health and lag; a
replica that fails is skipped (and marked down if its connection broke)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from eventfold.errors import ConfigurationError
from eventfold.store.routing import OnLag, ReplicaHealth, check_on_lag
from eventfold.subscriptions.projection import Cursor
from eventfold.subscriptions.readmodel import Connection, ReadModel, Role, _close_quietly
from eventfold.subscriptions.sqltemplate import check_name

try:
    import psycopg
    from psycopg import sql

    from eventfold.store.postgres.errors import is_connection_failure
    from eventfold.store.postgres.options import replica_conninfo
    from eventfold.store.postgres.replicas import PRIMARY_LSN, Replica, ReplicaMonitor
except ImportError as exc:  # pragma: no cover - depends on installed extras
    raise ConfigurationError(
        "PostgreSQL read models need the 'postgres' extra: pip install 'eventfold[postgres]'",
        setting="read_model",
    ) from exc

PRIMARY_LSN = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
_REPLICA_OPTIONS = (
    "replicas",
    "replica_wait",
    "on_lag",
    "replica_max_lag",
    "replica_check_interval",
)


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
    database or schema. ``replicas`` are hot standbys of it to read from
    (``host:port`` or URLs); ``replica_wait``, ``on_lag``, ``replica_max_lag``
    and ``replica_check_interval`` mean what they mean for a PostgreSQL
    event store (docs/postgres.md)."""

    dialect = "postgresql"
    pipelines = True

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str | None = None,
        replicas: Sequence[str] = (),
        replica_wait: float = 1.0,
        on_lag: OnLag = "primary",
        replica_max_lag: float = 5.0,
        replica_check_interval: float = 1.0,
    ) -> None:
        if schema is not None:
            check_name(schema, "schema")
        shown = conninfo if schema is None else f"{conninfo} (schema {schema})"
        super().__init__(shown)
        self.conninfo = conninfo
        self.schema = schema
        for name, value in (
            ("replica_wait", replica_wait),
            ("replica_max_lag", replica_max_lag),
            ("replica_check_interval", replica_check_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigurationError(f"{name} must be a number of seconds >= 0", setting=name)
        if replica_check_interval <= 0:
            raise ConfigurationError(
                "replica_check_interval must be > 0", setting="replica_check_interval"
            )
        self.replica_wait = float(replica_wait)
        self.on_lag = check_on_lag(on_lag)
        found = [Replica(replica_conninfo(conninfo, r)) for r in replicas]
        self._replicas = {f"replica:{replica.name}": replica for replica in found}
        self._check_interval = float(replica_check_interval)
        self._max_lag = float(replica_max_lag)
        self._monitor: ReplicaMonitor | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresReadModel:
        """``postgresql://user@host:port/db``; ``?schema=name`` picks a schema,
        ``?replicas=host:port,...`` names hot standbys to read from."""
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        given: dict[str, Any] = {}
        rest = []
        for key, value in query:
            if key == "schema" or key in _REPLICA_OPTIONS:
                given[key] = value
            else:
                rest.append((key, value))
        given.update(options)
        conninfo = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(rest)))
        unknown = sorted(set(given) - {"schema", *_REPLICA_OPTIONS})
        if unknown:
            raise ConfigurationError(f"unknown options {unknown}", setting="read_model")
        kwargs: dict[str, Any] = {"schema": given.get("schema")}
        replicas = given.get("replicas", ())
        kwargs["replicas"] = (
            [r.strip() for r in replicas.split(",") if r.strip()]
            if isinstance(replicas, str)
            else list(replicas)
        )
        for name in ("replica_wait", "replica_max_lag", "replica_check_interval"):
            if name in given:
                try:
                    kwargs[name] = float(given[name])
                except (TypeError, ValueError):
                    raise ConfigurationError(
                        f"{name} must be a number of seconds, not {given[name]!r}", setting=name
                    ) from None
        if "on_lag" in given:
            kwargs["on_lag"] = given["on_lag"]
        return cls(conninfo, **kwargs)

    def _connect(self, role: Role) -> Connection:
        replica = self._replicas.get(role)
        conninfo = self.conninfo if replica is None else replica.conninfo
        return _PostgresConnection(conninfo, self.schema, role)

    # --- replicas -------------------------------------------------------------------

    @property
    def has_replicas(self) -> bool:
        return bool(self._replicas)

    async def setup(self) -> None:
        await super().setup()
        if self._replicas and self._monitor is None and not self._closed:
            self._monitor = ReplicaMonitor(
                list(self._replicas.values()),
                primary_lsn=self._primary_lsn,
                connect=_probe_connection,
                interval=self._check_interval,
                max_lag=self._max_lag,
                on_down=self._drop_connection,
            )
            await self._monitor.check()
            self._monitor.start()

    async def _primary_lsn(self) -> int:
        def lsn(conn: Connection) -> int:
            return int(conn.raw_execute(PRIMARY_LSN).fetchone()[0])

        return await self._run("read", lsn)

    async def _drop_connection(self, replica: Replica) -> None:
        role = f"replica:{replica.name}"
        conn = self._conns.pop(role, None)
        if conn is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor(role), _close_quietly, conn)

    def _replica_roles(self) -> list[Role]:
        return [role for role, replica in self._replicas.items() if replica.usable]

    async def _replica_failed(self, role: Role, exc: Exception) -> bool:
        if not isinstance(exc, psycopg.Error):
            return False
        if is_connection_failure(exc) and self._monitor is not None:
            await self._monitor.mark_down(self._replicas[role], f"{type(exc).__name__}: {exc}")
        return True  # lost, or it lacks what the primary has: read the primary

    async def replica_health(self) -> list[ReplicaHealth]:
        return [] if self._monitor is None else self._monitor.health()

    async def close(self) -> None:
        if self._monitor is not None:
            await self._monitor.close()
        await super().close()


async def _probe_connection(conninfo: str) -> psycopg.AsyncConnection[tuple[Any, ...]]:
    return await psycopg.AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=10)
