"""A projection: a named, versioned read model declared as tables plus one
handler per event type. Handlers are plain synchronous functions
``(tx, envelope) -> None`` that change the read model through ``tx``; side
effects (mail, commands to other systems) go in ``effect`` hooks, which run
only for events the read model sees live, never while it is rebuilt."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar

import msgspec

from eventfold.domain.events import Envelope
from eventfold.errors import InvalidArgument, RegistrationError, UnknownProjection
from eventfold.serialization.codec import Codec
from eventfold.store.api import RecordedEvent
from eventfold.subscriptions.lanes import Key, by_stream, check_lanes
from eventfold.subscriptions.sqltemplate import check_name


class Cursor(Protocol):
    """The part of a DB-API cursor that ``tx.execute`` returns."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """What a handler gets: SQL against this build's tables, inside the
    transaction that also moves the projection's checkpoint. Write ``{table}``
    for a declared table and ``?`` for each parameter; the read model turns
    them into the quoted physical name and the driver's placeholder."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


E = TypeVar("E")
Handler = Callable[[Tx, Envelope[Any]], None]
Effect = Callable[[Envelope[Any]], Awaitable[None]]
H = TypeVar("H", bound=Handler)
F = TypeVar("F", bound=Effect)

_COLUMNS = re.compile(
    r"[a-z_][a-z0-9_]*(\s+(ASC|DESC))?(\s*,\s*[a-z_][a-z0-9_]*(\s+(ASC|DESC))?)*", re.I
)


class Index(msgspec.Struct, frozen=True):
    """``CREATE [UNIQUE] INDEX`` on a declared table: ``Index("stock_levels", "available")``."""

    table: str
    columns: str
    unique: bool = False

    def __post_init__(self) -> None:
        check_name(self.table, "table")
        if not _COLUMNS.fullmatch(self.columns.strip()):
            raise InvalidArgument(
                f"index columns {self.columns!r}: comma-separated column names (ASC/DESC)",
                argument="columns",
            )


class Projection:
    """``Projection("order_summaries", version=1, tables={"order_summaries":
    "order_id TEXT PRIMARY KEY, total_cents BIGINT NOT NULL"})``.

    ``tables`` maps each logical table name to its column definitions (they may
    refer to other declared tables as ``{name}``). Each build of the projection
    gets its own physical tables (``order_summaries_v1``, ...): a new
    ``version`` is built into fresh tables while the old ones keep serving
    queries. ``categories`` limits the events read to those stream categories.
    ``effects_from="now"`` runs effects only for events appended after the
    projection first started; ``"beginning"`` runs them for the whole history
    once. Effects run in ``lanes`` concurrent lanes keyed by ``key(envelope)``
    (default: the stream): concurrently across keys, in order within a key
    (``eventfold.subscriptions.lanes``). The read-model changes themselves are
    applied in batches, one transaction each, in log order."""

    def __init__(
        self,
        name: str,
        *,
        version: int = 1,
        tables: Mapping[str, str],
        indexes: Mapping[str, Index] | None = None,
        categories: Sequence[str] | None = None,
        effects_from: Literal["now", "beginning"] = "now",
        description: str = "",
        lanes: int = 1,
        key: Key | None = None,
    ) -> None:
        self.name = check_name(name, "projection name")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidArgument(f"{name}: version must be an int >= 1", argument="version")
        if not tables:
            raise InvalidArgument(f"{name}: declare at least one table", argument="tables")
        self.version = version
        self.tables: dict[str, str] = {}
        for table, columns in tables.items():
            check_name(table, "table")
            if not isinstance(columns, str) or not columns.strip():
                raise InvalidArgument(f"{name}.{table}: column definitions must be text")
            self.tables[table] = columns
        self.indexes: dict[str, Index] = {}
        for index_name, index in (indexes or {}).items():
            check_name(index_name, "index")
            if index.table not in self.tables:
                raise InvalidArgument(f"{name}: index {index_name} is on an undeclared table")
            self.indexes[index_name] = index
        if isinstance(categories, str):
            raise InvalidArgument("categories must be a sequence of names", argument="categories")
        self.categories: list[str] | None = list(categories) if categories is not None else None
        if effects_from not in ("now", "beginning"):
            raise InvalidArgument("effects_from must be 'now' or 'beginning'")
        self.effects_from = effects_from
        self.description = description
        self.lanes = check_lanes(lanes)
        self.key: Key = key if key is not None else by_stream
        self._handlers: dict[type[Any], Handler] = {}
        self._effects: dict[type[Any], list[Effect]] = {}

    def on(self, *event_types: type[Any]) -> Callable[[H], H]:
        """Decorator: ``@proj.on(OrderPlaced)`` registers ``fn(tx, envelope)``."""
        if not event_types:
            raise RegistrationError(f"{self.name}: on() needs at least one event type")

        def decorate(fn: H) -> H:
            for cls in event_types:
                if cls in self._handlers:
                    raise RegistrationError(
                        f"{self.name}: {cls.__qualname__} already has a handler"
                    )
                self._handlers[cls] = fn
            return fn

        return decorate

    def effect(self, *event_types: type[Any]) -> Callable[[F], F]:
        """Decorator for ``async fn(envelope)``: a side effect run after the
        event's read-model change committed, only while the projection is live
        (never during a rebuild or time-travel build). Effects run at least
        once: make them idempotent (an idempotency key from the event id)."""
        if not event_types:
            raise RegistrationError(f"{self.name}: effect() needs at least one event type")

        def decorate(fn: F) -> F:
            for cls in event_types:
                self._effects.setdefault(cls, []).append(fn)
            return fn

        return decorate

    def handler_for(self, cls: type[Any]) -> Handler | None:
        return self._handlers.get(cls)

    def effects_for(self, cls: type[Any]) -> list[Effect]:
        return self._effects.get(cls, [])

    @property
    def has_effects(self) -> bool:
        return bool(self._effects)

    @property
    def event_types(self) -> list[type[Any]]:
        return list({*self._handlers, *self._effects})

    def __repr__(self) -> str:
        return f"Projection({self.name!r}, version={self.version})"


