"""The part of a SQL read model every backend shares: a connection per role
(one writer, one reader), each on its own thread, transactions around plain
synchronous functions, and SQL rendered from ``{table}`` / ``?`` templates.

``SQLiteReadModel`` (stdlib ``sqlite3``) and ``PostgresReadModel`` (psycopg)
fill in how to connect, quote and begin; everything else (builds, checkpoints,
pointer switch, queries) is written once against ``Connection``."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from eventfold.errors import ReadModelError
from eventfold.store.routing import OnLag, ReplicaHealth, Route
from eventfold.subscriptions.projection import Cursor
from eventfold.subscriptions.sqltemplate import Dialect, render
from eventfold.urls import SchemeRegistry

T = TypeVar("T")
Role = str
"""``write``, ``read`` (the primary), or ``replica:<host:port>``."""


class Connection(abc.ABC):
    """One database connection, used by one thread at a time."""

    dialect: Dialect

    def __init__(self) -> None:
        self._rendered: dict[str, str] = {}

    def sql(self, template: str) -> str:
        rendered = self._rendered.get(template)
        if rendered is None:
            rendered = self._rendered[template] = render(template, {}, self.dialect)
        return rendered

    def execute(self, template: str, params: Sequence[Any] = ()) -> Cursor:
        return self.raw_execute(self.sql(template), params)

    @abc.abstractmethod
    def raw_execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    @abc.abstractmethod
    def raw_executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    def quote(self, physical: str) -> str:
        """The quoted identifier of a generated (checked) table or index name."""

    @property
    def pipelined(self) -> bool:
        """Whether the current transaction sends statements without waiting
        for each result (``begin(..., pipeline=True)`` on a backend that can)."""
        return False

    @abc.abstractmethod
    def begin(self, role: Role, *, pipeline: bool = False) -> None:
        """Begin a transaction. ``pipeline``: the backend may send statements
        without waiting for each result (errors then surface later, at the
        next result read or at commit, so they cannot be told apart)."""

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def compact(self) -> None:
        """After dropping tables: leave no copy of their rows behind where the
        backend can (outside any transaction)."""
        return None


class BuildTx:
    """The ``tx`` a projection handler (or a query) gets: SQL over one build's
    tables. Only the projection's declared table names can appear as
    ``{name}``; they become the build's quoted physical names."""

    def __init__(
        self,
        conn: Connection,
        tables: Mapping[str, str],
        label: str,
        rendered: dict[str, str] | None = None,
    ) -> None:
        self.conn = conn
        self.dialect: str = conn.dialect
        self.tables = dict(tables)
        self._label = label
        self._rendered: dict[str, str] = {} if rendered is None else rendered

    def sql(self, template: str) -> str:
        rendered = self._rendered.get(template)
        if rendered is None:
            rendered = render(template, self.tables, self.conn.dialect, what=lambda: self._label)
            self._rendered[template] = rendered
        return rendered

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.conn.raw_execute(self.sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.raw_executemany(self.sql(sql), rows)

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.execute(sql, params).fetchone()

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.execute(sql, params).fetchall()


class ReadModel(abc.ABC):
    """A SQL database holding read models, separate from the event store.
    Open one with ``open_read_model(url)``; use ``async with`` or ``close()``."""

    dialect: Dialect

    def __init__(self, url: str) -> None:
        self.url = url
        self._executors: dict[Role, ThreadPoolExecutor] = {}
        self._conns: dict[Role, Connection] = {}
        self._setup_done = False
        self._setup_lock: asyncio.Lock | None = None
        self._closed = False
        self.commits = 0
        """Write transactions committed so far (a cheap change counter)."""

    # --- to implement -----------------------------------------------------------------

    @abc.abstractmethod
    def _connect(self, role: Role) -> Connection:
        """Open a connection (called on the role's own thread)."""

    # --- running work -------------------------------------------------------------------

    def _executor(self, role: Role) -> ThreadPoolExecutor:
        executor = self._executors.get(role)
        if executor is None:
            executor = self._executors[role] = ThreadPoolExecutor(
                1, thread_name_prefix=f"eventfold-readmodel-{role}"
            )
        return executor

    def _in_transaction(self, role: Role, fn: Callable[[Connection], T], pipeline: bool) -> T:
        conn = self._conns.get(role)
        if conn is None:
            conn = self._conns[role] = self._connect(role)
        try:
            conn.begin(role, pipeline=pipeline)
            result = fn(conn)
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:  # the connection broke: open a new one next time
                self._conns.pop(role, None)
                _close_quietly(conn)
            raise
        if role == "write":
            self.commits += 1
        return result

    async def _run(self, role: Role, fn: Callable[[Connection], T], pipeline: bool = False) -> T:
        if self._closed:
            raise ReadModelError(f"read model {self.url} is closed")
        loop = asyncio.get_running_loop()
        call = functools.partial(self._in_transaction, role, fn, pipeline)
        return await loop.run_in_executor(self._executor(role), call)

    async def setup(self) -> None:
        """Create the bookkeeping tables if they are missing (done once)."""
        if self._setup_done:
            return
        if self._setup_lock is None:
            self._setup_lock = asyncio.Lock()
        async with self._setup_lock:
            if not self._setup_done:
                from eventfold.subscriptions.builds import ensure_schema

                await self._run("write", ensure_schema)
                self._setup_done = True

    pipelines = False
    """Whether ``write(..., pipeline=True)`` sends statements without waiting
    for each one (PostgreSQL); where not, the flag changes nothing."""

    async def write(self, fn: Callable[[Connection], T], *, pipeline: bool = False) -> T:
        """Run ``fn(conn)`` in a write transaction on the writer thread: all of
        it commits, or none of it (on any exception, which is re-raised)."""
        await self.setup()
        return await self._run("write", fn, pipeline)

    async def compact(self) -> None:
        """Leave no copies of dropped rows behind where the backend can (SQLite:
        fold the write-ahead log into the file and truncate it)."""
        await self.setup()

        def run() -> None:
            conn = self._conns.get("write")
            if conn is None:
                conn = self._conns["write"] = self._connect("write")
            conn.compact()

        await asyncio.get_running_loop().run_in_executor(self._executor("write"), run)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` in a read-only transaction that sees one snapshot."""
        await self.setup()
        return await self._run("read", fn)

    # --- replicas -----------------------------------------------------------------------

    replica_wait: float = 1.0
    """How long a query with a position token waits for a replica to reach it."""
    on_lag: OnLag = "primary"
    """Past ``replica_wait``: query the ``primary``, or answer ``stale``."""

    @property
    def has_replicas(self) -> bool:
        return False

    def _replica_roles(self) -> list[Role]:
        """The roles of the replicas that take reads now, first choice first."""
        return []

    async def _replica_failed(self, role: Role, exc: Exception) -> bool:
        """``exc`` came from replica ``role``: whether to read elsewhere
        (a backend marks the replica down if its connection broke)."""
        return False

    async def read_routed(
        self,
        fn: Callable[[Connection], T],
        *,
        route: Route = "replica",
        accept: Callable[[T], bool] | None = None,
        primary: bool = True,
    ) -> tuple[T, str] | None:
        """``fn(conn)`` in a read-only transaction on a replica that is up
        (the first that answers and whose result ``accept`` takes) where
        ``route`` is ``replica``, else on the primary (unless ``primary`` is
        False: then None); and who answered, ``primary`` or the replica's
        ``host:port``."""
        await self.setup()
        if route == "replica":
            for role in self._replica_roles():
                try:
                    result = await self._run(role, fn)
                except Exception as exc:
                    if await self._replica_failed(role, exc):
                        continue
                    raise
                if accept is None or accept(result):
                    return result, role.removeprefix("replica:")
        if not primary:
            return None
        return await self._run("read", fn), "primary"

    async def replica_health(self) -> list[ReplicaHealth]:
        """Each replica's state and lag as last checked (none: empty)."""
        return []

    # --- lifecycle ----------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        for role, executor in list(self._executors.items()):
            conn = self._conns.pop(role, None)
            if conn is not None:
                await loop.run_in_executor(executor, _close_quietly, conn)
            executor.shutdown(wait=False)
        self._executors.clear()

    async def __aenter__(self) -> ReadModel:
        await self.setup()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection may fail too
        conn.close()


ReadModelOpener = Callable[..., ReadModel]
"""``opener(url, **options)`` returns the read model at ``url`` (unopened)."""

_read_models: SchemeRegistry[ReadModelOpener] = SchemeRegistry("read model backend", "read_model")


def register_read_model(scheme: str, opener: ReadModelOpener) -> None:
    """Make ``open_read_model`` open URLs of ``scheme`` with ``opener(url, **options)``."""
    _read_models.register(scheme, opener)


def open_read_model(url: str, **options: Any) -> ReadModel:
    """A read model at ``url``: ``sqlite:///path.db`` (a file of its own, not
    the event store's) or ``postgresql://user@host/db`` (``?schema=name`` puts
    the tables in that schema), or a scheme added with ``register_read_model``.
    Nothing is opened until first use."""
    return _read_models.entry(url)(url, **options)


def _open_sqlite(url: str, **options: Any) -> ReadModel:
    from eventfold.subscriptions.readmodel_sqlite import SQLiteReadModel

    return SQLiteReadModel.from_url(url, **options)


def _open_postgres(url: str, **options: Any) -> ReadModel:
    from eventfold.subscriptions.readmodel_postgres import PostgresReadModel

    return PostgresReadModel.from_url(url, **options)


register_read_model("sqlite", _open_sqlite)
register_read_model("postgresql", _open_postgres)
register_read_model("postgres", _open_postgres)
