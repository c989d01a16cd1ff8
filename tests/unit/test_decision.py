"""The decision helper: one read for several projections, one combined
condition, bounded retries on ConditionFailed, idempotent event ids; and
commands decided through it in the command service."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

import eventfold
from eventfold import Codec, EventRegistry
from eventfold.decision import DecisionModel, decide, load, projection, union
from eventfold.errors import ConditionFailed, InvalidArgument, RegistrationError
from eventfold.examples.courses.app import commands, run
from eventfold.examples.courses.decisions import DefineCourse, SubscribeStudentToCourse
from eventfold.examples.courses.events import CourseCapacityChanged
from eventfold.services.commands import CommandBus
from eventfold.services.outcomes import MemoryOutcomeStore
from eventfold.store.dcb import AppendCondition, Query, QueryItem

registry = EventRegistry()


@registry.register("Counted", tags=lambda e: [f"counter:{e.counter}"])
class Counted(msgspec.Struct, frozen=True):
    counter: str


codec = Codec(registry)


def count(counter: str) -> Any:
    return projection(
        Query.of(QueryItem(types=("Counted",), tags=(f"counter:{counter}",))),
        lambda: 0,
        Counted=lambda s, e: s + 1,
    )


async def test_one_read_folds_each_event_into_every_matching_projection() -> None:
    async with eventfold.connect("memory://") as store:
        for counter in ("a", "b", "a", "c"):
            await store.append_events([codec.encode(Counted(counter))])
        model = DecisionModel(a=count("a"), b=count("b"), again=count("a"))
        assert model.query == union([count("a").query, count("b").query])
        decision = await load(store, codec, model)
        assert decision.states == {"a": 2, "b": 1, "again": 2}
        assert decision.condition == AppendCondition(model.query, 3)
        everything = DecisionModel(a=count("a"), all=projection(Query.all(), lambda: 0))
        assert everything.query == Query.all()
        listed = projection(Query.of(QueryItem(types=["Counted"], tags=["counter:a"])), int)  # type: ignore[arg-type]
        assert DecisionModel(a=listed).query == count("a").query
        with pytest.raises(InvalidArgument):
            DecisionModel(bad=projection(Query(), int))


async def test_retries_are_bounded_and_each_starts_from_a_fresh_read() -> None:
    async with eventfold.connect("memory://") as store:
        attempts: list[int] = []

        def interfered(states: dict[str, Any]) -> list[Any]:
            attempts.append(states["a"])
            return [Counted("a")]

        async def racing_decide(max_retries: int, interfere: int) -> Any:
            # A competing writer lands between every read and append, `interfere` times.
            original = store.append_events
            left = [interfere]

            async def append_events(events: Any, condition: Any = None) -> int:
                if left[0] > 0:
                    left[0] -= 1
                    await original([codec.encode(Counted("a"))])
                return await original(events, condition)

            store.append_events = append_events
            try:
                return await decide(
                    store, codec, DecisionModel(a=count("a")), interfered, max_retries=max_retries
                )
            finally:
                del store.append_events

        with pytest.raises(ConditionFailed):
            await racing_decide(max_retries=2, interfere=10)
        assert attempts == [0, 1, 2]  # three attempts, each saw the writer before it
        attempts.clear()
        decided = await racing_decide(max_retries=2, interfere=1)
        assert decided.attempts == 2 and attempts == [3, 4]
        assert [r.type async for r in store.read_all()].count("Counted") == 5


async def test_an_empty_decision_writes_nothing_and_ids_make_it_idempotent() -> None:
    async with eventfold.connect("memory://") as store:
        model = DecisionModel(a=count("a"))
        nothing = await decide(store, codec, model, lambda states: [])
        assert (nothing.events, nothing.position) == ([], None)
        assert await store.head_position() == 0
        ids = [uuid.uuid4(), uuid.uuid4()]
        once = await decide(
            store, codec, model, lambda s: [Counted("a"), Counted("a")], event_ids=ids.__getitem__
        )
        # Sent again (e.g. the acknowledgement was lost): the same decision,
        # the same ids: nothing is written and the first position returned.
        again = await store.append_events(
            [codec.encode(Counted("a"), event_id=i) for i in ids],
            AppendCondition(model.query, None),
        )
        assert again == once.position and await store.head_position() == 2


def test_tags_must_be_a_function() -> None:
    with pytest.raises(RegistrationError):
        EventRegistry().add(Counted, "Counted", tags=["not", "callable"])  # type: ignore[arg-type]


async def test_the_course_application_keeps_capacity_and_the_student_limit() -> None:
    assert await run("memory://") == {
        "algebra subscribed": 3,
        "algebra turned away": 7,
        "ana subscribed": 5,
        "ana turned away": 1,
    }


async def test_decided_commands_in_the_command_service() -> None:
    async with eventfold.connect("memory://") as store:
        bus = CommandBus(commands(), store, MemoryOutcomeStore())
        defined = await bus.execute(bus.prepare("DefineCourse", DefineCourse("c1", 1)))
        assert defined.status == "succeeded" and defined.events == ["CourseDefined"]
        assert defined.stream_id == "" and defined.position == await store.head_position()
        again = await bus.execute(
            bus.prepare("DefineCourse", b'{"course_id": "c1", "capacity": 1}')
        )
        assert again.status == "rejected" and "already exists" in again.error.message  # type: ignore[union-attr]
        subscribe = SubscribeStudentToCourse("c1", "s1")
        first = await bus.execute(
            bus.prepare("SubscribeStudentToCourse", subscribe, idempotency_key="k1")
        )
        repeat = await bus.execute(
            bus.prepare("SubscribeStudentToCourse", subscribe, idempotency_key="k1")
        )
        assert first.status == "succeeded" and repeat == first
        full = await bus.execute(
            bus.prepare("SubscribeStudentToCourse", SubscribeStudentToCourse("c1", "s2"))
        )
        assert full.status == "rejected" and "full" in full.error.message  # type: ignore[union-attr]
        with pytest.raises(eventfold.errors.InvalidCommand):
            bus.prepare("DefineCourse", DefineCourse("c2", 1), expected_version=3)


async def test_a_decided_command_whose_condition_keeps_failing_is_a_typed_conflict() -> None:
    """A competing writer lands between every read and append: after its
    retries the command's outcome is a conflict naming the query, the
    position it read at and the first conflicting event."""
    async with eventfold.connect("memory://") as store:
        bus = CommandBus(commands(), store, MemoryOutcomeStore(), max_retries=1)
        assert (await bus.execute(bus.prepare("DefineCourse", DefineCourse("c1", 9)))).status == (
            "succeeded"
        )
        original = store.append_events
        competing: list[int] = []

        async def append_events(events: Any, condition: Any = None) -> int:
            rival = bus.commands.codec.encode(CourseCapacityChanged("c1", 8 - len(competing)))
            competing.append(await original([rival]))
            return await original(events, condition)

        store.append_events = append_events  # type: ignore[method-assign]
        try:
            outcome = await bus.execute(
                bus.prepare("SubscribeStudentToCourse", SubscribeStudentToCourse("c1", "s1"))
            )
        finally:
            del store.append_events
        assert outcome.status == "conflict" and outcome.error is not None
        assert outcome.error.type == "ConditionFailed"
        detail = outcome.error.detail
        assert len(competing) == 2 and detail.position == competing[-1]
        assert detail.after == competing[0] and "course:c1" in (detail.query or "")
        assert "StudentSubscribedToCourse" not in [r.type async for r in store.read_all()]
