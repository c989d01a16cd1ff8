"""The mirror: a copy of the event log kept in the query side's own database,
filled from the bus, that projections read as if it were the event store.

Messages can reach a consumer out of order (a message handed out before a
crash is redelivered only after ``ack_wait``, while later ones flow), and
twice. The mirror takes them in by **bus sequence**: a message is applied
only once every message before it in the stream has been (``seq`` in
``eventfold_mirror_source``); one that arrives early waits in
``eventfold_mirror_pending``. The relay stores events in global order, so
applying by sequence re-creates the log in its order, with the store's own
positions: per-stream order holds, read-your-writes tokens (positions) mean
the same on both sides, and the projections' checkpoints need nothing new.

Everything for one batch (the sequence, the events, the waiting and parked
messages) commits in one transaction; messages are acknowledged on the bus
only after it. So each event is applied exactly once: a redelivered message
is at or below the sequence, an event seen again is already in the table.

A message that can never be applied (not an event, or an event that would
break the log's order) is **parked** in ``eventfold_parked`` with the reason,
still counting as taken in, and terminated on the bus: it is not retried.

When the read model has replicas, ``reads("replica")`` is a view of the
mirror that reads them (``eventfold.store.routing``): each read checks, in
its own snapshot, that the replica's mirror reaches what the view has
already seen (the mirror is a gap-free prefix of the log there too), else
reads the primary."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import msgspec

from eventfold.errors import InvalidArgument, StoreError
from eventfold.messaging import mirror_inspect, parking
from eventfold.messaging.intake import (
    Incoming,
    TakenIn,
    Verdict,
    ensure_schema,
    mirror_headers,
    take_in,
)
from eventfold.messaging.mirror_rows import (
    HEAD,
    STREAM,
    STREAM_BACK,
    VERSION,
    fetch,
    log_rows,
    record,
)
from eventfold.messaging.parking import Retried
from eventfold.store.api import (
    ANY,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    StreamAppend,
)
from eventfold.store.base import LogReader
from eventfold.store.capabilities import (
    Capabilities,
    CategoryInfo,
    ReplicaReads,
    StoreStats,
    StreamInfo,
)
from eventfold.store.paging import Page
from eventfold.store.routing import (
    OnLag,
    ReplicaHealth,
    Route,
    Served,
    check_on_lag,
    check_route,
    poll_until,
)
from eventfold.subscriptions.readmodel import Connection, ReadModel

__all__ = [
    "Incoming",
    "MirrorCheckpoints",
    "MirrorStore",
    "Parked",
    "ParkedAction",
    "Retried",
    "SourceState",
    "TakenIn",
    "Verdict",
    "mirror_headers",
]

_PAGE = 500


class Parked(msgspec.Struct, frozen=True):
    name: str
    identity: str
    seq: int
    subject: str
    reason: str
    headers: dict[str, str]
    data: bytes
    parked_at: str


class ParkedAction(msgspec.Struct, frozen=True):
    """What an operator did with a parked message (``retry``, ``skip``),
    how it ended, and who did it."""

    name: str
    identity: str
    seq: int
    action: str
    outcome: str
    detail: str
    actor: str | None
    at: str


class SourceState(msgspec.Struct, frozen=True):
    """How far the mirror got with a bus stream: every message up to ``seq``
    is taken in; ``pending`` messages after it wait for an earlier one, the
    first of them at ``next_waiting``; ``head`` is the mirror's last position."""

    name: str
    identity: str
    seq: int
    pending: int
    head: int
    parked: int
    next_waiting: int | None = None


