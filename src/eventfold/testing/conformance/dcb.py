"""``DCBConformance``: the mixin of the ``DCBStore`` capability (dynamic
consistency boundaries): tags, every query shape, conditional appends,
their idempotency, one log shared with streams, racing writers, and
hostile input."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any, ClassVar

import msgspec
import pytest

from eventfold.compliance.chain import verify
from eventfold.errors import ConditionFailed, DuplicateEventId, InvalidArgument
from eventfold.store.api import NO_STREAM_ID, NewEvent, RecordedEvent, StreamAppend
from eventfold.store.capabilities import ChainReader, DCBStore
from eventfold.store.checks import MAX_TAG_LENGTH, MAX_TAGS
from eventfold.store.dcb import MAX_QUERY_ITEMS, AppendCondition, Query, QueryItem
from eventfold.testing.conformance.support import Conformance, collect


def tagged(type: str = "Happened", *tags: str, **data: Any) -> NewEvent:
    """A new event of ``type`` carrying ``tags``."""
    return NewEvent(type=type, data=msgspec.json.encode(data or {"n": 0}), tags=tags)


def matching(records: list[RecordedEvent], query: Query) -> list[int]:
    """Positions of ``records`` that ``query`` matches: the reference rule."""
    return [r.position for r in records if query.matches_event(r)]


# Every query shape, over the events of ``_fill``.
QUERIES = [
    Query.of(QueryItem(types=("Defined",))),
    Query.of(QueryItem(types=("Defined", "Joined"))),
    Query.of(QueryItem(tags=("course:c1",))),
    Query.of(QueryItem(tags=("course:c1", "student:s1"))),
    Query.of(QueryItem(types=("Joined",), tags=("course:c2",))),
    Query.of(QueryItem(types=("Joined", "Left"), tags=("student:s2",))),
    Query.of(QueryItem(types=("Renamed",)), QueryItem(tags=("course:c1",))),
    Query.of(QueryItem(types=("Joined",), tags=("course:c1",)), QueryItem(tags=("student:s1",))),
    Query.of(QueryItem(tags=("absent",))),
    Query.of(QueryItem(types=("Absent",))),
    Query.all(),
]


async def _fill(store: Any) -> list[RecordedEvent]:
    """Stream and DCB events, interleaved, with overlapping tags."""
    for i in range(3):
        c, s = f"course:c{i % 2 + 1}", f"student:s{i % 3 + 1}"
        await store.append_events([tagged("Defined", c, n=i)])
        await store.append(f"order-{i}", [tagged("Placed", s, n=i), tagged("Renamed", n=i)])
        await store.append_events([tagged("Joined", c, s, n=i), tagged("Left", s, n=i)])
        await store.append_events([tagged("Joined", "course:c1", "student:s1", n=i)])
    return await collect(store.read_all())


class DCBConformance(Conformance):
    """``DCBStore``: queries over types and tags, conditional appends."""

    capability: ClassVar[type | None] = DCBStore

    # --- tags and the shared log ----------------------------------------------------

    async def test_tags_round_trip_and_dcb_events_share_the_log(self, open_store: Any) -> None:
        async with open_store() as store:
            first = await store.append("order-1", [tagged("Placed", "customer:7", "vip", n=1)])
            position = await store.append_events(
                [tagged("Defined", "course:c1", n=2), tagged("Noted", n=3)]
            )
            last = await store.append("order-1", [tagged("Paid", n=4)])
            records = await collect(store.read_all())
            assert [r.type for r in records] == ["Placed", "Defined", "Noted", "Paid"]
            positions = [r.position for r in records]
            assert positions == sorted(set(positions))
            assert records[0].tags == ("customer:7", "vip")
            assert records[0].position == first.position
            assert records[1].tags == ("course:c1",) and records[2].tags == ()
            for loose in records[1:3]:
                assert loose.stream_id == NO_STREAM_ID and loose.version == loose.position
            assert records[2].position == position < last.position
            assert await store.head_position() == last.position
            stream = await collect(store.read_stream("order-1"))
            assert [(r.version, r.tags) for r in stream] == [(1, ("customer:7", "vip")), (2, ())]
            if ChainReader in store.capabilities:
                report = await verify(store)
                assert report.clean, report.findings

    async def test_wait_for_events_wakes_on_a_dcb_append(self, open_store: Any) -> None:
        async with open_store() as store:
            head = await store.head_position()
            waiter = asyncio.create_task(store.wait_for_events(head, 30.0))
            await asyncio.sleep(0)
            await store.append_events([tagged("Defined", "course:c1")])
            assert await waiter

    # --- reads ----------------------------------------------------------------------

    @pytest.mark.parametrize("query", QUERIES, ids=repr)
    async def test_every_query_shape_reads_what_it_matches(
        self, open_store: Any, query: Query
    ) -> None:
        """Forwards and backwards, from a position, with a limit that counts
        events (an event matching two items takes one slot)."""
        async with open_store() as store:
            records = await _fill(store)
            expected = matching(records, query)
            got = [r.position for r in await collect(store.read(query))]
            assert got == expected
            back = [r.position for r in await collect(store.read(query, backwards=True))]
            assert back == expected[::-1]
            for limit in (0, 1, 2, 5):
                limited = await collect(store.read(query, limit=limit))
                assert [r.position for r in limited] == expected[:limit]
                limited = await collect(store.read(query, backwards=True, limit=limit))
                assert [r.position for r in limited] == expected[::-1][:limit]
            middle = records[len(records) // 2].position
            since = [r.position for r in await collect(store.read(query, from_position=middle))]
            assert since == [p for p in expected if p >= middle]
            until = await collect(store.read(query, from_position=middle, backwards=True))
            assert [r.position for r in until] == [p for p in expected if p <= middle][::-1]
            full = {r.position: r for r in records}
            assert all(r == full[r.position] for r in await collect(store.read(query)))

    async def test_reads_page_through_many_matches(self, open_store: Any) -> None:
        async with open_store() as store:
            for start in range(0, 2600, 650):
                await store.append_events(
                    [
                        tagged("Even" if i % 2 == 0 else "Odd", f"group:{i % 3}", "all", n=i)
                        for i in range(start, start + 650)
                    ]
                )
            query = Query.of(
                QueryItem(types=("Even",), tags=("all",)), QueryItem(tags=("group:1",))
            )
            records = await collect(store.read_all())
            expected = matching(records, query)
            assert len(expected) > 1500
            assert [r.position for r in await collect(store.read(query))] == expected
            back = await collect(store.read(query, backwards=True, limit=1700))
            assert [r.position for r in back] == expected[::-1][:1700]

    # --- conditional appends --------------------------------------------------------

    async def test_a_condition_fails_on_a_later_match_and_writes_nothing(
        self, open_store: Any
    ) -> None:
        async with open_store() as store:
            query = Query.of(QueryItem(types=("Joined",), tags=("course:c1",)))
            first = await store.append_events(
                [tagged("Joined", "course:c1", "student:s1")], AppendCondition(query)
            )
            await store.append_events([tagged("Joined", "course:c2", "student:s1")])
            head = await store.head_position()
            with pytest.raises(ConditionFailed) as failed:
                await store.append_events(
                    [tagged("Joined", "course:c1", "student:s2")], AppendCondition(query)
                )
            assert failed.value.position == first
            assert failed.value.query == query and failed.value.after is None
            assert await store.head_position() == head
            # After the last match: it holds; events that do not match never count.
            second = await store.append_events(
                [tagged("Joined", "course:c1", "student:s2")], AppendCondition(query, after=first)
            )
            assert second > head
            await store.append("log-1", [tagged("Joined", "course:c3")])
            await store.append("log-1", [tagged("Joined", "course:c1")])
            stream_match = await store.head_position()
            with pytest.raises(ConditionFailed) as failed:
                await store.append_events(
                    [tagged("Joined", "course:c1")], AppendCondition(query, after=second)
                )
            assert failed.value.position == stream_match and failed.value.after == second
            everything = AppendCondition(Query.all(), after=stream_match)
            assert await store.append_events([tagged("Noted")], everything) > stream_match
            with pytest.raises(ConditionFailed):
                await store.append_events([tagged("Noted")], everything)

    async def test_types_only_and_match_all_conditions(self, open_store: Any) -> None:
        async with open_store() as store:
            kinds = Query.of(QueryItem(types=("Numbered", "Renumbered")))
            await store.append_events([tagged("Numbered", n=1)], AppendCondition(kinds))
            with pytest.raises(ConditionFailed):
                await store.append_events([tagged("Numbered", n=2)], AppendCondition(kinds))
            with pytest.raises(ConditionFailed) as failed:
                await store.append_events([tagged("Other", n=3)], AppendCondition(Query.all()))
            (only,) = await collect(store.read_all())
            assert only.type == "Numbered" and failed.value.position == only.position
            later = AppendCondition(kinds, after=only.position)
            assert await store.append_events([tagged("Renumbered")], later) > only.position

    async def test_a_conditional_append_is_idempotent_by_event_id(self, open_store: Any) -> None:
        async with open_store() as store:
            events = [tagged("Registered", "username:ana"), tagged("Welcomed", "username:ana")]
            condition = AppendCondition(Query.of(QueryItem(tags=("username:ana",))))
            position = await store.append_events(events, condition)
            head = await store.head_position()
            # A retry of a success: its position, though its condition now fails.
            assert await store.append_events(events, condition) == position
            assert await store.head_position() == head
            with pytest.raises(DuplicateEventId):  # the same ids with other content
                await store.append_events(
                    [msgspec.structs.replace(events[0], tags=("username:bob",)), events[1]]
                )
            with pytest.raises(DuplicateEventId):  # some ids new, some stored
                await store.append_events([events[0], tagged("Registered")])
            with pytest.raises(DuplicateEventId):  # a DCB event's id in a stream
                await store.append("user-1", [events[0]])
            stream_event = tagged("Placed")
            await store.append("order-1", [stream_event])
            with pytest.raises(DuplicateEventId):  # a stream event's id without a stream
                await store.append_events([stream_event])
            assert await store.head_position() > head

    async def test_racing_writers_keep_every_condition(self, open_store: Any) -> None:
        """Writers read, then append with the condition of what they read,
        on random overlapping tags (recording the position they read);
        unconditional writers mix in. Afterwards no committed conditional
        append has a match between its ``after`` and its own position."""
        rng = random.Random(12)
        async with open_store() as store:

            async def writer(w: int) -> None:
                for _ in range(12):
                    if w % 4 == 3:
                        await store.append_events([tagged("Noise", f"k:{rng.randrange(4)}")])
                        continue
                    keys = rng.sample(range(4), rng.randint(1, 2))
                    query = Query.of(*(QueryItem(tags=(f"k:{k}",)) for k in keys))
                    seen = await collect(store.read(query))
                    after = seen[-1].position if seen else None
                    event = tagged("Claimed", *(f"k:{k}" for k in keys), keys=keys, after=after)
                    with contextlib.suppress(ConditionFailed):
                        await store.append_events([event], AppendCondition(query, after))

            await asyncio.gather(*(writer(w) for w in range(8)))
            assert violations(await collect(store.read_all())) == []

    async def test_disjoint_conditions_never_fail(self, open_store: Any) -> None:
        async with open_store() as store:

            async def writer(w: int) -> None:
                query = Query.of(QueryItem(tags=(f"own:{w}",)))
                after = None
                for _ in range(10):
                    after = await store.append_events(
                        [tagged("Claimed", f"own:{w}", "shared")], AppendCondition(query, after)
                    )

            await asyncio.gather(*(writer(w) for w in range(8)))
            assert len(await collect(store.read(Query.of(QueryItem(tags=("shared",)))))) == 80

    async def test_one_of_many_identical_conditions_wins(self, open_store: Any) -> None:
        async with open_store() as store:
            query = Query.of(QueryItem(types=("Registered",), tags=("username:ana",)))

            async def register(i: int) -> bool:
                try:
                    await store.append_events(
                        [tagged("Registered", "username:ana", n=i)], AppendCondition(query)
                    )
                except ConditionFailed:
                    return False
                return True

            assert sum(await asyncio.gather(*(register(i) for i in range(16)))) == 1
            assert len(await collect(store.read(query))) == 1

    # --- bad input ------------------------------------------------------------------

    @pytest.mark.parametrize(
        "tags",
        [
            ("",),
            ("x" * (MAX_TAG_LENGTH + 1),),
            ("with space",),
            ("tab\t",),
            ("nul\x00",),
            ("line\nbreak",),
            ("bell\x07",),
            tuple(f"t{i}" for i in range(MAX_TAGS + 1)),
            ("twice", "twice"),
            (7,),
            "a-string",
            b"bytes",
        ],
        ids=repr,
    )
    async def test_hostile_tags_are_refused_and_change_nothing(
        self, open_store: Any, tags: Any
    ) -> None:
        async with open_store() as store:
            await store.append("order-1", [tagged("Placed", "ok")])
            head = await store.head_position()
            event = NewEvent("Placed", b"{}", tags=tags)
            with pytest.raises(InvalidArgument):
                await store.append("order-1", [event])
            with pytest.raises(InvalidArgument):
                await store.append_many([StreamAppend("order-2", [tagged(), event])])
            with pytest.raises(InvalidArgument):
                await store.append_events([tagged(), event])
            if isinstance(tags, tuple) and tags and all(isinstance(t, str) for t in tags):
                with pytest.raises(InvalidArgument):
                    await collect(store.read(Query.of(QueryItem(tags=tags))))
                with pytest.raises(InvalidArgument):
                    await store.append_events(
                        [tagged()], AppendCondition(Query.of(QueryItem(tags=tags)))
                    )
            assert await store.head_position() == head

    @pytest.mark.parametrize(
        "query",
        [
            Query(),
            Query.of(QueryItem()),
            Query((QueryItem(types=("A",)),), True),
            Query.of(*(QueryItem(tags=(f"t{i}",)) for i in range(MAX_QUERY_ITEMS + 1))),
            Query.of(*(QueryItem(types=(f"T{i}",), tags=("x",)) for i in range(5000))),
            Query.of(QueryItem(types=tuple(f"T{i}" for i in range(5000)))),
            Query.of(*(QueryItem(types=tuple(f"T{i}-{j}" for j in range(10))) for i in range(20))),
            Query.of(QueryItem(types=("bad type",))),
            Query.of(QueryItem(types=("",))),
            Query.of(QueryItem(types=("'; DROP TABLE events; --",))),
            Query.of(QueryItem(types="A")),  # type: ignore[arg-type]
            Query(items="items"),  # type: ignore[arg-type]
            Query(("not an item",)),  # type: ignore[arg-type]
            "Query.all()",
            None,
        ],
        ids=lambda q: repr(q)[:60],
    )
    async def test_hostile_queries_are_refused_and_change_nothing(
        self, open_store: Any, query: Any
    ) -> None:
        async with open_store() as store:
            await store.append_events([tagged("A", "x")])
            head = await store.head_position()
            with pytest.raises(InvalidArgument):
                await collect(store.read(query))
            with pytest.raises(InvalidArgument):
                await store.append_events([tagged("A", "x")], AppendCondition(query))
            assert await store.head_position() == head

    @pytest.mark.parametrize(
        ("call", "kwargs"),
        [
            ("read", {"from_position": -1}),
            ("read", {"from_position": "3"}),
            ("read", {"limit": -1}),
            ("read", {"backwards": "yes"}),
            ("append", {"events": []}),
            ("append", {"events": "events"}),
            ("append", {"events": [{"type": "A"}]}),
            ("append", {"condition": "fail"}),
            ("append", {"condition": AppendCondition(Query.all(), after=-1)}),
            ("append", {"condition": AppendCondition(Query.all(), after=True)}),
        ],
        ids=repr,
    )
    async def test_malformed_dcb_arguments_are_refused(
        self, open_store: Any, call: str, kwargs: dict[str, Any]
    ) -> None:
        async with open_store() as store:
            head = await store.head_position()
            with pytest.raises(InvalidArgument):
                if call == "read":
                    await collect(store.read(Query.all(), **kwargs))
                else:
                    rest = dict(kwargs)
                    events = rest.pop("events", [tagged()])
                    await store.append_events(events, **rest)
            assert await store.head_position() == head


def violations(records: list[RecordedEvent]) -> list[tuple[int, int]]:
    """The verifier of racing conditional writers. Every ``Claimed`` event
    records in its data the keys it read (``keys``: the query is one item
    per key, tag ``k:<key>``, of types ``Claimed`` and ``Noise`` if
    ``typed``) and the position it read up to (``after``); events of one
    append share ``writer`` and ``n``. A violation is an event of another
    append matching the query between ``after`` and the claim's own
    position. Returns (claim, conflict) position pairs: none means every
    condition held."""
    found: list[tuple[int, int]] = []
    appends = {r.position: _append_of(r) for r in records}
    for claim in records:
        if claim.type != "Claimed":
            continue
        data = msgspec.json.decode(claim.data)
        if "keys" not in data:
            continue
        types = ("Claimed", "Noise") if data.get("typed") else ()
        query = Query.of(*(QueryItem(types=types, tags=(f"k:{k}",)) for k in data["keys"]))
        after = data["after"] or 0
        mine = appends[claim.position]
        found += [
            (claim.position, other.position)
            for other in records
            if after < other.position < claim.position
            and (mine is None or appends[other.position] != mine)
            and query.matches_event(other)
        ]
    return found


def _append_of(record: RecordedEvent) -> tuple[int, int] | None:
    if record.type != "Claimed":
        return None
    data = msgspec.json.decode(record.data)
    if "writer" not in data:
        return None
    return data["writer"], data["n"]
