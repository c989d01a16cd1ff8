"""The Decider: ``decide(command, state) -> events`` and ``evolve(state, event)
-> state``, starting from ``initial_state()``. Pure, synchronous, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from eventfold.errors import InvalidDecision

C = TypeVar("C")
E = TypeVar("E")
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Decider(Generic[C, E, S]):
    """A write model as three functions. ``initial_state`` is a factory so that a
    mutable state is never shared between folds."""

    decide: Callable[[C, S], Sequence[E]]
    evolve: Callable[[S, E], S]
    initial_state: Callable[[], S]

    def events(self, command: C, state: S) -> list[E]:
        """``decide(command, state)`` as a list. ``decide`` must return a list
        (or another sequence or iterable) of events, ``[]`` for none; anything
        else, ``None`` or a lone event included, raises ``InvalidDecision``
        naming the decide function and the command."""
        produced = self.decide(command, state)
        if produced is None or isinstance(produced, str | bytes | bytearray | Mapping):
            raise InvalidDecision(self.decide, command, produced)
        try:
            return list(produced)
        except TypeError:  # not iterable: a lone event, most likely
            raise InvalidDecision(self.decide, command, produced) from None

    def fold(self, events: Iterable[E], state: S | None = None) -> S:
        """Apply ``events`` to ``state`` (or to a fresh initial state)."""
        current = self.initial_state() if state is None else state
        evolve = self.evolve
        for event in events:
            current = evolve(current, event)
        return current
