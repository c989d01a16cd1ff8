"""``ReplicaReads``: reads routed to a store's replicas. Run on a store with
replicas or without (where every route reads the one database), a routed
view reads what the store holds, honours a position token, says who served
it, and refuses a bad route or token before reading."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from eventfold.errors import ConfigurationError, InvalidArgument
from eventfold.store.capabilities import ReplicaReads
from eventfold.store.routing import ReplicaHealth, Served
from eventfold.testing.conformance.support import Conformance, collect, numbered, numbers


class ReplicaReadsConformance(Conformance):
    """``ReplicaReads``: ``reads(route, min_position=..., wait=..., on_lag=...)``."""

    capability: ClassVar[type | None] = ReplicaReads

    @pytest.mark.parametrize("route", ["primary", "replica"])
    async def test_a_routed_view_with_a_token_reads_what_was_written(
        self, open_store: Any, route: str
    ) -> None:
        async with open_store() as store:
            await store.append("order-1", numbered(3))
            written = await store.append("order-2", numbered(2, start=3))
            view = store.reads(route, min_position=written.position, wait=30.0)
            log = await collect(view.read_all())
            assert numbers(log) == [0, 1, 2, 3, 4]
            assert [r.position for r in log] == [r.position async for r in store.read_all()]
            assert numbers(await collect(view.read_stream("order-2"))) == [3, 4]
            assert await view.head_position() == written.position
            assert await view.stream_version("order-1") == 3
            served = view.served
            assert isinstance(served, Served)
            assert served.route == route and not served.stale
            assert served.min_position == written.position
            assert served.visible is None or served.visible >= written.position
            if route == "primary":
                assert served.source == "primary" and not served.fell_back

    async def test_a_routed_view_waits_for_events_it_can_see(self, open_store: Any) -> None:
        async with open_store() as store:
            first = await store.append("order-1", numbered(1))
            view = store.reads("replica", min_position=first.position, wait=30.0)
            assert await view.wait_for_events(0, 30.0)
            last = [r async for r in view.read_all()][-1]
            assert last.position == first.position
            later = await store.append("order-1", numbered(1, start=1))
            assert await view.wait_for_events(first.position, 30.0)
            assert await view.head_position() >= later.position

    async def test_bad_routes_and_tokens_are_refused(self, open_store: Any) -> None:
        async with open_store() as store:
            with pytest.raises(InvalidArgument):
                store.reads("elsewhere")
            with pytest.raises(InvalidArgument):
                store.reads("replica", min_position=-1)
            with pytest.raises(InvalidArgument):
                store.reads("replica", min_position=1, wait=-1.0)
            with pytest.raises(ConfigurationError):
                store.reads("replica", min_position=1, on_lag="never")

    async def test_replica_health_names_each_replica(self, open_store: Any) -> None:
        async with open_store() as store:
            found = await store.replica_health()
            assert all(isinstance(h, ReplicaHealth) for h in found)
            assert len({h.name for h in found}) == len(found)
