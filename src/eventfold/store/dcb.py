"""Dynamic Consistency Boundaries (the specification at dcb.events): queries
over event types and tags, and the append condition they make.

A ``Query`` is a list of ``QueryItem``s, OR'ed, or ``Query.all()``. An event
matches an item when its type is one of the item's types (any type if the
item names none) and it carries every one of the item's tags. An
``AppendCondition(query, after)`` makes an append fail with
``ConditionFailed`` if any event matching ``query`` was stored after
position ``after`` (after none: at all).

Everything here is pure: the model, its checks (the same typed errors on
every backend), the matching rule, and how a backend turns a query into
ordered index scans (``arms``) and into lock keys (``lock_keys``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec

from eventfold.errors import DuplicateEventId, InvalidArgument
from eventfold.store.api import NO_STREAM_ID, NewEvent, RecordedEvent
from eventfold.store.checks import (
    same_json,
    validate_events,
    validate_tags,
    validate_type_name,
)

MAX_QUERY_ITEMS = 100
"""A query has at most this many items."""
MAX_ITEM_TYPES = 100
"""A query item names at most this many types."""
MAX_QUERY_SCANS = 100
"""A query makes at most this many index scans (``arms``): one per item with
tags, one per type of an item of types alone."""


class QueryItem(msgspec.Struct, frozen=True):
    """Events whose type is one of ``types`` (any type if empty) and that
    carry every tag of ``tags``. At least one of the two is needed."""

    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def matches(self, type: str, tags: Iterable[str]) -> bool:
        if self.types and type not in self.types:
            return False
        if not self.tags:
            return True
        carried = set(tags)
        return all(tag in carried for tag in self.tags)


class Query(msgspec.Struct, frozen=True):
    """Items OR'ed together, or every event (``Query.all()``)."""

    items: tuple[QueryItem, ...] = ()
    match_all: bool = False

    @classmethod
    def all(cls) -> Query:
        """The query every event matches."""
        return cls((), True)

    @classmethod
    def of(cls, *items: QueryItem) -> Query:
        """The query matching what any of ``items`` matches."""
        return cls(tuple(items))

    def matches(self, type: str, tags: Iterable[str]) -> bool:
        if self.match_all:
            return True
        carried = tuple(tags)
        return any(item.matches(type, carried) for item in self.items)

    def matches_event(self, event: NewEvent | RecordedEvent) -> bool:
        return self.matches(event.type, event.tags)

    def __repr__(self) -> str:
        if self.match_all:
            return "Query.all()"
        if not isinstance(self.items, tuple | list) or not all(
            isinstance(item, QueryItem) for item in self.items
        ):
            return f"Query(items={self.items!r})"
        parts = []
        for item in self.items:
            fields = []
            if item.types:
                fields.append(f"types={list(item.types)!r}")
            if item.tags:
                fields.append(f"tags={list(item.tags)!r}")
            parts.append(f"QueryItem({', '.join(fields)})")
        return f"Query.of({', '.join(parts)})"


class AppendCondition(msgspec.Struct, frozen=True):
    """Fail the append if an event matching ``query`` is stored after
    position ``after`` (None: anywhere). Use the position of the last event
    the decision read (or None if it read none)."""

    query: Query
    after: int | None = None


# --- checks ---------------------------------------------------------------------------


def validate_query(query: object, argument: str = "query") -> Query:
    """A checked, normalised copy of ``query`` (tuples, types without
    repeats), or ``InvalidArgument`` saying what is wrong with it."""
    if not isinstance(query, Query):
        raise InvalidArgument(f"expected a Query, not {type(query).__name__}", argument=argument)
    if type(query.match_all) is not bool:
        raise InvalidArgument("match_all must be a bool", argument=argument)
    items = query.items
    if isinstance(items, str | bytes) or not isinstance(items, tuple | list):
        raise InvalidArgument("a query's items must be a tuple or list", argument=argument)
    if query.match_all:
        if items:
            raise InvalidArgument("Query.all() takes no items", argument=argument)
        return query
    if not items:
        raise InvalidArgument(
            "a query needs at least one item (Query.all() matches every event)",
            argument=argument,
        )
    if len(items) > MAX_QUERY_ITEMS:
        raise InvalidArgument(
            f"a query has at most {MAX_QUERY_ITEMS} items, got {len(items)}", argument=argument
        )
    checked: list[QueryItem] = []
    for item in items:
        if not isinstance(item, QueryItem):
            raise InvalidArgument(
                f"query items must be QueryItem, not {type(item).__name__}", argument=argument
            )
        types = item.types
        if isinstance(types, str | bytes) or not isinstance(types, tuple | list):
            raise InvalidArgument("a query item's types must be a tuple or list", argument=argument)
        if len(types) > MAX_ITEM_TYPES:
            raise InvalidArgument(
                f"a query item names at most {MAX_ITEM_TYPES} types, got {len(types)}",
                argument=argument,
            )
        for name in types:
            try:
                validate_type_name(name)
            except InvalidArgument as exc:
                raise InvalidArgument(str(exc), argument=argument) from None
        tags = validate_tags(item.tags, argument)
        if not types and not tags:
            raise InvalidArgument(
                "a query item needs types or tags (Query.all() matches every event)",
                argument=argument,
            )
        checked.append(QueryItem(tuple(dict.fromkeys(types)), tags))
    result = Query(tuple(checked))
    scans = len(arms(result))
    if scans > MAX_QUERY_SCANS:
        raise InvalidArgument(
            f"a query makes at most {MAX_QUERY_SCANS} index scans (one per item with tags, "
            f"one per type of an item of types alone), this one {scans}",
            argument=argument,
        )
    return result


