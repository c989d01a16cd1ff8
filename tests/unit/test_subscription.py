"""Subscriptions: catch up from a checkpoint, follow live, filter, batch, and
stop on a handler error with the failing event named and the checkpoint
before it; the retry policy is honoured."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

import eventfold
from eventfold import Codec, Envelope, EventRegistry
from eventfold.store import MemoryStore
from eventfold.subscriptions import (
    MemoryCheckpointStore,
    RetryPolicy,
    Subscription,
    SubscriptionFailed,
)

registry = EventRegistry()


@registry.register("Ticked")
class Ticked(msgspec.Struct, frozen=True):
    n: int


@registry.register("Tocked")
class Tocked(msgspec.Struct, frozen=True):
    n: int


codec = Codec(registry)


async def tick(store: Any, stream: str, *ns: int, kind: type[Any] = Ticked) -> None:
    await store.append(stream, [codec.encode(kind(n)) for n in ns])


class Recorder:
    def __init__(self, fail_on: set[int] | None = None, failures: int = 10**9) -> None:
        self.seen: list[Envelope[Any]] = []
        self.calls = 0
        self.fail_on = fail_on or set()
        self.failures_left = failures

    async def __call__(self, env: Envelope[Any]) -> None:
        self.calls += 1
        if env.event.n in self.fail_on and self.failures_left > 0:
            self.failures_left -= 1
            raise RuntimeError(f"cannot handle {env.event.n}")
        self.seen.append(env)

    @property
    def numbers(self) -> list[int]:
        return [env.event.n for env in self.seen]


def subscribe(store: Any, handler: Any, checkpoints: Any = None, **options: Any) -> Subscription:
    options.setdefault("batch_size", 3)
    options.setdefault("poll_interval", 0.05)
    return Subscription(
        store,
        codec,
        "test",
        handler,
        checkpoints=checkpoints if checkpoints is not None else MemoryCheckpointStore(),
        **options,
    )


async def until(predicate: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_catches_up_in_order_then_follows_live() -> None:
    async with eventfold.connect("memory://") as store:
        await tick(store, "a-1", 1, 2, 3, 4)
        await tick(store, "b-1", 5, 6)
        recorder = Recorder()
        checkpoints = MemoryCheckpointStore()
        sub = subscribe(store, recorder, checkpoints)
        task = asyncio.create_task(sub.run())
        await until(lambda: recorder.numbers == [1, 2, 3, 4, 5, 6])
        await tick(store, "a-1", 7)
        await tick(store, "c-1", 8, 9)
        await until(lambda: len(recorder.seen) == 9)
        sub.stop()
        await task
        assert recorder.numbers == list(range(1, 10))
        assert [e.position for e in recorder.seen] == list(range(1, 10))
        assert await checkpoints.load("test") == 9 == sub.position
        assert sub.caught_up.is_set()


async def test_resumes_after_the_checkpoint() -> None:
    async with eventfold.connect("memory://") as store:
        await tick(store, "a-1", 1, 2, 3)
        checkpoints = MemoryCheckpointStore()
        first = Recorder()
        await subscribe(store, first, checkpoints).run(until_caught_up=True)
        await tick(store, "a-1", 4, 5)
        second = Recorder()
        await subscribe(store, second, checkpoints).run(until_caught_up=True)
        assert first.numbers == [1, 2, 3]
        assert second.numbers == [4, 5]


async def test_filters_by_category_and_type_and_moves_past_the_rest() -> None:
    async with eventfold.connect("memory://") as store:
        await tick(store, "a-1", 1)
        await tick(store, "b-1", 2)
        await tick(store, "a-2", 3, kind=Tocked)
        await tick(store, "a-3", 4)
        await tick(store, "c-1", 5, 6, 7)
        by_category = Recorder()
        sub = subscribe(store, by_category, categories=["a"])
        await sub.run(until_caught_up=True)
        assert by_category.numbers == [1, 3, 4]
        # Nothing after position 4 was wanted, but it was looked at: no re-reading.
        assert sub.position == 7
        by_type = Recorder()
        await subscribe(store, by_type, types=["Tocked"]).run(until_caught_up=True)
        assert by_type.numbers == [3]


async def test_a_filtered_subscription_does_not_spin_on_unwanted_events() -> None:
    class CountingStore(MemoryStore):
        reads = 0

        def read_all(self, **kw: Any) -> Any:
            CountingStore.reads += 1
            return super().read_all(**kw)

    store = CountingStore()
    recorder = Recorder()
    sub = subscribe(store, recorder, categories=["wanted"], poll_interval=10.0)
    task = asyncio.create_task(sub.run())
    await until(lambda: sub.caught_up.is_set())
    for i in range(20):
        await tick(store, f"other-{i}", i)
        await asyncio.sleep(0)
    await until(lambda: sub.position == 20)
    await tick(store, "wanted-1", 99)
    await until(lambda: recorder.numbers == [99])
    reads = CountingStore.reads
    await asyncio.sleep(0.1)
    assert CountingStore.reads == reads  # idle: waiting, not polling the log
    sub.stop()
    await task


async def test_a_handler_error_names_the_event_and_keeps_the_checkpoint_before_it() -> None:
    async with eventfold.connect("memory://") as store:
        await tick(store, "a-1", 1, 2)
        await tick(store, "b-7", 3, 4)
        await tick(store, "a-1", 5)
        checkpoints = MemoryCheckpointStore()
        recorder = Recorder(fail_on={4})
        sub = subscribe(store, recorder, checkpoints, batch_size=10, retry=RetryPolicy(1))
        with pytest.raises(SubscriptionFailed) as caught:
            await sub.run()
        failed = caught.value
        assert (failed.subscription, failed.stream_id, failed.version) == ("test", "b-7", 2)
        assert (failed.position, failed.type, failed.attempts) == (4, "Ticked", 1)
        assert isinstance(failed.cause, RuntimeError)
        assert "b-7" in str(failed) and "version 2" in str(failed)
        assert isinstance(failed, eventfold.EventfoldError)
        # Events 1-3 of the same batch were handled: the checkpoint says so, not more.
        assert recorder.numbers == [1, 2, 3]
        assert await checkpoints.load("test") == 3
        # A restart resumes with the failing event.
        again = Recorder()
        await subscribe(store, again, checkpoints).run(until_caught_up=True)
        assert again.numbers == [4, 5]


async def test_the_retry_policy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)  # as the retry loop sees it
    policy = RetryPolicy(attempts=3, backoff=0.5, multiplier=3.0, max_backoff=1.0)
    async with eventfold.connect("memory://") as store:
        await tick(store, "a-1", 1, 2, 3)
        # Fails twice, then works: within three attempts.
        flaky = Recorder(fail_on={2}, failures=2)
        await subscribe(store, flaky, retry=policy).run(until_caught_up=True)
        assert flaky.numbers == [1, 2, 3]
        assert flaky.calls == 5
        assert delays == [0.5, 1.0]  # 0.5, then 0.5 * 3 capped at 1.0

        delays.clear()
        broken = Recorder(fail_on={2}, failures=3)
        with pytest.raises(SubscriptionFailed) as caught:
            await subscribe(store, broken, retry=policy).run(until_caught_up=True)
        assert caught.value.attempts == 3
        assert broken.calls == 4  # event 1 once, event 2 three times
        assert delays == [0.5, 1.0]


async def test_errors_outside_retry_on_are_not_retried() -> None:
    async with eventfold.connect("memory://") as store:
        await tick(store, "a-1", 1)
        recorder = Recorder(fail_on={1})
        policy = RetryPolicy(attempts=5, backoff=0, retry_on=(ConnectionError,))
        with pytest.raises(SubscriptionFailed) as caught:
            await subscribe(store, recorder, retry=policy).run(until_caught_up=True)
        assert caught.value.attempts == 1 and recorder.calls == 1


async def test_start_at_end_skips_history() -> None:
    async with eventfold.connect("memory://") as store:
        await tick(store, "a-1", 1, 2)
        recorder = Recorder()
        sub = subscribe(store, recorder, start_at="end")
        task = asyncio.create_task(sub.run())
        await until(lambda: sub.caught_up.is_set())
        await tick(store, "a-1", 3)
        await until(lambda: recorder.numbers == [3])
        sub.stop()
        await task


def test_retry_policy_delays_and_checks() -> None:
    policy = RetryPolicy(attempts=4, backoff=0.1, multiplier=2.0, max_backoff=0.3)
    assert [policy.delay(n) for n in (1, 2, 3)] == [0.1, 0.2, 0.3]
    assert policy.should_retry(ValueError(), 3) and not policy.should_retry(ValueError(), 4)
    with pytest.raises(eventfold.InvalidArgument):
        RetryPolicy(attempts=0)
    with pytest.raises(eventfold.InvalidArgument):
        RetryPolicy(backoff=-1)
