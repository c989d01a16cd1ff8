"""The PostgreSQL event store.

Appends go through one server-side function (``append_batch``, functions.py)
that checks and writes a whole group of append requests in a single statement;
concurrent appends from one process are coalesced into such groups (group
commit). Readers of the whole log see only rows of transactions older than
every transaction still running (the snapshot's xmin), so a late commit can
never slip in behind a position a reader has already passed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from itertools import starmap
from typing import Any, ClassVar, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from eventfold.errors import (
    EventfoldError,
    InvalidArgument,
    StoreError,
)
from eventfold.store.api import AppendResult, RecordedEvent, Snapshot, StreamAppend
from eventfold.store.base import LogWriter
from eventfold.store.capabilities import (
    Capabilities,
    ChainReader,
    DCBStore,
    Inspector,
    ReplicaReads,
    SnapshotStore,
    SQLReader,
    StreamDataReader,
    StreamLifecycle,
)
from eventfold.store.checks import (
    replayed_result,
    validate_appends,
    validate_snapshot,
    validate_stream_id,
)
from eventfold.store.lazy import StoredEvent
from eventfold.store.paging import INT64_MAX
from eventfold.store.postgres import options as _options
from eventfold.store.postgres.batch import (
    INT32_MAX,
    EventsRequest,
    Outcome,
    Request,
    as_stored,
    check_limits,
    decode,
    encode,
    encode_one,
    shares_event_ids,
)
from eventfold.store.postgres.dcb import PostgresDCB
from eventfold.store.postgres.errors import (
    RETRIES,
    RETRYABLE,
    is_connection_failure,
    translate,
    unknown_outcome,
)
from eventfold.store.postgres.groupcommit import GroupCommitter
from eventfold.store.postgres.lifecycle import PostgresLifecycle
from eventfold.store.postgres.notify import Listener
from eventfold.store.postgres.queries import Queries, configurer, describe
from eventfold.store.postgres.reads import Conn, PostgresReads
from eventfold.store.postgres.routed import Replicas, RoutedReads, health_of
from eventfold.store.postgres.schema import Names, migrate
from eventfold.store.routing import OnLag, ReplicaHealth, Route, check_on_lag, check_route

T = TypeVar("T")


def _connect_timeout(settings: _options.PostgresOptions) -> int:
    return max(1, round(settings.connect_timeout))  # libpq counts whole seconds


class PostgresStore(PostgresReads, LogWriter, PostgresDCB, PostgresLifecycle):
    """An event store in a PostgreSQL schema; open with
    ``await connect("postgresql://user@host/db", schema="eventfold")``.
    With ``replicas=[...]`` (hot standbys), ``reads("replica")`` reads there."""

    capabilities: ClassVar[Capabilities] = frozenset(
        {
            SnapshotStore,
            StreamDataReader,
            ChainReader,
            Inspector,
            SQLReader,
            DCBStore,
            ReplicaReads,
            StreamLifecycle,
        }
    )

    def __init__(
        self,
        url: str,
        conninfo: str,
        settings: _options.PostgresOptions,
        pool: AsyncConnectionPool[Conn],
        names: Names,
        offset: int,
    ) -> None:
        self.url = url
        self.options = settings
        self._conninfo = conninfo
        self._pool = pool
        self._names = names
        self._offset = offset
        self._channel = names.channel if settings.notify else None
        self._listener: Listener | None = None
        self._committer: GroupCommitter[Request, list[AppendResult]] = GroupCommitter(
            self._run_batch,
            size_of=lambda request: request.size,
            max_batch=settings.max_batch_events,
            flushers=2,
        )
        self._events_committer: GroupCommitter[EventsRequest, int] = GroupCommitter(
            self._run_events,
            size_of=lambda request: request.size,
            max_batch=settings.max_batch_events,
            flushers=2,
        )
        # Read-your-writes for the whole-log readers of this store: the highest
        # position this store wrote, and the highest bound a reader has seen.
        self._written = 0
        self._bound_seen = 0
        self._q = Queries(names)
        self._replicas: Replicas | None = None

    # --- opening and closing ----------------------------------------------------------

    @classmethod
    async def open(cls, url: str, **options: Any) -> PostgresStore:
        """Connect, create (unless ``create=False``: StoreNotFound) or
        upgrade the schema, and return a ready store."""
        conninfo, settings = _options.parse(url, options)
        names = Names(settings.schema)
        configure = configurer(settings)
        where = describe(conninfo)
        try:
            conn = await psycopg.AsyncConnection.connect(
                conninfo,
                autocommit=True,
                connect_timeout=_connect_timeout(settings),
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {where}: {exc}") from None
        try:
            await configure(conn)
            offset = await migrate(conn, names, create=settings.create)
        except EventfoldError:
            raise
        except psycopg.Error as exc:
            raise translate(exc, f"preparing schema {settings.schema!r} at {where}") from None
        finally:
            await conn.close()
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            conninfo,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            kwargs={"autocommit": True, "connect_timeout": _connect_timeout(settings)},
            configure=configure,
            timeout=settings.pool_timeout,
            name=f"eventfold-{settings.schema}",
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=settings.connect_timeout)
        except Exception as exc:
            await pool.close()
            raise StoreError(f"cannot open a connection pool to {where}: {exc}") from None
        store = cls(url, conninfo, settings, pool, names, offset)
        if settings.replicas:
            await store._open_replicas(
                [_options.replica_conninfo(conninfo, r) for r in settings.replicas], configure
            )
        return store

    async def _open_replicas(self, conninfos: list[str], configure: Any) -> None:
        """A pool per replica (opened once it is found up: a replica that is
        down does not keep the store from opening) and their monitor."""
        settings = self.options

        async def connect(conninfo: str) -> Conn:
            conn = await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, connect_timeout=_connect_timeout(settings)
            )
            await configure(conn)
            return conn

        pool_kwargs: dict[str, Any] = {
            "min_size": settings.pool_min_size,
            "max_size": settings.pool_max_size,
            "kwargs": {"autocommit": True, "connect_timeout": _connect_timeout(settings)},
            "configure": configure,
            "timeout": settings.pool_timeout,
        }
        self._replicas = Replicas(self, conninfos, pool_kwargs, connect)
        try:
            await self._replicas.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self._committer.drain()
        await self._events_committer.drain()
        if self._listener is not None:
            await self._listener.close()
        if self._replicas is not None:
            await self._replicas.close()
        await self._pool.close()

    @property
    def location(self) -> str:
        return describe(self._conninfo)

    # --- writing ---------------------------------------------------------------------

    async def _write(self, appends: list[StreamAppend]) -> list[AppendResult]:
        check_limits(appends)
        request = Request(appends)
        if self.options.group_commit:
            results = await self._committer.submit(request)
        else:
            outcome = await self._append_alone(request)
            if isinstance(outcome, BaseException):
                raise outcome
            results = outcome
        for result in results:
            self._written = max(self._written, result.position)
        return results

    async def append_within(
        self, conn: psycopg.AsyncConnection[Any], appends: Sequence[StreamAppend]
    ) -> list[AppendResult]:
        """Append inside the caller's open transaction on ``conn``.

        The events become visible when the caller commits; they are lost if it
        rolls back. Useful to write events and other rows atomically (and, in
        tests, to hold a transaction open on purpose). Notifies on commit.
        """
        self.check_open()
        checked = validate_appends(appends)
        check_limits(checked)
        request = Request(checked)
        try:
            outcome = await self._execute_one(conn, request)
        except psycopg.Error as exc:
            raise translate(exc, "append") from None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _run_batch(self, requests: list[Request]) -> list[Outcome]:
        """Run a group of requests in one statement (one transaction)."""
        if len(requests) == 1 or shares_event_ids(requests):
            return [await self._append_alone(request) for request in requests]
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(self._q.append, encode(requests, self._channel))
                rows = await cur.fetchall()
        except Exception as exc:
            if is_connection_failure(exc):
                error = unknown_outcome(exc)
                return [error for _ in requests]
            if not isinstance(exc, psycopg.Error | EventfoldError):
                raise
            # Something one request did broke the shared statement (a payload
            # jsonb refuses, a concurrent writer): run each one alone.
            return [await self._append_alone(request) for request in requests]
        outcomes: list[Outcome] = []
        for request, outcome in zip(requests, decode(requests, rows), strict=True):
            if outcome is None:  # some of its ids are stored: a retry, or a conflict
                outcome = await self._settle_replay(request, None)
            outcomes.append(outcome)
        return outcomes

    async def _append_alone(self, request: Request) -> Outcome:
        """One request in its own statement, retried after a conflict with a
        concurrent transaction (which is then committed and visible)."""
        error: BaseException | None = None
        for _attempt in range(RETRIES):
            try:
                async with self._pool.connection() as conn:
                    return await self._execute_one(conn, request)
            except Exception as exc:
                if is_connection_failure(exc):
                    return unknown_outcome(exc)
                if isinstance(exc, EventfoldError):
                    return exc
                if not isinstance(exc, psycopg.Error):
                    raise
                error = exc
                if not isinstance(exc, RETRYABLE):
                    break
        assert error is not None
        return translate(error, "append")

    async def _execute_one(self, conn: Conn, request: Request) -> Outcome:
        if len(request.appends) == 1:  # the usual lone append: the lighter function
            cur = await conn.execute(self._q.append_one, encode_one(request, self._channel))
        else:
            cur = await conn.execute(self._q.append, encode([request], self._channel))
        rows = await cur.fetchall()
        (outcome,) = decode([request], rows)
        if outcome is None:
            return await self._settle_replay(request, conn)
        return outcome

    async def _settle_replay(self, request: Request, conn: Conn | None) -> Outcome:
        """Some ids of ``request`` are already stored: a retry of an append that
        succeeded returns the original result; anything else is a DuplicateEventId.
        Streams of the request with no stored ids are appended normally."""
        ids = [event.event_id for item in request.appends for event in item.events]
        try:
            stored = await self._fetch_by_ids(ids, conn)
            results: list[AppendResult | None] = []
            for item in request.appends:
                mine = {e.event_id: stored[e.event_id] for e in item.events if e.event_id in stored}
                results.append(replayed_result(as_stored(item, mine), mine))
        except EventfoldError as exc:
            return exc
        except psycopg.Error as exc:
            return translate(exc, "append")
        pending = [
            item for item, result in zip(request.appends, results, strict=True) if result is None
        ]
        if pending:
            rest = Request(pending)
            if conn is None:
                outcome = await self._append_alone(rest)
            else:
                outcome = await self._execute_one(conn, rest)
            if isinstance(outcome, BaseException):
                return outcome
            fresh = iter(outcome)
            results = [next(fresh) if result is None else result for result in results]
        return [result for result in results if result is not None]

    async def _fetch_by_ids(
        self, ids: list[uuid.UUID], conn: Conn | None
    ) -> dict[uuid.UUID, RecordedEvent]:
        if conn is None:
            async with self._pool.connection() as own:
                cur = await own.execute(self._q.by_ids, [ids], binary=True)
                rows = await cur.fetchall()
        else:
            cur = await conn.execute(self._q.by_ids, [ids], binary=True)
            rows = await cur.fetchall()
        records = starmap(StoredEvent, rows)
        return {record.event_id: record for record in records}

    # --- reading (the primary; RoutedReads for replicas) ------------------------------

    async def _run(self, fn: Callable[[Conn], Awaitable[T]], what: str) -> T:
        try:
            async with self._pool.connection() as conn:
                return await fn(conn)
        except psycopg.Error as exc:
            raise translate(exc, what) from None
        except PoolTimeout as exc:
            raise translate(exc, what) from None

    async def _waker(self) -> Listener | None:
        return await self._ensure_listener()

    async def _before_log_read(self) -> None:
        await self._see_own_writes()

    async def _head_position(self) -> int:
        await self._see_own_writes()
        return await super()._head_position()

    async def _see_own_writes(self) -> None:
        """Wait (briefly) until what this store wrote is visible to whole-log
        readers: an older transaction still running holds it back."""
        if self._written < self._bound_seen:
            return
        deadline = time.monotonic() + max(self.options.lock_timeout, 1.0)
        delay = 0.001
        while True:
            rows = await self._fetch(self._q.bound, [self._offset], "read_all")
            self._bound_seen = max(self._bound_seen, int(rows[0][0]))
            if self._written < self._bound_seen or time.monotonic() > deadline:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    # --- replicas (ReplicaReads) ------------------------------------------------------

    def reads(
        self,
        route: Route = "replica",
        *,
        min_position: int | None = None,
        wait: float | None = None,
        on_lag: OnLag | None = None,
    ) -> RoutedReads:
        """A read-only view whose reads go to ``route`` (see
        eventfold.store.routing for the rule). With ``min_position``, its
        first read waits up to ``wait`` seconds (``replica_wait``) for a
        replica that can see that position; past it, it reads the primary
        (``on_lag="primary"``, the default from ``on_lag``) or answers from
        the replica and says it is stale (``on_lag="stale"``)."""
        self.check_open()
        check_route(route)
        if min_position is not None and (
            isinstance(min_position, bool) or not isinstance(min_position, int) or min_position < 0
        ):
            raise InvalidArgument("min_position must be an int >= 0", argument="min_position")
        if wait is not None and (not isinstance(wait, int | float) or not 0 <= wait <= 86_400):
            raise InvalidArgument("wait must be between 0 and 86400 seconds", argument="wait")
        return RoutedReads(
            self,
            route,
            min_position=min_position,
            wait=self.options.replica_wait if wait is None else float(wait),
            on_lag=check_on_lag(self.options.on_lag if on_lag is None else on_lag),
        )

    async def replica_health(self) -> list[ReplicaHealth]:
        """Each replica's state and lag as last checked (empty: no replicas)."""
        self.check_open()
        return health_of(self._replicas)

    async def _ensure_listener(self) -> Listener | None:
        if not self.options.notify:
            return None
        if self._listener is None:
            configure = configurer(self.options)

            async def connect() -> Conn:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=_connect_timeout(self.options),
                )
                await configure(conn)
                return conn

            self._listener = Listener(connect, self._names.channel)
        try:
            await self._listener.ensure_started()
        except psycopg.Error as exc:
            self._listener = None
            raise translate(exc, "wait_for_events") from None
        return self._listener

    # --- snapshots -------------------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        validate_snapshot(snapshot)
        _check_snapshot_ranges(snapshot)
        self.check_open()
        params = [
            snapshot.stream_id,
            snapshot.name,
            snapshot.version,
            snapshot.schema_version,
            bytes(snapshot.state),
        ]
        try:
            async with self._pool.connection() as conn:
                await conn.execute(self._q.save_snapshot, params)
        except psycopg.Error as exc:
            raise translate(exc, "save_snapshot") from None

    async def load_snapshot(self, stream_id: str, name: str) -> Snapshot | None:
        validate_stream_id(stream_id)
        _check_snapshot_name(name)
        self.check_open()
        rows = await self._fetch(self._q.load_snapshot, [stream_id, name], "load_snapshot")
        if not rows:
            return None
        version, schema_version, state = rows[0]
        return Snapshot(stream_id, name, int(version), int(schema_version), bytes(state))


def _check_snapshot_name(name: object) -> None:
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise InvalidArgument(f"invalid snapshot name {name!r}", argument="name")


def _check_snapshot_ranges(snapshot: Snapshot) -> None:
    """What the columns hold beyond validate_snapshot: bigint and integer."""
    if snapshot.version > INT64_MAX:
        raise InvalidArgument("snapshot version must be < 2**63", argument="version")
    if snapshot.schema_version > INT32_MAX:
        raise InvalidArgument("snapshot schema_version must be < 2**31", argument="schema_version")
