"""The query side: named queries over projections, a stream's history, a
stream's state now or as of a time, each answer with its freshness, and
read-your-writes: a request that carries a position (a command's token)
waits, within a bound, until what it reads has reached it.

``Queries`` declares what an application answers (no I/O); ``QueryService``
answers on a running ``ProjectionRunner`` and the log it follows (the
mirror on a query service fed by the bus, or the event store itself)."""

from __future__ import annotations

import asyncio
import typing
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, cast

import msgspec

from eventfold.domain.clocks import Clock, as_utc_if_naive
from eventfold.domain.decider import Decider
from eventfold.errors import InvalidArgument, ReadModelTimeout, RegistrationError
from eventfold.errors import NoStateView as NoStateView
from eventfold.errors import UnknownQuery as UnknownQuery
from eventfold.repository import Repository
from eventfold.serialization.codec import Codec
from eventfold.services.cache import QueryCache
from eventfold.store.api import EventReader, EventStore
from eventfold.store.checks import category_of, validate_stream_id
from eventfold.store.routing import (
    OnLag,
    ReplicaHealth,
    Route,
    Served,
    replica_health,
    route_reads,
    served_by,
)
from eventfold.subscriptions.freshness import Freshness, ProjectionStatus
from eventfold.subscriptions.runner import ProjectionRunner
from eventfold.subscriptions.sqltemplate import check_name, expand_lists

ParamType = Any
"""A named query's parameter type: str, int, float, bool, date, datetime,
UUID, or a list of one of them (``list[str]``)."""
_SCALARS: tuple[type[Any], ...] = (str, int, float, bool, date, datetime, uuid.UUID)


def _check_param_type(kind: Any) -> bool:
    if kind in _SCALARS:
        return True
    args = typing.get_args(kind)
    return typing.get_origin(kind) is list and len(args) == 1 and args[0] in _SCALARS


def param_type_name(kind: Any) -> str:
    """``str``, ``date``, ``UUID``, ``list[int]`` …"""
    if typing.get_origin(kind) is list:
        return f"list[{param_type_name(typing.get_args(kind)[0])}]"
    return str(kind.__name__)


def sql_value(value: Any) -> Any:
    """A parameter as the SQL driver gets it: dates, times (in UTC) and UUIDs
    as ISO 8601 or canonical text, so the same query runs on SQLite (which
    keeps them as text) and PostgreSQL (which casts the text to the column's
    type); a list as a tuple, expanded into one placeholder per item."""
    if isinstance(value, list | tuple):
        return tuple(sql_value(v) for v in value)
    if isinstance(value, datetime):
        return as_utc_if_naive(value).astimezone(UTC).isoformat()
    if isinstance(value, date | uuid.UUID):
        return str(value)
    return value


