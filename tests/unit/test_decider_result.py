"""A decider's decide must return a list of events; anything else (None, a
lone event) is a typed error naming the decider and the command, and nothing
is written."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from eventfold import Codec, Decider, EventRegistry, Repository
from eventfold.errors import InvalidDecision
from eventfold.store import MemoryStore
from eventfold.testing import given


class Ping(msgspec.Struct, frozen=True):
    n: int


@dataclasses.dataclass(frozen=True)
class Pinged:
    n: int


class Pong(msgspec.Struct, frozen=True):
    n: int


registry = EventRegistry()
registry.add(Pinged)
registry.add(Pong)


def returns_none(command: Ping, state: int) -> Any:
    return None


def returns_one_dataclass(command: Ping, state: int) -> Any:
    return Pinged(command.n)


def returns_one_struct(command: Ping, state: int) -> Any:
    return Pong(command.n)


def returns_a_dict(command: Ping, state: int) -> Any:
    return {"n": command.n}


def make(decide: Any) -> Decider[Ping, Any, int]:
    return Decider(decide=decide, evolve=lambda s, e: s + 1, initial_state=lambda: 0)


@pytest.mark.parametrize(
    ("decide", "returned"),
    [
        (returns_none, "None"),
        (returns_one_dataclass, "a Pinged"),
        (returns_one_struct, "a Pong"),
        (returns_a_dict, "a dict"),
    ],
)
async def test_a_decider_returning_anything_but_events_is_a_typed_error(
    decide: Any, returned: str
) -> None:
    store = MemoryStore()
    repo = Repository(store, make(decide), Codec(registry))
    with pytest.raises(InvalidDecision) as info:
        await repo.handle("ping-1", Ping(1))
    message = str(info.value)
    assert f"{__name__}.{decide.__name__}" in message
    assert info.value.decider == f"{__name__}.{decide.__name__}"
    assert info.value.command == "Ping"
    assert f"returned {returned} for command Ping" in message
    assert isinstance(info.value, TypeError)  # what it was before, now typed and named
    assert await store.head_position() == 0
    with pytest.raises(InvalidDecision):
        given(make(decide)).when(Ping(1)).then()


def test_any_sequence_or_iterable_of_events_is_accepted() -> None:
    def as_tuple(command: Ping, state: int) -> Any:
        return (Pong(command.n), Pinged(command.n))

    def as_generator(command: Ping, state: int) -> Iterator[Any]:
        yield Pong(command.n)

    assert make(as_tuple).events(Ping(1), 0) == [Pong(1), Pinged(1)]
    assert make(as_generator).events(Ping(2), 0) == [Pong(2)]
    given(make(as_tuple)).when(Ping(3)).then(Pong(3), Pinged(3))
