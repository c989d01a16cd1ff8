"""The examples of the DCB specification site (dcb.events), as given / when /
then tests: given events in the store, when a command is decided
(``eventfold.decision.decide``), then these events are appended, or the
command is rejected and nothing is. Each runs on the memory and the SQLite
backend: course subscriptions (the example application), unique username,
invoice number, opt-in token, prevent record duplication, dynamic product
price, and an event-sourced aggregate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventfold import Codec, EventRegistry
from eventfold.decision import DecisionModel, DecisionProjection, decide, load, projection
from eventfold.domain.aggregate import Aggregate
from eventfold.errors import CommandRejected, ConditionFailed
from eventfold.examples.courses import decisions as courses
from eventfold.examples.courses.events import (
    CourseCapacityChanged,
    CourseDefined,
    StudentSubscribedToCourse,
    StudentUnsubscribedFromCourse,
)
from eventfold.examples.courses.events import registry as course_registry
from eventfold.store.dcb import Query, QueryItem
from eventfold.store.url import connect


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'dcb.db'}"


class Given:
    """``Given(store, codec, *events).when(model, decide).then(*events)``."""

    def __init__(self, store: Any, codec: Codec, *events: Any) -> None:
        self.store, self.codec, self.events = store, codec, events

    async def _given(self) -> int:
        for event in self.events:
            await self.store.append_events([self.codec.encode(event)])
        head: int = await self.store.head_position()
        return head

    async def then(
        self,
        model: DecisionModel,
        decision: Callable[[dict[str, Any]], Sequence[Any]],
        *expected: Any,
    ) -> None:
        head = await self._given()
        decided = await decide(self.store, self.codec, model, decision, max_retries=0)
        assert decided.events == list(expected)
        stored = [r async for r in self.store.read_all(from_position=head + 1)]
        assert [self.codec.decode_event(r) for r in stored] == list(expected)
        for record, event in zip(stored, expected, strict=True):
            entry = self.codec.registry.of_class(type(event))
            wanted = () if entry.tags is None else tuple(entry.tags(event))
            assert record.tags == wanted

    async def then_rejected(
        self,
        model: DecisionModel,
        decision: Callable[[dict[str, Any]], Sequence[Any]],
        match: str,
    ) -> None:
        head = await self._given()
        with pytest.raises(CommandRejected, match=match):
            await decide(self.store, self.codec, model, decision, max_retries=0)
        assert await self.store.head_position() == head, "a rejected command wrote"


# --- course subscriptions (the example application) ----------------------------------

course_codec = Codec(course_registry)


def when(model: Callable[[Any], DecisionModel], handle: Callable[..., Any], command: Any) -> Any:
    return model(command), lambda states: handle(command, states)


async def test_define_course(store_url: str) -> None:
    async with connect(store_url) as store:
        cmd = courses.DefineCourse("c1", 15)
        await Given(store, course_codec).then(
            *when(courses.define_model, courses.define, cmd), CourseDefined("c1", 15)
        )


async def test_define_course_that_exists(store_url: str) -> None:
    async with connect(store_url) as store:
        await Given(store, course_codec, CourseDefined("c1", 10)).then_rejected(
            *when(courses.define_model, courses.define, courses.DefineCourse("c1", 15)),
            match="already exists",
        )


async def test_change_capacity(store_url: str) -> None:
    async with connect(store_url) as store:
        given = Given(store, course_codec, CourseDefined("c1", 12), CourseDefined("c2", 10))
        cmd = courses.ChangeCourseCapacity("c1", 15)
        await given.then(
            *when(courses.capacity_model, courses.change_capacity, cmd),
            CourseCapacityChanged("c1", 15),
        )


async def test_change_capacity_of_a_missing_course_or_to_the_same(store_url: str) -> None:
    async with connect(store_url) as store:
        await Given(store, course_codec).then_rejected(
            *when(
                courses.capacity_model,
                courses.change_capacity,
                courses.ChangeCourseCapacity("c0", 5),
            ),
            match="does not exist",
        )
        cmd = courses.ChangeCourseCapacity("c1", 12)
        await Given(store, course_codec, CourseDefined("c1", 12)).then(
            *when(courses.capacity_model, courses.change_capacity, cmd)
        )


async def test_change_capacity_below_the_subscriptions(store_url: str) -> None:
    async with connect(store_url) as store:
        given = Given(
            store,
            course_codec,
            CourseDefined("c1", 5),
            StudentSubscribedToCourse("c1", "s1"),
            StudentSubscribedToCourse("c1", "s2"),
        )
        cmd = courses.ChangeCourseCapacity("c1", 1)
        await given.then_rejected(
            *when(courses.capacity_model, courses.change_capacity, cmd), match="already has 2"
        )


async def test_subscribe_student(store_url: str) -> None:
    async with connect(store_url) as store:
        given = Given(store, course_codec, CourseDefined("c1", 10), CourseDefined("c2", 10))
        cmd = courses.SubscribeStudentToCourse("c1", "s1")
        await given.then(
            *when(courses.subscribe_model, courses.subscribe, cmd),
            StudentSubscribedToCourse("c1", "s1"),
        )


@pytest.mark.parametrize(
    ("past", "command", "match"),
    [
        ([], ("c0", "s1"), "does not exist"),
        (
            [CourseDefined("c1", 10), StudentSubscribedToCourse("c1", "s1")],
            ("c1", "s1"),
            "already subscribed to course",
        ),
        (
            [
                CourseDefined("c1", 3),
                CourseCapacityChanged("c1", 2),
                StudentSubscribedToCourse("c1", "s1"),
                StudentSubscribedToCourse("c1", "s2"),
            ],
            ("c1", "s3"),
            "is full",
        ),
        (
            [
                *(CourseDefined(f"c{i}", 10) for i in range(6)),
                *(StudentSubscribedToCourse(f"c{i}", "s1") for i in range(5)),
            ],
            ("c5", "s1"),
            "already subscribed to 5 courses",
        ),
    ],
    ids=["missing course", "already subscribed", "full", "student limit"],
)
async def test_subscribe_student_rejected(
    store_url: str, past: list[Any], command: tuple[str, str], match: str
) -> None:
    async with connect(store_url) as store:
        cmd = courses.SubscribeStudentToCourse(*command)
        await Given(store, course_codec, *past).then_rejected(
            *when(courses.subscribe_model, courses.subscribe, cmd), match=match
        )


async def test_a_seat_freed_by_unsubscribing_can_be_taken(store_url: str) -> None:
    async with connect(store_url) as store:
        given = Given(
            store,
            course_codec,
            CourseDefined("c1", 1),
            StudentSubscribedToCourse("c1", "s1"),
            StudentUnsubscribedFromCourse("c1", "s1"),
        )
        cmd = courses.SubscribeStudentToCourse("c1", "s2")
        await given.then(
            *when(courses.subscribe_model, courses.subscribe, cmd),
            StudentSubscribedToCourse("c1", "s2"),
        )


async def test_racing_subscriptions_never_overbook_a_course(store_url: str) -> None:
    """Twelve students race for five seats, each deciding with retries:
    exactly five get one."""
    async with connect(store_url) as store:
        await store.append_events([course_codec.encode(CourseDefined("c1", 5))])

        async def attempt(i: int) -> bool:
            cmd = courses.SubscribeStudentToCourse("c1", f"s{i}")
            try:
                await decide(
                    store,
                    course_codec,
                    courses.subscribe_model(cmd),
                    lambda states: courses.subscribe(cmd, states),
                    max_retries=50,
                )
            except CommandRejected:
                return False
            return True

        assert sum(await asyncio.gather(*(attempt(i) for i in range(12)))) == 5
        seats = [r async for r in store.read(Query.of(QueryItem(tags=("course:c1",))))]
        assert [r.type for r in seats].count("StudentSubscribedToCourse") == 5


# --- unique username ---------------------------------------------------------------------

accounts = EventRegistry()


@accounts.register("AccountRegistered", tags=lambda e: [f"username:{e.username}"])
class AccountRegistered(msgspec.Struct, frozen=True):
    username: str


@accounts.register("AccountClosed", tags=lambda e: [f"username:{e.username}"])
class AccountClosed(msgspec.Struct, frozen=True):
    username: str


@accounts.register("UsernameChanged", tags=lambda e: [f"username:{e.old}", f"username:{e.new}"])
class UsernameChanged(msgspec.Struct, frozen=True):
    old: str
    new: str


account_codec = Codec(accounts)


def username_claimed(username: str) -> Any:
    return projection(
        Query.of(
            QueryItem(
                types=("AccountRegistered", "AccountClosed", "UsernameChanged"),
                tags=(f"username:{username}",),
            )
        ),
        lambda: False,
        AccountRegistered=lambda s, e: True,
        AccountClosed=lambda s, e: False,
        UsernameChanged=lambda s, e: e.new == username,
    )


def register(username: str) -> tuple[DecisionModel, Callable[[dict[str, Any]], list[Any]]]:
    def handle(states: dict[str, Any]) -> list[Any]:
        if states["claimed"]:
            raise CommandRejected(f"username {username!r} is claimed")
        return [AccountRegistered(username)]

    return DecisionModel(claimed=username_claimed(username)), handle


async def test_register_account_with_a_new_username(store_url: str) -> None:
    async with connect(store_url) as store:
        await Given(store, account_codec).then(*register("u1"), AccountRegistered("u1"))


async def test_register_account_with_a_claimed_username(store_url: str) -> None:
    async with connect(store_url) as store:
        await Given(store, account_codec, AccountRegistered("u1")).then_rejected(
            *register("u1"), match="claimed"
        )


async def test_a_username_of_a_closed_account_is_free_again(store_url: str) -> None:
    async with connect(store_url) as store:
        given = Given(store, account_codec, AccountRegistered("u1"), AccountClosed("u1"))
        await given.then(*register("u1"), AccountRegistered("u1"))


async def test_a_changed_username_is_free_and_the_new_one_claimed(store_url: str) -> None:
    async with connect(store_url) as store:
        given = Given(store, account_codec, AccountRegistered("u1"), UsernameChanged("u1", "u2"))
        await given.then(*register("u1"), AccountRegistered("u1"))
        await Given(store, account_codec).then_rejected(*register("u2"), match="claimed")


# --- invoice number ------------------------------------------------------------------

invoices = EventRegistry()


@invoices.register("InvoiceCreated", tags=lambda e: [f"invoice:{e.number}"])
class InvoiceCreated(msgspec.Struct, frozen=True):
    number: int
    customer: str


invoice_codec = Codec(invoices)


def create_invoice(customer: str) -> tuple[DecisionModel, Callable[[dict[str, Any]], list[Any]]]:
    """The next number follows the last one: a query of the type alone, so
    any invoice created meanwhile fails the condition (no gaps, no repeats)."""
    last = projection(
        Query.of(QueryItem(types=("InvoiceCreated",))),
        lambda: 0,
        InvoiceCreated=lambda s, e: e.number,
    )
    return DecisionModel(last=last), lambda s: [InvoiceCreated(s["last"] + 1, customer)]


async def test_the_first_invoice_is_number_one(store_url: str) -> None:
    async with connect(store_url) as store:
        await Given(store, invoice_codec).then(*create_invoice("c1"), InvoiceCreated(1, "c1"))


async def test_the_next_invoice_number_follows_the_last(store_url: str) -> None:
    async with connect(store_url) as store:
        given = Given(store, invoice_codec, InvoiceCreated(1, "c1"), InvoiceCreated(2, "c2"))
        await given.then(*create_invoice("c3"), InvoiceCreated(3, "c3"))


async def test_racing_invoices_get_consecutive_numbers(store_url: str) -> None:
    async with connect(store_url) as store:

        async def create(i: int) -> None:
            model, handle = create_invoice(f"c{i}")
            await decide(store, invoice_codec, model, handle, max_retries=100)

        await asyncio.gather(*(create(i) for i in range(10)))
        numbers = [invoice_codec.decode_event(r).number async for r in store.read_all()]
        assert numbers == list(range(1, 11))


# --- opt-in token --------------------------------------------------------------------

signups = EventRegistry()
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@signups.register("SignUpInitiated", tags=lambda e: [f"email:{e.email}", f"otp:{e.otp}"])
class SignUpInitiated(msgspec.Struct, frozen=True):
    email: str
    otp: str
    at: datetime


@signups.register("SignUpConfirmed", tags=lambda e: [f"email:{e.email}", f"otp:{e.otp}"])
class SignUpConfirmed(msgspec.Struct, frozen=True):
    email: str
    otp: str


signup_codec = Codec(signups)


class Otp(msgspec.Struct):
    initiated: datetime | None = None
    used: bool = False


def confirm(email: str, otp: str) -> tuple[DecisionModel, Callable[[dict[str, Any]], list[Any]]]:
    token = projection(
        Query.of(QueryItem(tags=(f"email:{email}", f"otp:{otp}"))),
        Otp,
        SignUpInitiated=lambda s, e: Otp(e.at, s.used),
        SignUpConfirmed=lambda s, e: Otp(s.initiated, True),
    )

    def handle(states: dict[str, Any]) -> list[Any]:
        state: Otp = states["otp"]
        if state.initiated is None:
            raise CommandRejected("no sign-up with this email and token")
        if state.used:
            raise CommandRejected("the token was used")
        if NOW - state.initiated > timedelta(minutes=60):
            raise CommandRejected("the token expired")
        return [SignUpConfirmed(email, otp)]

    return DecisionModel(otp=token), handle


async def test_confirm_sign_up(store_url: str) -> None:
    async with connect(store_url) as store:
        given = Given(
            store, signup_codec, SignUpInitiated("a@x", "111", NOW - timedelta(minutes=5))
        )
        await given.then(*confirm("a@x", "111"), SignUpConfirmed("a@x", "111"))


@pytest.mark.parametrize(
    ("past", "otp", "match"),
    [
        ([SignUpInitiated("a@x", "111", NOW)], "222", "no sign-up"),
        ([SignUpInitiated("b@x", "111", NOW)], "111", "no sign-up"),
        ([SignUpInitiated("a@x", "111", NOW), SignUpConfirmed("a@x", "111")], "111", "used"),
        ([SignUpInitiated("a@x", "111", NOW - timedelta(minutes=61))], "111", "expired"),
    ],
    ids=["wrong token", "other email", "used", "expired"],
)
async def test_confirm_sign_up_rejected(
    store_url: str, past: list[Any], otp: str, match: str
) -> None:
    async with connect(store_url) as store:
        await Given(store, signup_codec, *past).then_rejected(*confirm("a@x", otp), match=match)


# --- prevent record duplication ------------------------------------------------------

orders = EventRegistry()


@orders.register("OrderPlaced", tags=lambda e: [f"order:{e.order_id}", f"token:{e.token}"])
class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: str
    token: str


order_codec = Codec(orders)


def place_order(order_id: str, token: str) -> tuple[DecisionModel, Callable[..., list[Any]]]:
    used = projection(
        Query.of(QueryItem(types=("OrderPlaced",), tags=(f"token:{token}",))),
        lambda: False,
        OrderPlaced=lambda s, e: True,
    )

    def handle(states: dict[str, Any]) -> list[Any]:
        if states["used"]:
            raise CommandRejected("re-submission: the token was used")
        return [OrderPlaced(order_id, token)]

    return DecisionModel(used=used), handle


async def test_place_order_with_a_new_token(store_url: str) -> None:
    async with connect(store_url) as store:
        await Given(store, order_codec, OrderPlaced("o1", "t1")).then(
            *place_order("o2", "t2"), OrderPlaced("o2", "t2")
        )


async def test_place_order_with_a_used_token(store_url: str) -> None:
    async with connect(store_url) as store:
        await Given(store, order_codec, OrderPlaced("o1", "t1")).then_rejected(
            *place_order("o2", "t1"), match="re-submission"
        )


# --- dynamic product price -------------------------------------------------------------

products = EventRegistry()
GRACE = timedelta(minutes=10)


@products.register("ProductDefined", tags=lambda e: [f"product:{e.product_id}"])
class ProductDefined(msgspec.Struct, frozen=True):
    product_id: str
    price: int


@products.register("ProductPriceChanged", tags=lambda e: [f"product:{e.product_id}"])
class ProductPriceChanged(msgspec.Struct, frozen=True):
    product_id: str
    price: int
    at: datetime


@products.register("ProductOrdered", tags=lambda e: [f"product:{e.product_id}"])
class ProductOrdered(msgspec.Struct, frozen=True):
    product_id: str
    price: int


product_codec = Codec(products)


class Prices(msgspec.Struct):
    current: int | None = None
    previous: int | None = None
    changed_at: datetime | None = None


def price_of(product_id: str) -> Any:
    return projection(
        Query.of(
            QueryItem(
                types=("ProductDefined", "ProductPriceChanged"), tags=(f"product:{product_id}",)
            )
        ),
        Prices,
        ProductDefined=lambda s, e: Prices(e.price),
        ProductPriceChanged=lambda s, e: Prices(e.price, s.current, e.at),
    )


def order(*items: tuple[str, int]) -> tuple[DecisionModel, Callable[..., list[Any]]]:
    """One decision over every product of the order: each displayed price
    is the current one, or the previous one within the grace period."""
    model = DecisionModel(**{f"p{i}": price_of(product) for i, (product, _) in enumerate(items)})

    def handle(states: dict[str, Any]) -> list[Any]:
        for i, (product, shown) in enumerate(items):
            prices: Prices = states[f"p{i}"]
            if prices.current is None:
                raise CommandRejected(f"product {product!r} does not exist")
            recent = prices.changed_at is not None and NOW - prices.changed_at <= GRACE
            if shown != prices.current and not (recent and shown == prices.previous):
                raise CommandRejected(f"product {product!r}: price {shown} is not valid")
        return [ProductOrdered(product, shown) for product, shown in items]

    return model, handle


async def test_order_at_the_current_price(store_url: str) -> None:
    async with connect(store_url) as store:
        await Given(store, product_codec, ProductDefined("p1", 123)).then(
            *order(("p1", 123)), ProductOrdered("p1", 123)
        )


async def test_order_at_the_previous_price_within_the_grace_period(store_url: str) -> None:
    async with connect(store_url) as store:
        given = Given(
            store,
            product_codec,
            ProductDefined("p1", 123),
            ProductPriceChanged("p1", 130, NOW - timedelta(minutes=9)),
        )
        await given.then(*order(("p1", 123)), ProductOrdered("p1", 123))


@pytest.mark.parametrize(
    ("past", "items", "match"),
    [
        ([], [("p1", 123)], "does not exist"),
        ([ProductDefined("p1", 123)], [("p1", 100)], "not valid"),
        (
            [
                ProductDefined("p1", 123),
                ProductPriceChanged("p1", 130, NOW - timedelta(minutes=11)),
            ],
            [("p1", 123)],
            "not valid",
        ),
        (
            [ProductDefined("p1", 123), ProductDefined("p2", 50)],
            [("p1", 123), ("p2", 49)],
            "p2",
        ),
    ],
    ids=["missing product", "wrong price", "grace period over", "one of several"],
)
async def test_order_rejected(
    store_url: str, past: list[Any], items: list[tuple[str, int]], match: str
) -> None:
    async with connect(store_url) as store:
        await Given(store, product_codec, *past).then_rejected(*order(*items), match=match)


async def test_order_of_several_products_in_one_decision(store_url: str) -> None:
    async with connect(store_url) as store:
        given = Given(store, product_codec, ProductDefined("p1", 123), ProductDefined("p2", 50))
        await given.then(
            *order(("p1", 123), ("p2", 50)), ProductOrdered("p1", 123), ProductOrdered("p2", 50)
        )


# --- an event-sourced aggregate ------------------------------------------------------

lessons = EventRegistry()


@lessons.register("LessonPlanned", tags=lambda e: [f"lesson:{e.lesson_id}"])
class LessonPlanned(msgspec.Struct, frozen=True):
    lesson_id: str
    title: str


@lessons.register("LessonRenamed", tags=lambda e: [f"lesson:{e.lesson_id}"])
class LessonRenamed(msgspec.Struct, frozen=True):
    lesson_id: str
    title: str


lesson_codec = Codec(lessons)


class Lesson(Aggregate):
    """A class-style aggregate whose events are those tagged with its id:
    the DCB query takes the place of its stream, the condition after its
    last event the place of the expected version."""

    def __init__(self) -> None:
        self.lesson_id: str | None = None
        self.title = ""
        self.renames = 0

    def apply(self, event: Any) -> None:
        if isinstance(event, LessonPlanned):
            self.lesson_id, self.title = event.lesson_id, event.title
        elif isinstance(event, LessonRenamed):
            self.title, self.renames = event.title, self.renames + 1

    def rename(self, title: str) -> None:
        if self.lesson_id is None:
            raise CommandRejected("no such lesson")
        if title == self.title:
            return
        self.record(LessonRenamed(self.lesson_id, title))


def lesson(lesson_id: str, command: Callable[[Lesson], None]) -> tuple[DecisionModel, Any]:
    def evolve(state: Lesson, event: Any) -> Lesson:
        state.apply(event)
        return state

    query = Query.of(QueryItem(tags=(f"lesson:{lesson_id}",)))
    model = DecisionModel(lesson=DecisionProjection(query, Lesson, evolve))

    def handle(states: dict[str, Any]) -> list[Any]:
        aggregate: Lesson = states["lesson"]
        command(aggregate)
        return aggregate.collect_events()

    return model, handle


async def test_an_aggregate_decides_on_its_own_events(store_url: str) -> None:
    async with connect(store_url) as store:
        given = Given(store, lesson_codec, LessonPlanned("l1", "Sums"), LessonPlanned("l2", "Maps"))
        await given.then(
            *lesson("l1", lambda a: a.rename("Fractions")), LessonRenamed("l1", "Fractions")
        )
        await Given(store, lesson_codec).then(*lesson("l1", lambda a: a.rename("Fractions")))
        await Given(store, lesson_codec).then_rejected(
            *lesson("l9", lambda a: a.rename("x")), match="no such lesson"
        )


async def test_an_aggregate_written_meanwhile_fails_its_condition(store_url: str) -> None:
    async with connect(store_url) as store:
        await store.append_events([lesson_codec.encode(LessonPlanned("l1", "Sums"))])
        model, handle = lesson("l1", lambda a: a.rename("Fractions"))
        started = asyncio.Event()
        go_on = asyncio.Event()

        def slow(states: dict[str, Any]) -> list[Any]:
            started.set()
            return list(handle(states))

        async def decide_slowly() -> Any:
            decision = await load(store, lesson_codec, model)
            events = slow(decision.states)
            await go_on.wait()
            return await store.append_events(
                [lesson_codec.encode(e) for e in events], decision.condition
            )

        task = asyncio.create_task(decide_slowly())
        await started.wait()
        other, rename = lesson("l1", lambda a: a.rename("Maps"))
        await decide(store, lesson_codec, other, rename)
        go_on.set()
        with pytest.raises(ConditionFailed):
            await task
