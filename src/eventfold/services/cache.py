"""A cache of query answers with expiry, invalidated as projections advance.

An entry remembers the read model's commit counter (``generation``) when it
was computed; once anything has committed since (a projection applied a
batch, the mirror took events in), the entry is stale. ``ttl`` bounds the age
of any entry, which also covers writers in other processes the counter does
not see. An entry below a request's ``min_position`` is a miss too."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Entry(Generic[T]):
    __slots__ = ("created", "generation", "position", "value")

    def __init__(self, value: T, position: int, generation: int, created: float) -> None:
        self.value = value
        self.position = position
        self.generation = generation
        self.created = created


class QueryCache(Generic[T]):
    """At most ``max_entries`` answers, each for at most ``ttl`` seconds and
    only while ``generation()`` has not changed."""

    def __init__(
        self,
        *,
        ttl: float = 1.0,
        max_entries: int = 1024,
        generation: Callable[[], int] = lambda: 0,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.generation = generation
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, _Entry[T]] = OrderedDict()

    def get(self, key: Hashable, *, min_position: int | None = None) -> T | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        fresh = (
            time.monotonic() - entry.created < self.ttl
            and entry.generation == self.generation()
            and (min_position is None or entry.position >= min_position)
        )
        if not fresh:
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.value

    def put(self, key: Hashable, value: T, *, position: int, generation: int) -> None:
        """Keep ``value``, computed at ``generation`` (read it before the query)."""
        if self.ttl <= 0 or self.max_entries <= 0:
            return
        self._entries[key] = _Entry(value, position, generation, time.monotonic())
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, Any]:
        return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses}