class MirrorStore(LogReader):
    """The mirror in ``read_model`` (see the module docstring). It is an
    ``EventStore`` that can only be read: hand it to a ``ProjectionRunner``
    or a ``Repository`` (to load a state, e.g. as of a time) in place of the
    event store. ``take_in`` is how a consumer fills it. It declares one
    optional capability, ``ReplicaReads``: its read model's replicas."""

    capabilities: ClassVar[Capabilities] = frozenset({ReplicaReads})
    page_rows = _PAGE

    def __init__(self, read_model: ReadModel, *, poll_interval: float = 0.25) -> None:
        self.read_model = read_model
        self.url = f"mirror:{read_model.url}"
        self.poll_interval = poll_interval
        self._ready = False
        self._changed = asyncio.Event()
        # A routed view (reads()) shares its owner's read model and wake-ups.
        self._owner = self
        self.served: Served | None = None
        self.route: Route = "primary"
        self._token: int | None = None
        self._wait = 0.0
        self._on_lag: OnLag = "primary"
        self._resolved = True
        self._resolving = asyncio.Lock()
        self._to_primary = False
        self._stale = False
        self._floor = 0

    async def setup(self) -> None:
        if not self._ready:
            await self.read_model.write(ensure_schema)
            await self.read_model.write(mirror_inspect.ensure_indexes)
            self._ready = True

    async def _read(self, fn: Any) -> Any:
        await self._owner.setup()
        if self.route == "primary" or not self.read_model.has_replicas:
            result = await self.read_model.read(fn)
            self.served = Served(route=self.route, source="primary", min_position=self._token)
            return result
        if not self._resolved:
            async with self._resolving:  # reads that start together resolve once
                if not self._resolved:
                    await self._resolve()
                    self._resolved = True
        floor, stale = self._floor, self._stale

        def read(conn: Connection) -> tuple[int, Any]:
            return int(conn.execute(HEAD).fetchone()[0]), fn(conn)

        found = await self.read_model.read_routed(
            read,
            route="primary" if self._to_primary else "replica",
            accept=lambda got: stale or got[0] >= floor,
        )
        assert found is not None
        (head, result), source = found
        self.served = Served(
            route=self.route,
            source=source,
            fell_back=source == "primary",
            stale=stale and source != "primary",
            min_position=self._token,
            visible=head,
        )
        return result

    # --- routed views (ReplicaReads) --------------------------------------------------

    def reads(
        self,
        route: Route = "replica",
        *,
        min_position: int | None = None,
        wait: float | None = None,
        on_lag: OnLag | None = None,
    ) -> MirrorStore:
        """A view of this mirror whose reads go to ``route`` (the read
        model's replicas where it has some): see eventfold.store.routing."""
        check_route(route)
        if min_position is not None and (
            isinstance(min_position, bool) or not isinstance(min_position, int) or min_position < 0
        ):
            raise InvalidArgument("min_position must be an int >= 0", argument="min_position")
        if wait is not None and (not isinstance(wait, int | float) or not 0 <= wait <= 86_400):
            raise InvalidArgument("wait must be between 0 and 86400 seconds", argument="wait")
        view = MirrorStore(self.read_model, poll_interval=self.poll_interval)
        view._owner = self._owner
        view.route = route
        view._token = min_position
        view._wait = self.read_model.replica_wait if wait is None else float(wait)
        view._on_lag = check_on_lag(self.read_model.on_lag if on_lag is None else on_lag)
        view._resolved = min_position is None or route == "primary"
        return view

    async def replica_health(self) -> list[ReplicaHealth]:
        return await self.read_model.replica_health()

    async def _resolve(self) -> None:
        """A position token's first read: wait up to ``wait`` for a replica
        whose mirror reaches it; past that, read the primary or answer stale."""
        token = self._token
        assert token is not None
        answered = False

        async def reached() -> bool:
            nonlocal answered
            found = await self.read_model.read_routed(
                functools.partial(fetch, HEAD, ()), route="replica", primary=False
            )
            answered = answered or found is not None
            return found is not None and int(found[0][0][0]) >= token

        if await poll_until(reached, self._wait):
            self._floor = token
        elif self._on_lag == "stale" and answered:
            self._stale = True
        else:
            self._to_primary = True

    # --- filling it -------------------------------------------------------------------

    async def take_in(self, source: str, identity: str, items: Sequence[Incoming]) -> TakenIn:
        """Take in messages of bus stream ``source`` (incarnation
        ``identity``) in one transaction; acknowledge them only after this
        returns (terminate the parked ones)."""
        await self.setup()
        result: TakenIn = await self.read_model.write(
            functools.partial(take_in, source, identity, list(items))
        )
        if result.applied:
            self._changed.set()
            self._changed = asyncio.Event()
        return result

    async def source(self, name: str) -> SourceState | None:
        """How far the mirror got with bus stream ``name``."""

        def read(conn: Connection) -> SourceState | None:
            row = conn.execute(
                "SELECT identity, seq FROM eventfold_mirror_source WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                return None
            waiting = conn.execute(
                "SELECT COUNT(*), MIN(seq) FROM eventfold_mirror_pending WHERE name = ?", (name,)
            ).fetchone()
            parked = conn.execute(
                "SELECT COUNT(*) FROM eventfold_parked WHERE name = ?", (name,)
            ).fetchone()[0]
            head = conn.execute(HEAD).fetchone()[0]
            first = None if waiting[1] is None else int(waiting[1])
            return SourceState(
                name, row[0], int(row[1]), int(waiting[0]), int(head), int(parked), first
            )

        found: SourceState | None = await self._read(read)
        return found

    async def parked(self, *, limit: int = 100) -> list[Parked]:
        """The most recently parked messages, newest first."""

        def read(conn: Connection) -> list[Parked]:
            rows = conn.execute(
                "SELECT name, identity, seq, subject, reason, headers, data, parked_at "
                "FROM eventfold_parked ORDER BY parked_at DESC, seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [
                Parked(
                    r[0],
                    r[1],
                    int(r[2]),
                    r[3],
                    r[4],
                    msgspec.json.decode(r[5], type=dict[str, str]),
                    base64.b64decode(r[6]),
                    r[7],
                )
                for r in rows
            ]

        found: list[Parked] = await self._read(read)
        return found

    # --- what an operator does with a parked message ------------------------------------

    async def _identity(self, name: str, identity: str | None) -> str | None:
        if identity is not None:
            return identity
        found = await self.source(name)
        return None if found is None else found.identity

    async def retry(
        self, name: str, seq: int, *, identity: str | None = None, actor: str | None = None
    ) -> Retried | None:
        """Take parked message ``seq`` of bus stream ``name`` in again
        (``identity``: the stream's incarnation, by default the current one);
        None if it is not parked. See ``eventfold.messaging.parking``."""
        found = await self._identity(name, identity)
        if found is None:
            return None
        await self.setup()
        result: Retried | None = await self.read_model.write(
            functools.partial(parking.retry, name=name, identity=found, seq=seq, actor=actor)
        )
        if result is not None and result.outcome == "applied":
            self._changed.set()
            self._changed = asyncio.Event()
        return result

    async def skip(
        self, name: str, seq: int, *, identity: str | None = None, actor: str | None = None
    ) -> bool:
        """Drop parked message ``seq`` of bus stream ``name`` from the parked
        list, applying nothing; whether it was parked."""
        found = await self._identity(name, identity)
        if found is None:
            return False
        await self.setup()
        done: bool = await self.read_model.write(
            functools.partial(parking.skip, name=name, identity=found, seq=seq, actor=actor)
        )
        return done

    async def parked_log(self, *, limit: int = 50) -> list[ParkedAction]:
        """What operators did with parked messages, newest first."""

        def read(conn: Connection) -> list[ParkedAction]:
            rows = conn.execute(
                "SELECT name, identity, seq, action, outcome, detail, actor, at "
                "FROM eventfold_parked_log ORDER BY at DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [ParkedAction(r[0], r[1], int(r[2]), r[3], r[4], r[5], r[6], r[7]) for r in rows]

        found: list[ParkedAction] = await self._read(read)
        return found

    # --- Inspector, and more for an operations console ----------------------------------

    async def list_streams(
        self, *, category: str | None = None, limit: int = 100
    ) -> list[StreamInfo]:
        found: list[StreamInfo] = await self._read(
            functools.partial(mirror_inspect.list_streams, category=category, limit=limit)
        )
        return found

    async def list_categories(self) -> list[CategoryInfo]:
        found: list[CategoryInfo] = await self._read(mirror_inspect.list_categories)
        return found

    async def stats(self) -> StoreStats:
        found: StoreStats = await self._read(mirror_inspect.stats)
        return found

    async def per_minute(self, minutes: int = 15) -> list[int]:
        """Events recorded in each of the last ``minutes`` minutes, oldest first."""
        found: list[int] = await self._read(
            functools.partial(mirror_inspect.per_minute, minutes=minutes)
        )
        return found

    async def correlated(self, correlation_id: str, *, limit: int = 200) -> list[int]:
        """Positions of the events carrying ``correlation_id`` in their metadata."""
        found: list[int] = await self._read(
            functools.partial(mirror_inspect.correlated, correlation_id=correlation_id, limit=limit)
        )
        return found

    # --- reading, as an EventReader (eventfold.store.base.LogReader) --------------------

    async def _stream_page(
        self, stream_id: str, low: int, high: int, backwards: bool, want: int
    ) -> Page:
        sql = STREAM_BACK if backwards else STREAM
        rows = await self._read(functools.partial(fetch, sql, (stream_id, low, high, want)))
        records = [record(row) for row in rows]
        if records:
            self._floor = max(self._floor, records[0].position, records[-1].position)
        return records, len(rows) < want

    async def _log_page(
        self,
        position: int,
        categories: tuple[str, ...] | None,
        types: tuple[str, ...] | None,
        want: int,
    ) -> Page:
        rows = await self._read(functools.partial(log_rows, position, categories, types, want))
        records = [record(row) for row in rows]
        if records:
            self._floor = max(self._floor, records[-1].position)
        return records, len(rows) < want

    async def _stream_version(self, stream_id: str) -> int:
        rows = await self._read(functools.partial(fetch, VERSION, (stream_id,)))
        return int(rows[0][0])

    async def _head_position(self) -> int:
        rows = await self._read(functools.partial(fetch, HEAD, ()))
        head = int(rows[0][0])
        self._floor = max(self._floor, head)
        return head

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        self.check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._owner._changed
            if await self.head_position() > after_position:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0 or self.closed:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, self.poll_interval))

    # --- the rest of EventStore: a mirror is read-only ----------------------------------

    def _read_only(self) -> StoreError:
        return StoreError(f"{self.url} is a read-only mirror of the event store")

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        raise self._read_only()

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        raise self._read_only()

    async def close(self) -> None:
        self.closed = True
        if self._owner is not self:
            return  # a routed view: the mirror it views owns the read model
        self._changed.set()
        await self.read_model.close()

    async def __aenter__(self) -> Self:
        await self.setup()
        return self


class MirrorCheckpoints:
    """A relay's checkpoint when the bus keeps nothing across restarts (the
    in-process bus): the mirror's head, so that a restarted relay publishes
    again exactly what the mirror does not have yet. Saving does nothing."""

    def __init__(self, mirror: MirrorStore) -> None:
        self.mirror = mirror

    async def load(self, name: str) -> int:
        return await self.mirror.head_position()

    async def save(self, name: str, position: int) -> None:
        return None
