"""Reads on replicas: where a read goes, and what its answer says about it.

A store that has replicas (PostgreSQL hot standbys; a read-model database's
standbys for the mirror) declares the ``ReplicaReads`` capability: ``reads(route,
...)`` gives a read-only view of the store whose reads go to ``route``.

The routing rule:

- the store's own methods read the **primary**: writes, and the reads that
  must be exact (a repository's load before a decide, expected-version and
  condition checks) never leave it;
- ``reads("replica")`` reads a replica that is up and not lagging, and falls
  back to another one, then to the primary, when one fails or cannot see what
  the reader has already seen: callers get no error, only an answer that says
  who served it (``Served``). Subscriptions, projection catch-up, the relay,
  CLI inspection and export, and the query service's history and as-of reads
  use it by default; each takes a ``route`` to override that per call
  (``"primary"``).

Read-your-writes: ``reads("replica", min_position=token)`` waits up to
``wait`` seconds for a replica that can see ``token``; past that it reads the
primary (``on_lag="primary"``) or answers from the replica and says it is
stale (``on_lag="stale"``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, TypeAlias, get_args

import msgspec

from eventfold.errors import ConfigurationError, InvalidArgument
from eventfold.store.api import EventReader

Route: TypeAlias = Literal["primary", "replica"]
"""Where a read goes: the primary, or a replica (falling back to the primary)."""
OnLag: TypeAlias = Literal["primary", "stale"]
"""What a read with a position token does when no replica can see it in time:
read the primary, or answer from a replica and say it is stale."""
ReplicaState: TypeAlias = Literal["unknown", "up", "lagging", "down"]

ROUTES: tuple[str, ...] = get_args(Route)
ON_LAG: tuple[str, ...] = get_args(OnLag)


class Served(msgspec.Struct, frozen=True, kw_only=True):
    """Who answered a routed read and how fresh it was: ``route`` asked for,
    ``source`` (``primary`` or the replica's ``host:port``) served;
    ``fell_back``: a replica was asked for and the primary answered;
    ``stale``: the answer cannot see ``min_position`` (``on_lag="stale"``);
    ``visible``: the highest position the source could see when it answered."""

    route: Route
    source: str
    fell_back: bool = False
    stale: bool = False
    min_position: int | None = None
    visible: int | None = None


class ReplicaHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One replica as the store's monitor last saw it. ``state``: ``up``
    (reads go there), ``lagging`` (more than ``max_lag`` seconds behind, or
    replay paused with WAL waiting), ``down`` (unreachable, or no longer a
    standby), ``unknown`` (not checked yet). ``lag_seconds``: how long ago
    the primary had written what the replica has replayed (0 when it has
    replayed everything); ``lag_bytes``: WAL written but not replayed yet."""

    name: str
    state: ReplicaState
    lag_seconds: float | None = None
    lag_bytes: int | None = None
    replay_paused: bool = False
    head: int | None = None
    error: str | None = None
    checked_at: float | None = None
    """``time.time()`` of the last check."""


class RoutedReader(EventReader, Protocol):
    """A read-only view of a store on one route (``ReplicaReads.reads``)."""

    @property
    def served(self) -> Served | None:
        """Who served the last read (None before the first)."""
        ...

    @property
    def capabilities(self) -> frozenset[type]: ...


def check_route(route: object) -> Route:
    if route not in ROUTES:
        raise InvalidArgument(
            f"route must be one of {list(ROUTES)}, not {route!r}", argument="route"
        )
    return route  # type: ignore[return-value]


def check_on_lag(on_lag: object, setting: str = "on_lag") -> OnLag:
    if on_lag not in ON_LAG:
        raise ConfigurationError(
            f"{setting} must be one of {list(ON_LAG)}, not {on_lag!r}", setting=setting
        )
    return on_lag  # type: ignore[return-value]


def route_reads(
    store: EventReader,
    route: Route = "replica",
    *,
    min_position: int | None = None,
    wait: float | None = None,
    on_lag: OnLag | None = None,
) -> EventReader:
    """``store``'s reads on ``route`` where it declares ``ReplicaReads``,
    else ``store`` itself (whose reads are all on its one database)."""
    from eventfold.store.capabilities import ReplicaReads

    check_route(route)
    if ReplicaReads not in getattr(store, "capabilities", frozenset()):
        return store
    routed: ReplicaReads = store  # type: ignore[assignment]
    return routed.reads(route, min_position=min_position, wait=wait, on_lag=on_lag)


async def replica_health(store: EventReader) -> list[ReplicaHealth]:
    """The state and lag of each of ``store``'s replicas (none: empty)."""
    from eventfold.store.capabilities import ReplicaReads

    if ReplicaReads not in getattr(store, "capabilities", frozenset()):
        return []
    routed: ReplicaReads = store  # type: ignore[assignment]
    return await routed.replica_health()


def served_by(reader: EventReader) -> Served | None:
    """What a routed reader says about its last read (None for a plain store)."""
    found: Any = getattr(reader, "served", None)
    return found if isinstance(found, Served) else None


async def poll_until(
    check: Callable[[], Awaitable[bool]], timeout: float, *, longest: float = 0.05
) -> bool:
    """Call ``check`` until it is true or ``timeout`` seconds pass, sleeping
    1 ms, 2 ms, 4 ms ... at most ``longest`` between calls (a replica has no
    notification to wait for). Whether it became true."""
    deadline = time.monotonic() + max(timeout, 0.0)
    delay = 0.001
    while True:
        if await check():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, longest)
