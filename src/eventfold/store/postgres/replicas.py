"""Hot standbys of a PostgreSQL primary, and a monitor of their health and lag.

Every ``interval`` seconds the monitor asks the primary how much WAL it has
written (``pg_current_wal_lsn``) and each replica whether it is still a
standby, how much it has replayed (``pg_last_wal_replay_lsn``) and whether
replay is paused. It keeps the primary's recent positions with the time it
saw them, so a replica's lag in seconds is how long ago the primary had
written the oldest WAL the replica has not replayed (0 when it has replayed
everything): a quiet primary makes no lag however old the last write is.

A replica is ``up`` while it answers, is a standby, and lags at most
``max_lag`` seconds; ``lagging`` beyond that; ``down`` when it does not
answer or was promoted. A read that fails on a replica marks it ``down`` at
once (``mark_down``); only a later check that finds it answering and caught
up puts it back. ``on_up`` and ``on_down`` let the owner open and close what
it keeps per replica (the store's connection pools).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg

from eventfold.store.postgres.queries import describe
from eventfold.store.routing import ReplicaHealth, ReplicaState

log = logging.getLogger("eventfold.store.postgres")

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
Hook = Callable[["Replica"], Awaitable[None]]

PRIMARY_LSN = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
"""The primary's WAL position in bytes (what ``primary_lsn`` reads)."""
_REPLICA = (
    "SELECT pg_is_in_recovery(),"
    " pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint,"
    " CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END"
)
_HISTORY = 4096  # samples of the primary's WAL position kept (an hour at 1 s)


class Replica:
    """One standby: where it is, and what the last check found."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.name = describe(conninfo).removeprefix("postgresql://").split("/", 1)[0]
        self.state: ReplicaState = "unknown"
        self.lag_seconds: float | None = None
        self.lag_bytes: int | None = None
        self.replay_paused = False
        self.head: int | None = None
        self.error: str | None = None
        self.checked_at: float | None = None
        self.probe: Conn | None = None

    @property
    def usable(self) -> bool:
        return self.state == "up"

    def health(self) -> ReplicaHealth:
        return ReplicaHealth(
            name=self.name,
            state=self.state,
            lag_seconds=None if self.lag_seconds is None else round(self.lag_seconds, 3),
            lag_bytes=self.lag_bytes,
            replay_paused=self.replay_paused,
            head=self.head,
            error=self.error,
            checked_at=self.checked_at,
        )


class ReplicaMonitor:
    """Checks ``replicas`` against the primary every ``interval`` seconds in
    a background task (``start``), and at once with ``check``.

    ``primary_lsn()`` reads the primary's WAL position (through the owner's
    pool); ``head(conn)``, if given, reads a replica's visible head for
    ``/status``; ``connect(conninfo)`` opens a probe connection."""

    def __init__(
        self,
        replicas: Sequence[Replica],
        *,
        primary_lsn: Callable[[], Awaitable[int]],
        connect: Callable[[str], Awaitable[Conn]],
        interval: float,
        max_lag: float,
        head: Callable[[Conn], Awaitable[int | None]] | None = None,
        on_up: Hook | None = None,
        on_down: Hook | None = None,
    ) -> None:
        self.replicas = list(replicas)
        self._primary_lsn = primary_lsn
        self._connect = connect
        self.interval = interval
        self.max_lag = max_lag
        self._head = head
        self._on_up = on_up
        self._on_down = on_down
        self._samples: deque[tuple[float, int]] = deque(maxlen=_HISTORY)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and self.replicas and not self._closed:
            self._task = asyncio.create_task(self._run(), name="eventfold-replica-monitor")

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for replica in self.replicas:
            await _close(replica.probe)
            replica.probe = None

    async def _run(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception as exc:  # a check never ends the monitor
                log.warning("checking replicas failed: %s", exc)

    # --- checking -------------------------------------------------------------------

    async def check(self) -> None:
        """Check every replica now (one round; concurrent callers share it)."""
        async with self._lock:
            now = time.monotonic()
            try:
                primary = await asyncio.wait_for(self._primary_lsn(), self._bound)
            except Exception as exc:  # the primary is the owner's business: lag unknown
                log.debug("replica monitor: primary WAL position unknown: %s", exc)
                primary = None
            if primary is not None:
                self._samples.append((now, primary))
            await asyncio.gather(*(self._check_one(r, primary, now) for r in self.replicas))

    @property
    def _bound(self) -> float:
        return max(1.0, 2 * self.interval)

    async def _check_one(self, replica: Replica, primary: int | None, now: float) -> None:
        try:
            found = await asyncio.wait_for(self._probe(replica), self._bound)
        except Exception as exc:
            await _close(replica.probe)
            replica.probe = None
            await self.mark_down(replica, f"{type(exc).__name__}: {exc}".strip())
            return
        finally:
            replica.checked_at = time.time()
        standby, replayed, paused, head = found
        replica.replay_paused = bool(paused)
        replica.head = head
        if not standby:
            await self.mark_down(replica, "not a standby (promoted?)")
            return
        if primary is not None:
            replica.lag_bytes = max(0, primary - replayed)
            replica.lag_seconds = self._lag(replayed, now)
        lagging = replica.lag_seconds is not None and replica.lag_seconds > self.max_lag
        state: ReplicaState = "lagging" if lagging else "up"
        was = replica.state
        replica.state = state
        replica.error = None
        if state == "up" and was != "up":
            if was != "unknown":
                log.info("replica %s is %s again", replica.name, state)
            if self._on_up is not None:
                await self._on_up(replica)

    async def _probe(self, replica: Replica) -> tuple[bool, int, bool, int | None]:
        if replica.probe is None or replica.probe.closed:
            replica.probe = await self._connect(replica.conninfo)
        conn = replica.probe
        cur = await conn.execute(_REPLICA)
        row = await cur.fetchone()
        assert row is not None
        head = await self._head(conn) if self._head is not None and row[0] else None
        return bool(row[0]), int(row[1] or 0), bool(row[2]), head

    def _lag(self, replayed: int, now: float) -> float:
        """Seconds since the primary wrote the oldest WAL not replayed yet."""
        oldest_missing: float | None = None
        for at, position in reversed(self._samples):
            if position <= replayed:
                break
            oldest_missing = at
        return 0.0 if oldest_missing is None else now - oldest_missing

    async def mark_down(self, replica: Replica, error: str) -> None:
        """``replica`` failed: no reads go there until a check finds it up."""
        was = replica.state
        replica.state = "down"
        replica.error = error
        if was != "down":
            log.warning("replica %s is down: %s", replica.name, error)
            if self._on_down is not None:
                await self._on_down(replica)

    def health(self) -> list[ReplicaHealth]:
        return [replica.health() for replica in self.replicas]


async def _close(conn: Conn | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.close()
