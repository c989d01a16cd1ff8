"""A class-style aggregate: a thin layer over the same fold as a Decider.

Subclass it (a dataclass works well, so snapshots can encode it), implement
``apply(event)`` to change fields, and write command methods that check rules
and call ``record(event)``. ``MyAggregate.decider()`` gives the Decider the
Repository runs, where a command is any callable taking the aggregate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from eventfold.domain.decider import Decider


class Aggregate:
    def apply(self, event: Any) -> None:
        """Change this aggregate's fields for ``event``. Must not fail."""
        raise NotImplementedError(f"{type(self).__name__}.apply")

    def record(self, event: Any) -> None:
        """Apply a new event now and keep it until the repository saves it."""
        self.apply(event)
        self.pending_events.append(event)

    @property
    def pending_events(self) -> list[Any]:
        pending: list[Any] | None = self.__dict__.get("_pending_events")
        if pending is None:
            pending = []
            self.__dict__["_pending_events"] = pending
        return pending

    def collect_events(self) -> list[Any]:
        """The events recorded since the last call, clearing them."""
        events = list(self.pending_events)
        self.pending_events.clear()
        return events

    @classmethod
    def decider(cls) -> Decider[Callable[[Self], object], Any, Self]:
        def decide(command: Callable[[Self], object], state: Self) -> list[Any]:
            state.collect_events()
            command(state)
            return state.collect_events()

        def evolve(state: Self, event: Any) -> Self:
            state.apply(event)
            return state

        return Decider(decide=decide, evolve=evolve, initial_state=cls)
