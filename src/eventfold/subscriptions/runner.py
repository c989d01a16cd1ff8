"""Runs projections: one lane per projection keeps its active build up to date
(building a new one first when the code's version is new), ``rebuild`` builds
fresh tables beside the serving ones and switches when they have caught up,
and queries read through the pointer, optionally waiting for a position."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from eventfold.errors import InvalidArgument, ProjectionNotReady, ReadModelTimeout
from eventfold.serialization.codec import Codec
from eventfold.store.api import EventStore
from eventfold.store.routing import OnLag, Route, Served, check_on_lag, route_reads
from eventfold.subscriptions import builds
from eventfold.subscriptions.builds import Build, Pause, drop_retired
from eventfold.subscriptions.freshness import Freshness, ProjectionStatus, QueryResult, measure
from eventfold.subscriptions.projection import Dispatch, Projection, ProjectionSet
from eventfold.subscriptions.queries import active_position, run_query, stored_builds
from eventfold.subscriptions.readmodel import Connection, ReadModel
from eventfold.subscriptions.retry import RetryPolicy
from eventfold.subscriptions.worker import BuildWorker, Progress

_POLL = 0.05  # seconds between checks of a read model another process writes


class ProjectionRunner:
    """Keeps ``projections`` in ``read_model`` up to date with ``store``.

    ``async with ProjectionRunner(...) as runner`` starts a lane per
    projection in the background and stops them on exit; ``catch_up()``
    instead runs each once up to the head. Batches of ``batch_size`` events are
    applied in one transaction each, with the checkpoint; a failing handler is
    retried per ``retry`` and then stops its projection with ``ProjectionFailed``
    (``wait_for`` and ``query`` on it raise that error, ``run`` too).
    ``count_limit`` caps how many log events a query reads to count its lag.
    The log is read on the store's replicas where it has some (``route``;
    see eventfold.store.routing): ``reads`` is what the lanes read."""

    def __init__(
        self,
        store: EventStore,
        read_model: ReadModel,
        projections: ProjectionSet | Iterable[Projection],
        codec: Codec | None = None,
        *,
        batch_size: int = 500,
        retry: RetryPolicy | None = None,
        poll_interval: float = 1.0,
        count_limit: int = 1000,
        route: Route = "replica",
    ) -> None:
        if isinstance(projections, ProjectionSet):
            codec = codec if codec is not None else projections.codec
            projection_set = projections
        else:
            if codec is None:
                raise InvalidArgument("a codec is needed to decode events", argument="codec")
            projection_set = ProjectionSet(codec, projections)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgument("batch_size must be an int >= 1", argument="batch_size")
        assert codec is not None
        self.store = store
        self.reads = route_reads(store, route)
        self.read_model = read_model
        self.projections = projection_set
        self.codec = codec
        self.batch_size = batch_size
        self.retry = retry if retry is not None else RetryPolicy()
        self.poll_interval = poll_interval
        self.count_limit = count_limit
        self.failures: dict[str, BaseException] = {}
        self._dispatch = {p.name: Dispatch(p, codec) for p in projection_set}
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._workers: dict[str, BuildWorker] = {}
        # lanes being moved to a new build by rebuild: they end instead of
        # starting another worker
        self._moving: set[str] = set()
        self._changed = asyncio.Event()
        self._resumed = asyncio.Event()
        self._stopping = False

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> ProjectionRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start a lane per projection in the background. Each projection's
        build is chosen (and a new projection registered, which fixes the
        "now" of ``effects_from="now"``) before this returns."""
        await self.read_model.setup()
        self._stopping = False
        for projection in self.projections:
            if projection.name not in self._lanes or self._lanes[projection.name].done():
                build = await self._resolve(projection, "run")
                self._lanes[projection.name] = asyncio.create_task(
                    self._lane(projection, build), name=f"eventfold-projection-{projection.name}"
                )

    async def stop(self) -> None:
        self._stopping = True
        for worker in self._workers.values():
            worker.stop()
        lanes = list(self._lanes.values())
        for lane in lanes:
            with contextlib.suppress(Exception):
                await lane
        self._lanes.clear()

    async def run(self) -> None:
        """Start (if needed) and wait for the lanes; re-raise the first failure."""
        await self.start()
        pending = set(self._lanes.values())
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _worker(
        self, projection: Projection, build: Build, *, live: bool, progress: Progress | None
    ) -> BuildWorker:
        hold = functools.partial(self._hold, projection.name) if live else None
        return BuildWorker(
            self.reads,
            self.codec,
            self.read_model,
            projection,
            build,
            live=live,
            batch_size=self.batch_size,
            retry=self.retry,
            poll_interval=self.poll_interval,
            progress=progress,
            on_commit=self._notify,
            hold=hold,
        )

    async def _resolve(self, projection: Projection, mode: Literal["run", "rebuild"]) -> Build:
        head = await self.store.head_position()  # "now" is the primary's
        start = head if projection.effects_from == "now" else 0
        return await self.read_model.write(functools.partial(_resolve, projection, mode, start))

    async def _lane(self, projection: Projection, first: Build | None = None) -> None:
        try:
            while not self._stopping:
                build = first if first is not None else await self._resolve(projection, "run")
                first = None
                if projection.name in self._moving:
                    return
                worker = self._worker(projection, build, live=True, progress=None)
                self._workers[projection.name] = worker
                if self._stopping:
                    return
                outcome = await worker.run()
                if outcome != "retired" or projection.name in self._moving:
                    return
        except BaseException as exc:
            self.failures[projection.name] = exc
            self._notify()
            raise
        finally:
            self._workers.pop(projection.name, None)

    async def catch_up(
        self, names: Iterable[str] | None = None, *, progress: Progress | None = None
    ) -> None:
        """Bring each projection (or those named) up to the head once, then
        return; a new build switches in when it gets there."""
        for projection in self._select(names):
            while True:
                build = await self._resolve(projection, "run")
                outcome = await self._worker(projection, build, live=False, progress=progress).run()
                if outcome != "retired":
                    break

    async def rebuild(
        self, name: str, *, progress: Progress | None = None, purge: bool = False
    ) -> Build:
        """Build ``name`` again into fresh tables from position zero while the
        current build keeps serving queries; switch queries over when the new
        build has caught up. Interrupted, it resumes where it stopped.

        The replaced build keeps its tables until the next switch, for queries
        that read the old pointer just before. ``purge=True`` drops them at
        once and compacts the database: after ``forget``, so that no copy of a
        forgotten subject's data stays in the read model."""
        projection = self.projections.get(name)
        build = await self._resolve(projection, "rebuild")
        worker = self._worker(projection, build, live=False, progress=progress)
        await worker.run()
        lane = self._workers.get(name)
        if lane is not None and lane.build.build != worker.build.build:
            # The lane still follows the retired build: move it to the new one.
            # Its worker may already have found the build retired, the lane
            # then resolving the next one: the lane must end either way.
            self._moving.add(name)
            lane.stop()
            try:
                with contextlib.suppress(Exception):
                    await self._lanes[name]
            finally:
                self._moving.discard(name)
            if not self._stopping:
                self._lanes[name] = asyncio.create_task(self._lane(projection))
        if purge:
            await self.read_model.write(functools.partial(drop_retired, name=name))
            await self.read_model.compact()
        return worker.build

    # --- pausing ------------------------------------------------------------------------

    async def pause(self, name: str, *, by: str | None = None) -> Pause:
        """Stop applying events to ``name`` (in every runner on this read
        model) until ``resume``: once this returns, no batch is applied, not
        even one read just before (each batch checks in its transaction). Its queries
        keep answering from where it stopped, their freshness showing the
        lag. The pause is kept in the read model: it outlasts a restart.
        A rebuild asked for explicitly still runs."""
        self.projections.get(name)
        return await self.read_model.write(functools.partial(builds.pause, name=name, by=by))

    async def resume(self, name: str) -> bool:
        """Apply events to ``name`` again; whether it was paused."""
        self.projections.get(name)
        was = await self.read_model.write(functools.partial(builds.resume, name=name))
        self._resumed.set()
        self._resumed = asyncio.Event()
        return was

    async def paused(self) -> dict[str, Pause]:
        """The paused projections of this read model."""
        return await self.read_model.read(builds.paused)

    async def _hold(self, name: str, stop: asyncio.Event) -> bool:
        if name not in await self.paused():
            return False
        resumed = asyncio.ensure_future(self._resumed.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({resumed, stopped}, timeout=self.poll_interval)
        finally:
            resumed.cancel()
            stopped.cancel()
        return True

    def _select(self, names: Iterable[str] | None) -> list[Projection]:
        if names is None:
            return list(self.projections)
        return [self.projections.get(name) for name in names]

    # --- reading ------------------------------------------------------------------------

    def _check_failed(self, name: str) -> None:
        failure = self.failures.get(name)
        if failure is not None:
            raise failure

    async def position(self, name: str) -> int | None:
        """The position the build queries read has reached (None: no build yet)."""
        self.projections.get(name)
        return await self.read_model.read(functools.partial(active_position, name))

    async def wait_for(
        self, position: int, *, timeout: float = 5.0, projections: Iterable[str] | None = None
    ) -> None:
        """Return once every projection (or those named) has reached
        ``position`` (e.g. ``Handled.position`` of a command): a query after
        this sees that command's effects. Raises ``ReadModelTimeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for projection in self._select(projections):
            while True:
                changed = self._changed
                reached = await self.position(projection.name)
                if reached is not None and reached >= position:
                    break
                self._check_failed(projection.name)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise ReadModelTimeout(projection.name, position, reached, timeout)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(remaining, _POLL))

    async def query(
        self,
        name: str,
        sql: str,
        params: Sequence[Any] = (),
        *,
        min_position: int | None = None,
        timeout: float = 5.0,
        freshness: bool = True,
        route: Route = "replica",
        on_lag: OnLag | None = None,
    ) -> QueryResult:
        """Query projection ``name``; the result carries its ``Freshness``
        (``freshness=False`` skips measuring it).
        With ``min_position`` (read-your-writes), wait until the read model
        has reached it, raising ``ReadModelTimeout`` after ``timeout``.
        Without it, answer at once from whatever the read model holds.

        On a read model with replicas the query runs on one (``route``); a
        wait for ``min_position`` checks the replica, up to the read model's
        ``replica_wait``, then queries the primary (``on_lag="primary"``) or
        answers from the replica and says it is stale (``on_lag="stale"``):
        ``served`` says which."""
        projection = self.projections.get(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        on_replica_until = loop.time() + min(self.read_model.replica_wait, timeout)
        policy = check_on_lag(self.read_model.on_lag if on_lag is None else on_lag)
        target = 0 if min_position is None else min_position
        current, stale = route, False
        while True:
            changed = self._changed
            found = await self.read_model.read_routed(
                functools.partial(run_query, name, sql, tuple(params)), route=current
            )
            assert found is not None
            result, source = found
            if result is not None and result.position >= target:
                break
            if source != "primary":
                if result is None:  # the replica has no build of it yet
                    current = "primary"
                    continue
                if loop.time() >= on_replica_until:
                    if policy == "stale":
                        stale = True
                        break
                    current = "primary"
                    continue
            if result is None and min_position is None:
                raise ProjectionNotReady(name)
            self._check_failed(name)
            remaining = deadline - loop.time()
            if remaining <= 0:
                reached = None if result is None else result.position
                raise ReadModelTimeout(name, target, reached, timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, _POLL))
        fresh = None
        if freshness:
            fresh = await measure(
                self.reads,
                projection,
                self.codec,
                result.position,
                count_limit=self.count_limit,
                dispatch=self._dispatch[name],
            )
        served = Served(
            route=route,
            source=source,
            fell_back=route == "replica" and source == "primary" and self.read_model.has_replicas,
            stale=stale,
            min_position=min_position,
            visible=result.position,
        )
        return QueryResult(
            rows=result.rows,
            columns=result.columns,
            projection=name,
            build=result.build,
            version=result.version,
            position=result.position,
            freshness=fresh,
            served=served,
        )

    async def freshness(self, name: str) -> Freshness | None:
        """The lag of the build queries read (None before the first build caught up)."""
        projection = self.projections.get(name)
        reached = await self.position(name)
        if reached is None:
            return None
        return await measure(
            self.reads,
            projection,
            self.codec,
            reached,
            count_limit=self.count_limit,
            dispatch=self._dispatch[name],
        )

    async def status(self) -> list[ProjectionStatus]:
        """Every projection declared here or stored in the read model, with its builds and lag."""
        stored = await stored_builds(self.read_model)
        pauses = await self.paused()
        out = []
        for name in sorted({*self.projections.names, *stored}):
            active, others = stored.get(name, (None, []))
            declared = name in self.projections.names
            fresh = None
            if active is not None and declared:
                fresh = await measure(
                    self.reads,
                    self.projections.get(name),
                    self.codec,
                    active.position,
                    dispatch=self._dispatch[name],
                )
            version = self.projections.get(name).version if declared else -1
            failure = self.failures.get(name)
            pause = pauses.get(name)
            if failure is not None:
                state = "failed"
            elif pause is not None:
                state = "paused"
            elif active is None or any(b.state == "building" for b in others):
                state = "building"
            else:
                state = "running"
            out.append(
                ProjectionStatus(
                    name,
                    version,
                    active,
                    others,
                    fresh,
                    state=state,
                    failure=None if failure is None else f"{type(failure).__name__}: {failure}",
                    paused_by=None if pause is None else pause.paused_by,
                    paused_at=None if pause is None else pause.paused_at,
                )
            )
        return out


def _resolve(
    projection: Projection, mode: Literal["run", "rebuild"], start: int, conn: Connection
) -> Build:
    return builds.resolve(conn, projection, mode, start)