class ProjectionSet:
    """The projections of an application and the codec that decodes their
    events: what ``eventfold projections --app module:attribute`` loads."""

    def __init__(self, codec: Codec, projections: Iterable[Projection]) -> None:
        self.codec = codec
        self.projections: list[Projection] = list(projections)
        names = [p.name for p in self.projections]
        if len(set(names)) != len(names):
            raise RegistrationError(f"projection names must be unique: {names}")
        for projection in self.projections:
            for cls in projection.event_types:
                codec.registry.of_class(cls)  # raises UnknownEventType if unregistered

    def __iter__(self) -> Iterator[Projection]:
        return iter(self.projections)

    def __len__(self) -> int:
        return len(self.projections)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.projections]

    def get(self, name: str) -> Projection:
        for projection in self.projections:
            if projection.name == name:
                return projection
        raise UnknownProjection(name, self.names)


class Dispatch:
    """A projection's handlers and effects looked up by stored type name
    (aliases included), through the codec's registry; cached per name."""

    def __init__(self, projection: Projection, codec: Codec) -> None:
        self.projection = projection
        self.codec = codec
        self._cache: dict[str, tuple[Handler | None, list[Effect]]] = {}
        self.handlers: dict[str, Handler | None] = {}
        """Each type name looked up so far and its handler (None: none)."""

    def _entry(self, type_name: str) -> tuple[Handler | None, list[Effect]]:
        entry = self._cache.get(type_name)
        if entry is None:
            registered = self.codec.registry.of_name(type_name)
            if registered is None:
                entry = (None, [])
            else:
                cls = registered.cls
                entry = (self.projection.handler_for(cls), self.projection.effects_for(cls))
            self._cache[type_name] = entry
        return entry

    def handler(self, type_name: str) -> Handler | None:
        handler = self.handlers[type_name] = self._entry(type_name)[0]
        return handler

    def wanted(self, records: Sequence[RecordedEvent]) -> list[RecordedEvent]:
        """Those of ``records`` a handler applies (``handlers`` then knows
        each one's type)."""
        known = self.handlers
        out = []
        for record in records:
            name = record.type
            handler = known[name] if name in known else self.handler(name)
            if handler is not None:
                out.append(record)
        return out

    def effects(self, type_name: str) -> list[Effect]:
        return self._entry(type_name)[1]

    def relevant(self, type_name: str) -> bool:
        handler, effects = self._entry(type_name)
        return handler is not None or bool(effects)