def validate_condition(condition: object) -> AppendCondition | None:
    """A checked copy of ``condition`` (None stays None)."""
    if condition is None:
        return None
    if not isinstance(condition, AppendCondition):
        raise InvalidArgument(
            f"expected an AppendCondition, not {type(condition).__name__}", argument="condition"
        )
    after = condition.after
    if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
        raise InvalidArgument(
            f"a condition's after must be None or an int >= 0, not {after!r}", argument="after"
        )
    return AppendCondition(validate_query(condition.query, "condition"), after)


def validate_append(
    events: object, condition: object
) -> tuple[list[NewEvent], AppendCondition | None]:
    """A DCB append's events (at least one, each valid, no id twice) and its
    checked condition, or ``InvalidArgument``."""
    checked = validate_events(events)
    if not checked:
        raise InvalidArgument("append_events needs at least one event", argument="events")
    return checked, validate_condition(condition)


def validate_read(from_position: object, backwards: object, limit: object) -> None:
    if from_position is not None and (
        isinstance(from_position, bool) or not isinstance(from_position, int) or from_position < 0
    ):
        raise InvalidArgument(
            f"from_position must be None or an int >= 0, not {from_position!r}",
            argument="from_position",
        )
    if type(backwards) is not bool:
        raise InvalidArgument("backwards must be a bool", argument="backwards")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidArgument(f"limit must be an int >= 0, not {limit!r}", argument="limit")


# --- how a backend runs a query ---------------------------------------------------------


class Arm(msgspec.Struct, frozen=True):
    """One ordered index scan of a query: the events of type ``key`` (``by
    == "type"``) or carrying tag ``key`` (``by == "tag"``), in position
    order, kept if their type is one of ``types`` (any if empty) and they
    carry every tag of ``tags`` too. A query is the union of its arms."""

    by: Literal["type", "tag"]
    key: str
    types: tuple[str, ...]
    tags: tuple[str, ...]


def arms(query: Query) -> list[Arm]:
    """The index scans whose union is ``query`` (not ``Query.all()``): an
    item with tags scans its first tag and checks the rest and its types; an
    item of types alone scans each of its types."""
    found: dict[Arm, None] = {}
    for item in query.items:
        if item.tags:
            found[Arm("tag", item.tags[0], item.types, item.tags[1:])] = None
        else:
            for name in item.types:
                found[Arm("type", name, (), ())] = None
    return list(found)


GLOBAL_KEY = "*"
"""The lock key every writer takes shared and a match-all condition exclusive."""


def type_key(name: str) -> str:
    return "t:" + name  # write_keys builds these inline


def tag_key(tag: str) -> str:
    return "g:" + tag  # write_keys builds these inline


def write_keys(events: Iterable[NewEvent]) -> set[str]:
    """The keys an append takes shared: one per type and per tag it writes,
    and the global key."""
    events = list(events)
    keys = {"t:" + name for name in {event.type for event in events}}
    keys.add(GLOBAL_KEY)
    if any(event.tags for event in events):
        keys.update("g:" + tag for event in events for tag in event.tags)
    return keys


def condition_keys(query: Query) -> set[str]:
    """The keys a conditional append takes exclusive: every event that can
    match ``query`` is written under a shared lock on one of them (an item
    with tags: its first tag, carried by every event it matches; an item of
    types alone: each type; match-all: the global key)."""
    if query.match_all:
        return {GLOBAL_KEY}
    keys: set[str] = set()
    for item in query.items:
        if item.tags:
            keys.add(tag_key(item.tags[0]))
        else:
            keys.update(type_key(name) for name in item.types)
    return keys


def lock_keys(
    events: Iterable[NewEvent], condition: AppendCondition | None
) -> tuple[list[str], list[bool]]:
    """Every key an append locks, sorted, each with its mode (True:
    exclusive), so that all appends take their keys in one order."""
    exclusive = condition_keys(condition.query) if condition is not None else set()
    keys = sorted(write_keys(events) | exclusive)
    return keys, [key in exclusive for key in keys]


# --- idempotency ------------------------------------------------------------------------


def replayed_position(
    events: Sequence[NewEvent], stored: dict[uuid.UUID, RecordedEvent]
) -> int | None:
    """Decide what a DCB append whose ids may already be stored means.

    None of them stored: a new append (None). All of them stored without a
    stream, at increasing positions in this order, with the same type, tags
    and data: a retry of an append that succeeded, whose position (of its
    last event) is returned; its condition is not checked again. Anything
    else is a ``DuplicateEventId``."""
    if not stored or not events:
        return None
    first = stored.get(events[0].event_id)
    previous: int | None = None
    for event in events:
        record = stored.get(event.event_id)
        if record is None or first is None:
            raise DuplicateEventId(
                next(iter(stored)),
                NO_STREAM_ID,
                "some events of this append are already stored and others are not",
            )
        if record.stream_id != NO_STREAM_ID:
            raise DuplicateEventId(
                event.event_id, NO_STREAM_ID, f"already stored in stream {record.stream_id!r}"
            )
        if previous is not None and record.position <= previous:
            raise DuplicateEventId(event.event_id, NO_STREAM_ID, "already stored in another order")
        previous = record.position
        if (
            record.type != event.type
            or tuple(record.tags) != tuple(event.tags)
            or not same_json(record.data, event.data)
        ):
            raise DuplicateEventId(
                event.event_id, NO_STREAM_ID, "already stored with different content"
            )
    return previous
