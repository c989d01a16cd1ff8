"""Reads on hot standbys: the store's replicas with a connection pool each
(``Replicas``), and the read-only view whose reads go to them
(``RoutedReads``, from ``PostgresStore.reads``).

Where a routed read goes, call by call (each page of a long read is a call):

1. the replica this view used last, if it is still ``up``, else the other
   ``up`` replicas in turn, else the primary;
2. a replica that fails (connection lost, refused, a query cancelled by a
   recovery conflict, no free connection) is skipped for the next source,
   and marked ``down`` if its connection failed: the caller sees no error;
3. a replica that cannot see what this view has already seen (its bound is
   not past the view's *floor*: the highest head or position the view has
   returned, or its position token) is skipped too, so a view never goes
   back in time when it moves between servers, and a short read always
   covers the head read before it. The bound is checked on the same
   connection before the read; every server's bound only grows while it runs.

Positions are the same on every server of a physical replication cluster,
so a reader that moves from a replica to the primary and back continues
from its last position without skipping or repeating an event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from eventfold.errors import EventfoldError, StoreError
from eventfold.store.api import ANY, AppendResult, ExpectedVersion, NewEvent, StreamAppend
from eventfold.store.capabilities import (
    Capabilities,
    ChainReader,
    Inspector,
    SQLReader,
    StreamDataReader,
)
from eventfold.store.paging import Page
from eventfold.store.postgres.errors import is_connection_failure
from eventfold.store.postgres.notify import Listener
from eventfold.store.postgres.reads import Conn, PostgresReads
from eventfold.store.postgres.replicas import PRIMARY_LSN, Replica, ReplicaMonitor
from eventfold.store.routing import OnLag, ReplicaHealth, Route, Served, poll_until

if TYPE_CHECKING:
    from eventfold.store.postgres.store import PostgresStore

T = TypeVar("T")


class Replicas:
    """The store's hot standbys: a pool per replica that is up (opened when
    the monitor finds it up, closed when it goes down, so a restarted
    replica gets fresh connections), and the monitor."""

    def __init__(
        self,
        store: PostgresStore,
        conninfos: Sequence[str],
        pool_kwargs: dict[str, Any],
        connect: Callable[[str], Awaitable[Conn]],
    ) -> None:
        self._pool_kwargs = pool_kwargs
        self.pools: dict[str, AsyncConnectionPool[Conn]] = {}
        self.list = [Replica(conninfo) for conninfo in conninfos]
        self._turn = 0
        options = store.options

        async def primary_lsn() -> int:
            rows = await store._fetch(PRIMARY_LSN, (), "checking replicas")
            return int(rows[0][0])

        async def head(conn: Conn) -> int | None:
            try:
                cur = await conn.execute(store._q.head, [store._offset])
            except psycopg.errors.UndefinedTable:  # the schema is not replayed yet
                return None
            row = await cur.fetchone()
            return int(row[0]) if row is not None else None

        self.monitor = ReplicaMonitor(
            self.list,
            primary_lsn=primary_lsn,
            connect=connect,
            interval=options.replica_check_interval,
            max_lag=options.replica_max_lag,
            head=head,
            on_up=self._open_pool,
            on_down=self._close_pool,
        )

    async def start(self) -> None:
        """Check every replica once (so reads can go there at once), then
        keep checking in the background."""
        await self.monitor.check()
        self.monitor.start()

    async def close(self) -> None:
        await self.monitor.close()
        for name in list(self.pools):
            await self.pools.pop(name).close()

    async def _open_pool(self, replica: Replica) -> None:
        if replica.name in self.pools:
            return
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            replica.conninfo,
            name=f"eventfold-replica-{replica.name}",
            open=False,
            **self._pool_kwargs,
        )
        await pool.open(wait=False)
        self.pools[replica.name] = pool

    async def _close_pool(self, replica: Replica) -> None:
        pool = self.pools.pop(replica.name, None)
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.close(timeout=1.0)

    def candidates(self, first: Replica | None) -> list[Replica]:
        """The replicas that are up, ``first`` first, the others in turn."""
        up = [r for r in self.list if r.usable and r.name in self.pools]
        if first in up:
            return [first, *(r for r in up if r is not first)]
        if up:
            self._turn = (self._turn + 1) % len(up)
            up = up[self._turn :] + up[: self._turn]
        return up

    def health(self) -> list[ReplicaHealth]:
        return self.monitor.health()


class RoutedReads(PostgresReads):
    """A read-only view of a ``PostgresStore`` whose reads go to ``route``
    (see the module docstring for the rule). ``served`` says who answered
    the last read. It owns nothing: closing the store ends it."""

    capabilities: ClassVar[Capabilities] = frozenset(
        {StreamDataReader, ChainReader, Inspector, SQLReader}
    )

    def __init__(
        self,
        store: PostgresStore,
        route: Route,
        *,
        min_position: int | None,
        wait: float,
        on_lag: OnLag,
    ) -> None:
        self._store = store
        self.url = store.url
        self.options = store.options
        self._names = store._names
        self._offset = store._offset
        self._q = store._q
        self.route = route
        self.min_position = min_position
        self.wait = wait
        self.on_lag = on_lag
        self.served: Served | None = None
        self._floor = min_position if min_position is not None and route == "primary" else 0
        self._resolved = min_position is None or route == "primary"
        self._resolving = asyncio.Lock()  # reads that start together resolve once
        self._pinned: Replica | None = None  # on_lag="stale": answer from this replica
        self._to_primary = route == "primary"
        self._current: Replica | None = None

    @property
    def location(self) -> str:
        return self._store.location

    def check_open(self) -> None:
        self._store.check_open()

    async def close(self) -> None:
        return None

    async def _waker(self) -> Listener | None:
        return await self._store._ensure_listener()

    # --- read-only ------------------------------------------------------------------

    def _read_only(self) -> StoreError:
        return StoreError(f"{self.location}: a routed view only reads; append to the store")

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        raise self._read_only()

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        raise self._read_only()

    # --- what moves the floor -------------------------------------------------------

    async def _before_log_read(self) -> None:
        if self._store._replicas is None:  # the store's own rule on its one server
            await self._store._see_own_writes()

    async def _head_position(self) -> int:
        await self._before_log_read()
        head = await super()._head_position()
        self._floor = max(self._floor, head)
        return head

    async def _log_page(
        self,
        position: int,
        categories: tuple[str, ...] | None,
        types: tuple[str, ...] | None,
        want: int,
    ) -> Page:
        page, done = await super()._log_page(position, categories, types, want)
        if page:
            self._floor = max(self._floor, page[-1].position)
        return page, done

    async def _stream_page(
        self, stream_id: str, low: int, high: int, backwards: bool, want: int
    ) -> Page:
        page, done = await super()._stream_page(stream_id, low, high, backwards, want)
        if page:
            self._floor = max(self._floor, max(page[0].position, page[-1].position))
        return page, done

    # --- routing --------------------------------------------------------------------

    async def _run(self, fn: Callable[[Conn], Awaitable[T]], what: str) -> T:
        if not self._resolved:
            async with self._resolving:
                if not self._resolved:
                    await self._resolve()
                    self._resolved = True
        replicas = self._store._replicas
        if not self._to_primary and replicas is not None:
            if self._pinned is not None:
                order = [self._pinned] if self._pinned.usable else []
            else:
                order = replicas.candidates(self._current)
            for replica in order:
                pool = replicas.pools.get(replica.name)
                if pool is None:
                    continue
                try:
                    result = await self._on_replica(replica, pool, fn)
                except EventfoldError:
                    raise
                except (psycopg.Error, PoolTimeout) as exc:
                    # Lost or refused, busy, a query cancelled by a recovery conflict,
                    # a schema it has not replayed yet: the primary answers instead.
                    if is_connection_failure(exc):
                        await replicas.monitor.mark_down(replica, f"{what}: {exc}")
                    continue
                if result is not None:
                    self._current = replica
                    return result[0]
        if replicas is None:
            # The primary is the only server: its bound only grows, so only a
            # token needs checking.
            return await self._on_primary(fn, what, self.min_position or 0)
        return await self._on_primary(fn, what, self._floor)

    async def _on_replica(
        self, replica: Replica, pool: AsyncConnectionPool[Conn], fn: Callable[[Conn], Awaitable[T]]
    ) -> tuple[T] | None:
        """``(fn(conn),)`` on ``replica``, or None if it cannot see the floor."""
        timeout = min(self.options.pool_timeout, max(1.0, 2 * self.options.replica_check_interval))
        async with pool.connection(timeout=timeout) as conn:
            visible = None
            if self._floor or self.min_position is not None:
                visible = await _bound(conn, self) - 1
                if self._pinned is None and visible < self._floor:
                    return None
            result = await fn(conn)
        stale = (
            self.min_position is not None and visible is not None and visible < self.min_position
        )
        self.served = Served(
            route=self.route,
            source=replica.name,
            stale=stale,
            min_position=self.min_position,
            visible=visible,
        )
        return (result,)

    async def _on_primary(self, fn: Callable[[Conn], Awaitable[T]], what: str, floor: int) -> T:
        store = self._store
        visible: int | None = None

        async def run(conn: Conn) -> T:
            nonlocal visible
            if floor or self.min_position is not None:

                async def reached() -> bool:
                    nonlocal visible
                    visible = await _bound(conn, self) - 1
                    return visible >= floor

                # An older transaction still running holds the bound back: wait, bounded.
                await poll_until(reached, max(self.options.lock_timeout, 1.0))
            return await fn(conn)

        result = await store._run(run, what)
        self.served = Served(
            route=self.route,
            source="primary",
            fell_back=self.route == "replica" and store._replicas is not None,
            min_position=self.min_position,
            visible=visible,
        )
        return result

    async def _resolve(self) -> None:
        """A position token's first read: wait up to ``wait`` for a replica
        that can see it; past that, read the primary or answer stale."""
        replicas = self._store._replicas
        token = self.min_position
        assert token is not None
        if replicas is None:
            self._to_primary = True
            self._floor = token
            return
        best: tuple[int, Replica] | None = None

        async def seen() -> bool:
            nonlocal best
            for replica in replicas.candidates(self._current):
                pool = replicas.pools.get(replica.name)
                if pool is None:
                    continue
                try:
                    async with pool.connection(timeout=max(self.wait, 0.1)) as conn:
                        visible = await _bound(conn, self) - 1
                except Exception as exc:
                    if is_connection_failure(exc):
                        await replicas.monitor.mark_down(replica, f"read-your-writes: {exc}")
                    continue
                if best is None or visible > best[0]:
                    best = (visible, replica)
                if visible >= token:
                    self._current = replica
                    return True
            return False

        if await poll_until(seen, self.wait):
            self._floor = token
        elif self.on_lag == "stale" and best is not None:
            self._pinned = best[1]
        else:
            self._to_primary = True
            self._floor = token

    def __repr__(self) -> str:
        return f"RoutedReads({self.location!r}, route={self.route!r})"


async def _bound(conn: Conn, reads: PostgresReads) -> int:
    """The position below which ``conn``'s server shows every row now."""
    cur = await conn.execute(reads._q.bound, [reads._offset])
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def health_of(replicas: Replicas | None) -> list[ReplicaHealth]:
    return [] if replicas is None else replicas.health()