class NamedQuery:
    """``SELECT`` over one projection's tables with ``?`` for each parameter,
    in the order ``params`` lists them."""

    def __init__(
        self,
        name: str,
        projection: str,
        sql: str,
        params: Mapping[str, ParamType],
        defaults: Mapping[str, Any],
        description: str,
    ) -> None:
        self.name = name
        self.projection = projection
        self.sql = sql
        self.params = dict(params)
        self.defaults = dict(defaults)
        self.description = description

    def arguments(self, given: Mapping[str, str | Sequence[str]]) -> tuple[Any, ...]:
        """The parameters from text values (a URL's query string; several
        values for a list), typed by the declared parameters, as SQL values."""
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise InvalidArgument(
                f"query {self.name}: unknown parameters {unknown} "
                f"(takes {sorted(self.params) or 'none'})",
                argument=unknown[0],
            )
        out = []
        for name, kind in self.params.items():
            if name in given:
                value = given[name]
                if typing.get_origin(kind) is list and isinstance(value, str):
                    value = [value]
                try:
                    out.append(msgspec.convert(value, kind, strict=False))
                except msgspec.ValidationError as exc:
                    raise InvalidArgument(
                        f"query {self.name}: parameter {name}: {exc}", argument=name
                    ) from None
            elif name in self.defaults:
                out.append(self.defaults[name])
            else:
                raise InvalidArgument(
                    f"query {self.name}: parameter {name} is required", argument=name
                )
        return self.bind(out)

    def bind(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """Typed parameter values (in ``params`` order) as SQL values."""
        if len(values) != len(self.params):
            raise InvalidArgument(
                f"query {self.name}: takes {len(self.params)} parameters, not {len(values)}"
            )
        return tuple(sql_value(v) for v in values)


class Queries:
    """The queries an application answers::

        queries = Queries()
        queries.add("order", "order_summaries",
                    "SELECT * FROM {order_summaries} WHERE order_id = ?",
                    params={"order_id": str})
        queries.state("order", orders)   # GET /streams/order-1/state

    ``state(category, decider)`` lets the state of that category's streams be
    folded on request, now, at a version, or as of a time."""

    def __init__(self) -> None:
        self._queries: dict[str, NamedQuery] = {}
        self.states: dict[str, Decider[Any, Any, Any]] = {}

    def add(
        self,
        name: str,
        projection: str,
        sql: str,
        *,
        params: Mapping[str, ParamType] | None = None,
        defaults: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> None:
        check_name(name, "query name")
        if name in self._queries:
            raise RegistrationError(f"query {name!r} is already registered")
        params = dict(params or {})
        for param, kind in params.items():
            if not param.isidentifier() or param in ("min_position", "wait"):
                raise RegistrationError(f"query {name}: bad parameter name {param!r}")
            if not _check_param_type(kind):
                raise RegistrationError(
                    f"query {name}: {param} must be str, int, float, bool, date, datetime, "
                    "UUID or a list of one of them"
                )
        if sql.count("?") != len(params):
            raise RegistrationError(f"query {name}: one '?' per parameter ({len(params)})")
        self._queries[name] = NamedQuery(name, projection, sql, params, defaults or {}, description)

    def state(self, category: str, decider: Decider[Any, Any, Any]) -> None:
        if category in self.states:
            raise RegistrationError(f"a state for category {category!r} is already registered")
        self.states[category] = decider

    def get(self, name: str) -> NamedQuery:
        query = self._queries.get(name)
        if query is None:
            raise UnknownQuery(name, self.names)
        return query

    @property
    def names(self) -> list[str]:
        return sorted(self._queries)

    def __iter__(self) -> Iterator[NamedQuery]:
        return iter(self._queries.values())


class FreshnessInfo(msgspec.Struct, frozen=True):
    """How fresh an answer is: it reflects the log up to ``position``; the
    log's head (as the query side knows it) is ``head``; ``events_behind``
    events after ``position`` are not reflected yet, the oldest recorded
    ``seconds_behind`` seconds ago; ``bus_pending`` more still wait on the
    bus. ``capped``: ``events_behind`` is at least that many. ``served``:
    which server answered, where reads go to replicas (a replica, or the
    primary it fell back to, or a replica that says it is stale)."""

    position: int
    head: int
    events_behind: int
    seconds_behind: float
    bus_pending: int
    up_to_date: bool
    capped: bool = False
    served: Served | None = None


class QueryAnswer(msgspec.Struct, frozen=True):
    query: str
    projection: str
    rows: list[dict[str, Any]]
    freshness: FreshnessInfo
    cached: bool = False


class EventView(msgspec.Struct, frozen=True):
    version: int
    position: int
    event_id: str
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime


class HistoryAnswer(msgspec.Struct, frozen=True):
    stream_id: str
    events: list[EventView]
    freshness: FreshnessInfo


class StateAnswer(msgspec.Struct, frozen=True):
    stream_id: str
    version: int
    state: Any
    as_of: datetime | None
    freshness: FreshnessInfo
    by: Clock = "recorded"
    """The clock ``as_of`` was read on: ``recorded`` or ``occurred``."""


class StatusAnswer(msgspec.Struct, frozen=True):
    """``replicas``: the state and lag of each replica the query side reads
    (of the read-model database, or of the event store it reads directly)."""

    projections: list[ProjectionStatus]
    head: int
    bus_pending: int
    details: dict[str, Any] = {}
    replicas: list[ReplicaHealth] = []


_object = msgspec.json.Decoder(dict[str, Any])


class QueryService:
    """Answers ``queries`` from ``runner``'s projections and ``store``'s log.
    ``bus_pending()`` says how many events still wait on the bus; ``wait``
    bounds every wait for a position to ``max_wait`` seconds; ``cache``
    (optional) keeps answers of named queries. History and states read the
    store's replicas where it has some (``route``, ``on_lag``: see
    eventfold.store.routing): a request with ``min_position`` waits for a
    replica that can see it, then reads the primary or answers stale, and
    its freshness says which."""

    def __init__(
        self,
        runner: ProjectionRunner,
        store: EventStore,
        queries: Queries,
        *,
        cache: QueryCache[QueryAnswer] | None = None,
        bus_pending: Callable[[], int] = lambda: 0,
        details: Callable[[], Any] | None = None,
        max_wait: float = 10.0,
        default_wait: float = 5.0,
        route: Route = "replica",
        on_lag: OnLag | None = None,
    ) -> None:
        self.runner = runner
        self.store = store
        self.queries = queries
        self.codec: Codec = runner.codec
        self.cache = cache
        self.bus_pending = bus_pending
        self.details = details
        self.max_wait = max_wait
        self.default_wait = default_wait
        self.route = route
        self.on_lag = on_lag

    def _wait(self, wait: float | None) -> float:
        if wait is None:
            return min(self.default_wait, self.max_wait)
        if wait < 0:
            raise InvalidArgument("wait must be >= 0 seconds", argument="wait")
        return min(wait, self.max_wait)

    def _info(self, fresh: Freshness, served: Served | None = None) -> FreshnessInfo:
        pending = self.bus_pending()
        return FreshnessInfo(
            position=fresh.position,
            head=fresh.head,
            events_behind=fresh.events_behind,
            seconds_behind=round(fresh.seconds_behind, 3),
            bus_pending=pending,
            up_to_date=fresh.events_behind == 0 and pending == 0 and not _stale(served),
            capped=fresh.capped,
            served=served,
        )

    async def query(
        self,
        name: str,
        params: Mapping[str, str] | Sequence[Any] = (),
        *,
        min_position: int | None = None,
        wait: float | None = None,
    ) -> QueryAnswer:
        """Run named query ``name``. With ``min_position``, wait (at most
        ``wait`` seconds) until its projection has reached it, else raise
        ``ReadModelTimeout``."""
        query = self.queries.get(name)
        args = query.arguments(params) if isinstance(params, Mapping) else query.bind(params)
        key = (name, args)
        if self.cache is not None:
            hit = self.cache.get(key, min_position=min_position)
            if hit is not None:
                return msgspec.structs.replace(hit, cached=True)
        generation = self.cache.generation() if self.cache is not None else 0
        sql, flat = expand_lists(query.sql, args)
        result = await self.runner.query(
            query.projection,
            sql,
            flat,
            min_position=min_position,
            timeout=self._wait(wait),
            route=self.route,
            on_lag=self.on_lag,
        )
        assert result.freshness is not None
        answer = QueryAnswer(
            query=name,
            projection=query.projection,
            rows=result.dicts(),
            freshness=self._info(result.freshness, result.served),
        )
        if self.cache is not None:
            self.cache.put(key, answer, position=result.position, generation=generation)
        return answer

    def _log_reads(self, min_position: int | None) -> EventReader:
        """Where history and states are read: the store's replicas where it
        has some, waiting for one that can see ``min_position``."""
        return route_reads(self.store, self.route, min_position=min_position, on_lag=self.on_lag)

    async def _reach(self, reads: EventReader, position: int | None, wait: float | None) -> int:
        """Wait until the log (as ``reads`` has it) reaches ``position``; its
        head. A replica that answers stale (``on_lag="stale"``) is not waited
        for: the answer says it is stale."""
        head = await reads.head_position()
        if position is None or head >= position or _stale(served_by(reads)):
            return head
        timeout = self._wait(wait)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while head < position:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ReadModelTimeout("event log", position, head, timeout)
            await reads.wait_for_events(head, remaining)
            head = await reads.head_position()
        return head

    def _log_freshness(self, head: int, reads: EventReader) -> FreshnessInfo:
        return self._info(Freshness(head, head, 0, 0.0), served_by(reads))

    async def history(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        limit: int = 100,
        min_position: int | None = None,
        wait: float | None = None,
    ) -> HistoryAnswer:
        """A stream's events, oldest first, from ``from_version``."""
        validate_stream_id(stream_id)
        if from_version < 1 or not 0 < limit <= 1000:
            raise InvalidArgument("from_version must be >= 1 and limit 1-1000")
        reads = self._log_reads(min_position)
        head = await self._reach(reads, min_position, wait)
        events = [
            EventView(
                version=r.version,
                position=r.position,
                event_id=str(r.event_id),
                type=r.type,
                data=_object.decode(r.data),
                metadata=_object.decode(r.metadata),
                recorded_at=r.recorded_at,
            )
            async for r in reads.read_stream(stream_id, from_version=from_version, limit=limit)
        ]
        return HistoryAnswer(stream_id, events, self._log_freshness(head, reads))

    async def state(
        self,
        stream_id: str,
        *,
        as_of: datetime | None = None,
        version: int | None = None,
        by: Clock = "recorded",
        min_position: int | None = None,
        wait: float | None = None,
    ) -> StateAnswer:
        """A stream's state now, at ``version``, or as of ``as_of`` (the
        events recorded at or before it, or with ``by="occurred"`` those that
        had happened by then), folded by its category's decider."""
        validate_stream_id(stream_id)
        decider = self.queries.states.get(category_of(stream_id))
        if decider is None:
            raise NoStateView(stream_id, sorted(self.queries.states))
        reads = self._log_reads(min_position)
        head = await self._reach(reads, min_position, wait)
        # A load only reads: the routed view stands in for the store.
        loaded = await Repository(cast(EventStore, reads), decider, self.codec).load(
            stream_id, version=version, as_of=as_of, by=by
        )
        state = msgspec.to_builtins(loaded.state)
        return StateAnswer(
            stream_id, loaded.version, state, as_of, self._log_freshness(head, reads), by=by
        )

    async def status(self) -> StatusAnswer:
        details = self.details() if self.details is not None else {}
        if asyncio.iscoroutine(details):
            details = await details
        return StatusAnswer(
            projections=await self.runner.status(),
            head=await self.store.head_position(),
            bus_pending=self.bus_pending(),
            details=details if isinstance(details, dict) else {},
            replicas=await replica_health(self.store),
        )


def _stale(served: Served | None) -> bool:
    return served is not None and served.stale
