"""Decisions over Dynamic Consistency Boundaries: read what a decision needs
by query, decide, and append with the condition of exactly what was read.

A ``DecisionProjection`` is a fold with a query: the events it reads
(``query``), where it starts (``initial_state()``) and how an event moves it
on (``evolve(state, event)``, with the decoded event). A ``DecisionModel``
composes several, by name, into ONE read (the union of their queries: each
event read once, handed to every projection whose query matches it) and ONE
append condition (that union, after the last position read)::

    model = DecisionModel(
        course=course_capacity("c1"),        # query: the course's events
        student=student_courses("s1"),       # query: the student's events
    )
    decided = await decide(store, codec, model, lambda s: subscribe(s, "c1", "s1"))

``decide`` loads the model, calls the function with the states by name,
appends the events it returns (tags from the registry, ``EventRegistry.add(...,
tags=...)``) with the condition, and on ``ConditionFailed`` (another writer
changed what the decision read) does it all again, at most ``max_retries``
more times. A ``CommandRejected`` from the function writes nothing.
Command services route a command to a decision with
``Commands.register_decision``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from eventfold.domain.events import Metadata
from eventfold.errors import ConditionFailed, InvalidArgument
from eventfold.serialization.codec import Codec
from eventfold.store.capabilities import DCBStore
from eventfold.store.dcb import AppendCondition, Query, QueryItem, validate_query

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class DecisionProjection(Generic[S]):
    """A fold over the events ``query`` matches: pure, no I/O."""

    query: Query
    initial_state: Callable[[], S]
    evolve: Callable[[S, Any], S]


class DecisionModel:
    """Named ``DecisionProjection``s read and checked as one."""

    def __init__(self, **projections: DecisionProjection[Any]) -> None:
        if not projections:
            raise InvalidArgument("a decision model needs a projection", argument="projections")
        self.projections = projections
        self.query = union(validate_query(p.query) for p in projections.values())

    def initial_states(self) -> dict[str, Any]:
        return {name: p.initial_state() for name, p in self.projections.items()}


def union(queries: Iterable[Query]) -> Query:
    """The query matching what any of ``queries`` matches (each item once)."""
    items: dict[QueryItem, None] = {}
    for query in queries:
        if query.match_all:
            return Query.all()
        items.update(dict.fromkeys(query.items))
    return Query(tuple(items))


class Decision(msgspec.Struct, frozen=True):
    """A loaded model: each projection's state, by name, and the condition
    an append based on them must carry."""

    states: dict[str, Any]
    condition: AppendCondition


class Decided(msgspec.Struct, frozen=True):
    """What ``decide`` did: the events appended (none: nothing was written),
    the position of the last (None if none), the states it decided on, and
    how many attempts it took."""

    events: list[Any]
    position: int | None
    states: dict[str, Any]
    attempts: int


async def load(store: DCBStore, codec: Codec, model: DecisionModel) -> Decision:
    """Read the model's query once, fold each event into every projection
    whose query matches it, and return the states with the append condition
    (the query, after the last position read)."""
    states = model.initial_states()
    projections = list(model.projections.items())
    after: int | None = None
    async for record in store.read(model.query):
        after = record.position
        event: Any = None
        for name, projection in projections:
            if projection.query.matches(record.type, record.tags):
                if event is None:
                    event = codec.decode_event(record)
                states[name] = projection.evolve(states[name], event)
    return Decision(states, AppendCondition(model.query, after))


async def decide(
    store: DCBStore,
    codec: Codec,
    model: DecisionModel,
    decide: Callable[[dict[str, Any]], Sequence[Any]],
    *,
    metadata: Metadata | None = None,
    event_ids: Callable[[int], uuid.UUID] | None = None,
    max_retries: int = 3,
) -> Decided:
    """Load ``model``, decide, append with the condition; on
    ``ConditionFailed`` start again, at most ``max_retries`` more times, then
    raise it. ``event_ids(i)``, if given, names the ``i``-th event (so that
    sending a decision again is idempotent)."""
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise InvalidArgument("max_retries must be an int >= 0", argument="max_retries")
    attempt = 0
    while True:
        attempt += 1
        decision = await load(store, codec, model)
        events = list(decide(decision.states))
        if not events:
            return Decided([], None, decision.states, attempt)
        new = [
            codec.encode(event, metadata, event_id=None if event_ids is None else event_ids(index))
            for index, event in enumerate(events)
        ]
        try:
            position = await store.append_events(new, decision.condition)
        except ConditionFailed:
            if attempt > max_retries:
                raise
            continue
        return Decided(events, position, decision.states, attempt)


def projection(
    query: Query, initial: Callable[[], S], **handlers: Callable[[S, Any], S]
) -> DecisionProjection[S]:
    """A projection from handlers by event class name: ``projection(query,
    lambda: 0, CourseDefined=lambda state, event: ...)``; events of other
    classes leave the state as it is."""

    def evolve(state: S, event: Any) -> S:
        handler = handlers.get(type(event).__name__)
        return state if handler is None else handler(state, event)

    return DecisionProjection(query, initial, evolve)


__all__ = [
    "Decided",
    "Decision",
    "DecisionModel",
    "DecisionProjection",
    "decide",
    "load",
    "projection",
    "union",
]
