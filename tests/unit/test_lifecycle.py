"""Stream lifecycle beyond the conformance suite: what verify makes of cuts
(and of tampering around them), readers across a removal, crypto-shredding
with removals, and scavenging by category limits."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

import eventfold
from eventfold import Codec, Decider, Envelope, EventRegistry, Repository
from eventfold.compliance.chain import take_heads, verify
from eventfold.errors import ConfigurationError, InvalidArgument
from eventfold.serialization.crypto import REDACTED, EncryptingStore
from eventfold.serialization.keys import MemoryKeyStore
from eventfold.store.scavenge import Limits, apply, parse_duration, plan, read_policy
from eventfold.subscriptions import MemoryCheckpointStore, Subscription
from eventfold.testing.conformance import collect, numbered, numbers

KEY = b"the chain key"
registry = EventRegistry()


@registry.register("Ticked")
class Ticked(msgspec.Struct, frozen=True):
    n: int


@registry.register("Joined", personal=("email",), subject="member")
class Joined(msgspec.Struct, frozen=True):
    member: str
    email: str


codec = Codec(registry)


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'e.db'}"


async def tick(store: Any, stream: str, *ns: int) -> None:
    await store.append(stream, [codec.encode(Ticked(n)) for n in ns])


async def until(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


# --- verify and cuts ------------------------------------------------------------------


async def _sqlite(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "events.db"
    url = f"sqlite:///{path}"
    async with eventfold.connect(url) as store:
        await store.append("a-1", numbered(6))
        await store.append("b-1", numbered(3))
        await store.truncate_stream("a-1", 3, key=KEY)
    return url, path


def _problems(report: Any) -> set[tuple[str, int, str]]:
    return {(f.stream_id, f.version, f.problem) for f in report.findings}


async def test_verify_starts_a_cut_stream_at_its_cut(tmp_path: Path) -> None:
    url, _ = await _sqlite(tmp_path)
    async with eventfold.connect(url) as store:
        report = await verify(store, key=KEY)
        assert report.clean and report.events == 4 + 3
        assert (await verify(store, cuts=[])).findings[0].problem == "missing"


async def test_a_cut_whose_signature_does_not_match_is_reported(tmp_path: Path) -> None:
    url, path = await _sqlite(tmp_path)
    with sqlite3.connect(path) as raw:  # hide one more event behind the cut
        raw.execute("UPDATE stream_cuts SET before_version = 4")
        raw.execute("DELETE FROM events WHERE stream_id = 'a-1' AND version = 3")
    raw.close()
    async with eventfold.connect(url) as store:
        assert ("a-1", 4, "forged") in _problems(await verify(store, key=KEY))
        assert not (await verify(store, key=b"another key")).clean
        # without the key, the moved cut no longer matches the chain: its anchor
        # is not the hash the event after it was chained on
        assert ("a-1", 4, "altered") in _problems(await verify(store))


async def test_tampering_in_what_remains_is_still_found(tmp_path: Path) -> None:
    url, path = await _sqlite(tmp_path)
    with sqlite3.connect(path) as raw:
        raw.execute(
            """UPDATE events SET data = '{"n": 99}' WHERE stream_id = 'a-1' AND version = 5"""
        )
        raw.execute("DELETE FROM events WHERE stream_id = 'a-1' AND version = 3")  # no cut
        raw.execute("DELETE FROM events WHERE stream_id = 'b-1' AND version = 1")
    raw.close()
    async with eventfold.connect(url) as store:
        problems = _problems(await verify(store, key=KEY))
        assert {("a-1", 3, "missing"), ("a-1", 5, "altered"), ("b-1", 1, "missing")} <= problems


async def test_an_event_left_below_its_cut_is_reported(tmp_path: Path) -> None:
    url, path = await _sqlite(tmp_path)
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE stream_cuts SET before_version = 2")  # claims less was removed
    raw.close()
    async with eventfold.connect(url) as store:
        problems = _problems(await verify(store))
        assert ("a-1", 2, "missing") in problems
        assert ("a-1", 2, "forged") in _problems(await verify(store, key=KEY))


async def test_a_checkpoint_taken_before_a_removal_stays_clean(store_url: str) -> None:
    async with eventfold.connect(store_url) as store:
        await tick(store, "a-1", 1, 2, 3, 4)
        await tick(store, "b-1", 5, 6)
        heads = take_heads(await verify(store), KEY)
        await store.truncate_stream("a-1", 3, key=KEY)
        await store.delete_stream("b-1", key=KEY)
        assert (await verify(store, checkpoint=heads, key=KEY)).clean
        await tick(store, "b-1", 7)
        assert (await verify(store, checkpoint=heads, key=KEY)).clean


# --- readers across a removal ---------------------------------------------------------


def subscribe(store: Any, seen: list[Envelope[Any]], checkpoints: Any) -> Subscription:
    async def handle(env: Envelope[Any]) -> None:
        seen.append(env)

    return Subscription(
        store, codec, "ticks", handle, checkpoints=checkpoints, batch_size=3, poll_interval=0.05
    )


async def test_a_live_subscription_across_removals_neither_stalls_nor_redelivers(
    store_url: str,
) -> None:
    async with eventfold.connect(store_url) as store:
        seen: list[Envelope[Any]] = []
        sub = subscribe(store, seen, MemoryCheckpointStore())
        task = asyncio.create_task(sub.run())
        try:
            await tick(store, "a-1", 1, 2, 3, 4, 5)
            await tick(store, "b-1", 6, 7)  # the last positions of the log
            await until(lambda: len(seen) == 7)
            await store.truncate_stream("a-1", 4)
            await store.delete_stream("b-1")
            await tick(store, "a-1", 8)
            await tick(store, "b-1", 9)
            await tick(store, "c-1", 10)
            await until(lambda: len(seen) >= 10)
        finally:
            sub.stop()
            await task
        assert [env.event.n for env in seen] == list(range(1, 11))
        positions = [env.position for env in seen]
        assert positions == sorted(set(positions))


async def test_a_reader_resuming_after_a_removal_sees_what_remains_after_it(store_url: str) -> None:
    async with eventfold.connect(store_url) as store:
        await tick(store, "a-1", 1, 2, 3, 4, 5)
        await tick(store, "b-1", 6)
        checkpoints = MemoryCheckpointStore()
        first: list[Envelope[Any]] = []
        await subscribe(store, first, checkpoints).run(until_caught_up=True)
        assert [env.event.n for env in first] == [1, 2, 3, 4, 5, 6]
        await tick(store, "a-1", 7)
        await store.truncate_stream("a-1", 5)  # 1..4 go; 7 was not delivered yet and stays
        again: list[Envelope[Any]] = []
        await subscribe(store, again, checkpoints).run(until_caught_up=True)
        assert [env.event.n for env in again] == [7]
        # a projection rebuilt from the start sees exactly what remains
        rebuilt: list[Envelope[Any]] = []
        await subscribe(store, rebuilt, MemoryCheckpointStore()).run(until_caught_up=True)
        assert [env.event.n for env in rebuilt] == [5, 6, 7]
        remaining = [codec.decode_event(r) async for r in store.read_all()]
        assert remaining == [env.event for env in rebuilt]


# --- crypto-shredding -------------------------------------------------------------------


async def test_forget_and_removals_work_together(store_url: str) -> None:
    async with eventfold.connect(store_url) as store:
        shredded = EncryptingStore(store, registry, MemoryKeyStore())
        for n in range(1, 5):
            await shredded.append("member-1", [codec.encode(Joined("m-1", f"{n}@x.org"))])
        await shredded.append("member-2", [codec.encode(Joined("m-2", "kept@x.org"))])
        await shredded.append("member-3", [codec.encode(Joined("m-3", "gone@x.org"))])
        await shredded.truncate_stream("member-1", 3, key=KEY)  # truncate, then forget
        assert await shredded.forget("m-1") == 1
        left = [codec.decode_event(r) async for r in shredded.read_stream("member-1")]
        assert left == [Joined("m-1", REDACTED), Joined("m-1", REDACTED)]
        assert await shredded.forget("m-3") == 1  # forget, then delete and truncate
        await shredded.delete_stream("member-3", key=KEY)
        await shredded.truncate_stream("member-1", 5, key=KEY)
        assert await collect(shredded.read_stream("member-3")) == []
        assert await collect(shredded.read_stream("member-1")) == []
        kept = [codec.decode_event(r) async for r in shredded.read_all()]
        assert kept == [Joined("m-2", "kept@x.org")]
        await shredded.append("member-1", [codec.encode(Joined("m-1", "new@x.org"))], 4)
        assert await shredded.forget("m-1") == 1
        assert (await verify(shredded, key=KEY)).clean


# --- scavenging -----------------------------------------------------------------------


def test_durations() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration(" 12h ") == timedelta(hours=12)
    for bad in ("", "30", "0d", "-1d", "1y", "1.5d"):
        with pytest.raises(InvalidArgument):
            parse_duration(bad)


async def test_scavenge_applies_max_count_and_max_age_per_category(store_url: str) -> None:
    async with eventfold.connect(store_url) as store:
        await tick(store, "order-1", *range(1, 11))
        await tick(store, "order-2", 1, 2)
        await tick(store, "cart-1", *range(1, 6))
        await tick(store, "other-1", *range(1, 6))
        now = datetime.now(UTC)
        policy = {"order": Limits(max_count=3), "cart": Limits(max_age="1h")}
        planned = [r async for r in plan(store, policy, now)]
        assert [(r.stream_id, r.first, r.before_version) for r in planned] == [
            ("order-1", 1, 8)
        ]  # cart-1 is young, order-2 within its count
        later = now + timedelta(hours=2)
        planned = [r async for r in plan(store, policy, later)]
        assert [(r.stream_id, r.before_version) for r in planned] == [("cart-1", 6), ("order-1", 8)]
        assert await apply(store, planned, key=KEY) == 2
        assert numbers(await collect(store.read_stream("order-1"))) == [8, 9, 10]
        assert await collect(store.read_stream("cart-1")) == []
        assert len(await collect(store.read_stream("other-1"))) == 5
        assert await apply(store, planned, key=KEY) == 0  # a second run removes nothing
        assert [r async for r in plan(store, policy, later)] == []
        assert {c.reason for c in await collect(store.read_cuts())} == {"scavenged"}
        assert (await verify(store, key=KEY)).clean


def test_a_policy_file_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[order]\nmax_age = "30d"\nmax_count = 100\n[cart]\nmax_count = 5\n')
    assert read_policy(good) == {
        "order": Limits(max_age="30d", max_count=100),
        "cart": Limits(max_count=5),
    }
    for text, error in [
        ("[order]\nmax_age = 30\n", ConfigurationError),
        ("[order]\nmax_ages = '30d'\n", ConfigurationError),
        ("[order]\nmax_age = '30 days'\n", InvalidArgument),
        ("[order]\n", InvalidArgument),
        ("[order]\nmax_count = -1\n", InvalidArgument),
        ("", InvalidArgument),
        ("not toml [", ConfigurationError),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(error):
            read_policy(bad)
    with pytest.raises(ConfigurationError):
        read_policy(tmp_path / "missing.toml")


async def test_a_repository_goes_on_with_a_soft_deleted_stream(store_url: str) -> None:
    counter: Decider[int, Ticked, int] = Decider(
        lambda command, state: [Ticked(state + command)], lambda state, e: e.n, int
    )
    async with eventfold.connect(store_url) as store:
        repository = Repository(store, counter, codec)
        await repository.handle("count-1", 1)
        await repository.handle("count-1", 2)
        await store.delete_stream("count-1")
        loaded = await repository.load("count-1")
        assert (loaded.state, loaded.version) == (0, 2)
        handled = await repository.handle("count-1", 5)
        assert handled.version == 3
        assert [codec.decode_event(r) async for r in store.read_stream("count-1")] == [Ticked(5)]
