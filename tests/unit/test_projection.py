"""Projections into a SQLite read model over the memory store: handlers,
checkpoints in the same transaction, failures, retries, queries, read-your-
writes, freshness, versions and effects."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest

import eventfold
from eventfold import Codec, Envelope, EventRegistry, InvalidArgument
from eventfold.store import MemoryStore
from eventfold.subscriptions import (
    Projection,
    ProjectionFailed,
    ProjectionNotReady,
    ProjectionRunner,
    ProjectionSuperseded,
    ReadModelTimeout,
    RetryPolicy,
    SQLiteReadModel,
    Tx,
    UnknownProjection,
    query_read_model,
)

registry = EventRegistry()


@registry.register("Added")
class Added(msgspec.Struct, frozen=True):
    amount: int
    note: str = ""


@registry.register("Reset")
class Reset(msgspec.Struct, frozen=True):
    pass


@registry.register("Ignored")
class Ignored(msgspec.Struct, frozen=True):
    pass


codec = Codec(registry)

TALLY_SQL = "SELECT stream, events, total FROM {tallies} ORDER BY stream"


def tallies(version: int = 1, *, fail: dict[int, int] | None = None) -> Projection:
    """Counts per stream (not idempotent: applying an event twice shows)
    and a log of event ids (a duplicate breaks its primary key).
    ``fail`` maps an amount to how many times its handler raises first."""
    failures = dict(fail or {})
    proj = Projection(
        "tallies",
        version=version,
        tables={
            "tallies": "stream TEXT PRIMARY KEY, events INTEGER NOT NULL, total INTEGER NOT NULL",
            "applied": "event_id TEXT PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL",
        },
    )

    @proj.on(Added)
    def added(tx: Tx, env: Envelope[Added]) -> None:
        tx.execute(
            "INSERT INTO {applied} (event_id, stream, version) VALUES (?, ?, ?)",
            (str(env.event_id), env.stream_id, env.version),
        )
        tx.execute(
            "INSERT INTO {tallies} (stream, events, total) VALUES (?, 1, ?) "
            "ON CONFLICT (stream) DO UPDATE SET events = {tallies}.events + 1, "
            "total = {tallies}.total + excluded.total",
            (env.stream_id, env.event.amount * version),
        )
        if failures.get(env.event.amount, 0) > 0:
            failures[env.event.amount] -= 1
            raise RuntimeError(f"handler broke on {env.event.amount}")

    @proj.on(Reset)
    def reset(tx: Tx, env: Envelope[Reset]) -> None:
        tx.execute("UPDATE {tallies} SET total = 0 WHERE stream = ?", (env.stream_id,))

    return proj


async def add(store: Any, stream: str, *amounts: int) -> int:
    result = await store.append(stream, [codec.encode(Added(a)) for a in amounts])
    return int(result.position)


def runner_for(store: Any, read_model: Any, *projections: Projection, **kw: Any) -> Any:
    kw.setdefault("batch_size", 4)
    kw.setdefault("poll_interval", 0.05)
    kw.setdefault("retry", RetryPolicy(attempts=1))
    return ProjectionRunner(store, read_model, list(projections), codec, **kw)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "reads.db"


async def test_handlers_build_tables_per_version_and_queries_read_them(db: Path) -> None:
    async with eventfold.connect("memory://") as store, SQLiteReadModel(db) as reads:
        await add(store, "acct-1", 5, 7)
        await add(store, "acct-2", 1)
        await store.append("acct-2", [codec.encode(Ignored())])
        await store.append("acct-1", [codec.encode(Reset())])
        await add(store, "acct-1", 2)
        runner = runner_for(store, reads, tallies())
        await runner.catch_up()
        result = await runner.query("tallies", TALLY_SQL)
        assert result.rows == [("acct-1", 3, 2), ("acct-2", 1, 1)]
        assert result.columns == ["stream", "events", "total"]
        assert result.dicts()[1] == {"stream": "acct-2", "events": 1, "total": 1}
        assert (result.build, result.version, result.position) == (1, 1, 6)
        assert result.freshness is not None and result.freshness.up_to_date
    with sqlite3.connect(db) as raw:
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"tallies_v1", "applied_v1", "eventfold_build", "eventfold_projection"} <= names


async def test_table_names_only_from_the_declared_list_values_only_as_parameters(
    db: Path,
) -> None:
    async with eventfold.connect("memory://") as store, SQLiteReadModel(db) as reads:
        await add(store, "acct-1", 1)
        runner = runner_for(store, reads, tallies())
        await runner.catch_up()
        with pytest.raises(InvalidArgument, match="not a declared table"):
            await runner.query("tallies", "SELECT * FROM {eventfold_build}")
        hostile = "x'); DROP TABLE tallies_v1; --"
        result = await runner.query("tallies", "SELECT ? FROM {tallies}", (hostile,))
        assert result.rows == [(hostile,)]
        assert (await runner.query("tallies", TALLY_SQL)).rows == [("acct-1", 1, 1)]
    with pytest.raises(InvalidArgument):
        Projection("Bad-Name", tables={"t": "a TEXT"})
    with pytest.raises(InvalidArgument):
        Projection("ok", tables={"t; DROP": "a TEXT"})


async def test_a_failing_event_stops_the_projection_before_it(db: Path) -> None:
    async with eventfold.connect("memory://") as store, SQLiteReadModel(db) as reads:
        await add(store, "acct-1", 1, 2)
        await add(store, "acct-9", 3, 4)
        await add(store, "acct-1", 5)
        runner = runner_for(store, reads, tallies(fail={4: 99}), batch_size=10)
        with pytest.raises(ProjectionFailed) as caught:
            await runner.catch_up()
        failed = caught.value
        assert failed.projection == "tallies"
        assert (failed.stream_id, failed.version, failed.position, failed.type) == (
            "acct-9",
            2,
            4,
            "Added",
        )
        assert isinstance(failed.cause, RuntimeError) and failed.attempts == 1
        # Nothing is queryable yet (the first build never caught up), but its
        # tables hold exactly the events before the failing one, and nothing of it.
        with pytest.raises(ProjectionNotReady):
            await runner.query("tallies", TALLY_SQL)
        with sqlite3.connect(db) as raw:
            rows = raw.execute("SELECT stream, events, total FROM tallies_v1 ORDER BY 1").fetchall()
            position = raw.execute("SELECT position FROM eventfold_build").fetchone()[0]
        assert rows == [("acct-1", 2, 3), ("acct-9", 1, 3)]
        assert position == 3
        # Fixed and restarted, it resumes with the failing event.
        await runner_for(store, reads, tallies()).catch_up()
        result = await query_read_model(reads, "tallies", TALLY_SQL)
        assert result.rows == [("acct-1", 3, 8), ("acct-9", 2, 7)]


async def test_retries_a_failing_event_without_applying_the_others_twice(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)  # as the retry loop sees it
    async with eventfold.connect("memory://") as store, SQLiteReadModel(db) as reads:
        await add(store, "acct-1", 1, 2, 3, 4, 5, 6)
        policy = RetryPolicy(attempts=3, backoff=0.25, multiplier=2.0)
        runner = runner_for(store, reads, tallies(fail={3: 2}), batch_size=6, retry=policy)
        await runner.catch_up()
        result = await runner.query("tallies", TALLY_SQL)
        assert result.rows == [("acct-1", 6, 21)]
        assert delays == [0.25, 0.5]

        await add(store, "acct-2", 7)
        delays.clear()
        runner = runner_for(store, reads, tallies(fail={7: 3}), retry=policy)
        with pytest.raises(ProjectionFailed) as caught:
            await runner.catch_up()
        assert caught.value.attempts == 3 and delays == [0.25, 0.5]


async def test_wait_for_gives_read_your_writes_or_a_typed_timeout(db: Path) -> None:
    async with eventfold.connect("memory://") as store, SQLiteReadModel(db) as reads:
        runner = runner_for(store, reads, tallies())
        position = await add(store, "acct-1", 10)
        with pytest.raises(ReadModelTimeout) as caught:
            await runner.wait_for(position, timeout=0.1)
        assert caught.value.projection == "tallies" and caught.value.position == position
        assert caught.value.reached is None
        assert isinstance(caught.value, TimeoutError)
        async with runner:
            await runner.wait_for(position, timeout=5)
            for amount in range(1, 6):
                written = await add(store, "acct-1", amount)
                result = await runner.query("tallies", TALLY_SQL, min_position=written)
                assert result.rows[0][1] == 1 + amount  # the write just made is visible
                assert result.position >= written
        await runner.stop()
        late = await add(store, "acct-1", 100)
        with pytest.raises(ReadModelTimeout) as caught:
            await runner.query("tallies", TALLY_SQL, min_position=late, timeout=0.1)
        assert caught.value.reached == late - 1


class SparseStore(MemoryStore):
    """Positions 10, 20, 30 ...: like PostgreSQL's, not contiguous."""

    def _sparse(self, record: Any) -> Any:
        return msgspec.structs.replace(record, position=record.position * 10)

    async def append_many(self, appends: Any) -> Any:
        results = await super().append_many(appends)
        return [msgspec.structs.replace(r, position=r.position * 10) for r in results]

    async def read_all(self, *, from_position: int = 0, **kw: Any) -> Any:
        async for record in super().read_all(from_position=(from_position + 9) // 10, **kw):
            yield self._sparse(record)

    async def read_stream(self, stream_id: str, **kw: Any) -> Any:
        async for record in super().read_stream(stream_id, **kw):
            yield self._sparse(record)

    async def head_position(self) -> int:
        return await super().head_position() * 10

    async def wait_for_events(self, after_position: int, timeout: float) -> bool:
        return await super().wait_for_events(after_position // 10, timeout)


async def test_freshness_counts_events_behind_on_sparse_positions(db: Path) -> None:
    store = SparseStore()
    async with SQLiteReadModel(db) as reads:
        await add(store, "acct-1", 1, 2)
        runner = runner_for(store, reads, tallies())
        await runner.catch_up()
        assert (await runner.freshness("tallies")) == eventfold.subscriptions.Freshness(
            20, 20, 0, 0.0
        )
        await add(store, "acct-1", 3)
        await store.append("acct-1", [codec.encode(Ignored())])
        await add(store, "acct-2", 4)
        result = await runner.query("tallies", TALLY_SQL)  # answers at once, stale
        fresh = result.freshness
        assert fresh is not None
        assert (fresh.position, fresh.head) == (20, 50)
        assert fresh.events_behind == 2  # counted: not (50 - 20), and Ignored is not counted
        assert fresh.seconds_behind >= 0 and not fresh.up_to_date
        status = {s.name: s for s in await runner.status()}["tallies"]
        assert status.freshness is not None
        assert (status.freshness.position, status.freshness.events_behind) == (20, 2)


async def test_a_new_version_builds_beside_the_old_one_and_switches_when_caught_up(
    db: Path,
) -> None:
    async with eventfold.connect("memory://") as store, SQLiteReadModel(db) as reads:
        await add(store, "acct-1", 1, 2, 3)
        await runner_for(store, reads, tallies(1)).catch_up()
        v1 = await query_read_model(reads, "tallies", TALLY_SQL)
        assert (v1.build, v1.version, v1.rows) == (1, 1, [("acct-1", 3, 6)])

        # Version 2 doubles totals. Stopped half-way, v1 keeps serving.
        v2_runner = runner_for(store, reads, tallies(2), batch_size=1)
        seen: list[tuple[int, int]] = []

        def progress(position: int, head: int, handled: int) -> None:
            # Cancelled from inside, after its first batch: it stops at its
            # next await, however fast the batches run.
            seen.append((position, head))
            lane.cancel()

        lane = asyncio.create_task(v2_runner.catch_up(progress=progress))
        with pytest.raises(asyncio.CancelledError):
            await lane
        assert seen
        during = await query_read_model(reads, "tallies", TALLY_SQL)
        assert (during.build, during.version, during.rows) == (1, 1, [("acct-1", 3, 6)])
        status = {s.name: s for s in await v2_runner.status()}["tallies"]
        assert [(b.build, b.version, b.state) for b in status.others] == [(2, 2, "building")]
        assert status.others[0].tables == ["tallies_v2", "applied_v2"]

        await v2_runner.catch_up()  # resumes its build, then switches
        after = await query_read_model(reads, "tallies", TALLY_SQL)
        assert (after.build, after.version, after.rows) == (2, 2, [("acct-1", 3, 12)])

        # The old code may no longer write into a read model serving a newer version.
        with pytest.raises(ProjectionSuperseded):
            await runner_for(store, reads, tallies(1)).catch_up()

        # A third version retires v2 and drops v1's tables.
        await runner_for(store, reads, tallies(3)).catch_up()
        with sqlite3.connect(db) as raw:
            names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
            states = raw.execute("SELECT build, state FROM eventfold_build ORDER BY 1").fetchall()
        assert "tallies_v1" not in names and {"tallies_v2", "tallies_v3"} <= names
        assert states == [(1, "dropped"), (2, "retired"), (3, "active")]


async def test_rebuild_of_the_same_version_uses_fresh_tables(db: Path) -> None:
    async with eventfold.connect("memory://") as store, SQLiteReadModel(db) as reads:
        await add(store, "acct-1", 1, 2)
        runner = runner_for(store, reads, tallies())
        async with runner:
            await runner.wait_for(2)
            build = await runner.rebuild("tallies")
            assert (build.build, build.state, build.suffix) == (2, "active", "v1_2")
            # The lane now follows the new build live.
            position = await add(store, "acct-1", 4)
            result = await runner.query("tallies", TALLY_SQL, min_position=position)
            assert (result.build, result.rows) == (2, [("acct-1", 3, 7)])


async def test_effects_run_live_once_and_never_during_a_rebuild(db: Path) -> None:
    sent: list[int] = []

    def with_effect(fail_first: bool = False) -> Projection:
        proj = tallies()
        state = {"fail": fail_first}

        @proj.effect(Added)
        async def mail(env: Envelope[Added]) -> None:
            if state["fail"]:
                state["fail"] = False
                raise ConnectionError("mail server down")
            sent.append(env.event.amount)

        return proj

    async with eventfold.connect("memory://") as store, SQLiteReadModel(db) as reads:
        await add(store, "acct-1", 1, 2)  # history before the projection existed
        runner = runner_for(store, reads, with_effect())
        async with runner:
            await runner.wait_for(2)
            await add(store, "acct-1", 3)
            await add(store, "acct-1", 4)
            await runner.wait_for(4)
            await runner.rebuild("tallies")
            position = await add(store, "acct-1", 5)
            await runner.wait_for(position)
            for _ in range(100):
                if 5 in sent:
                    break
                await asyncio.sleep(0.01)
        assert sent == [3, 4, 5]

        # An effect that fails stops the projection after its event was applied;
        # the restarted projection runs the effect again (at least once), once.
        await add(store, "acct-1", 6)
        with pytest.raises(ProjectionFailed, match="mail server down"):
            await runner_for(store, reads, with_effect(fail_first=True)).catch_up()
        await runner_for(store, reads, with_effect()).catch_up()
        assert sent == [3, 4, 5, 6]


async def test_effects_from_the_beginning_run_for_history_once(db: Path) -> None:
    seen: list[int] = []
    proj = Projection("history", tables={"t": "n INTEGER"}, effects_from="beginning")

    @proj.effect(Added)
    async def note(env: Envelope[Added]) -> None:
        seen.append(env.event.amount)

    async with eventfold.connect("memory://") as store, SQLiteReadModel(db) as reads:
        await add(store, "acct-1", 1, 2, 3)
        await runner_for(store, reads, proj).catch_up()
        await runner_for(store, reads, proj).catch_up()
    assert seen == [1, 2, 3]


async def test_unknown_projections_and_missing_codec_are_refused(db: Path) -> None:
    async with eventfold.connect("memory://") as store, SQLiteReadModel(db) as reads:
        runner = runner_for(store, reads, tallies())
        with pytest.raises(UnknownProjection, match="tallies"):
            await runner.query("nope", "SELECT 1")
        with pytest.raises(ProjectionNotReady):
            await runner.query("tallies", TALLY_SQL)
        with pytest.raises(InvalidArgument):
            ProjectionRunner(store, reads, [tallies()])


async def test_lag_counting_is_capped_and_can_be_skipped(db: Path) -> None:
    async with eventfold.connect("memory://") as store, SQLiteReadModel(db) as reads:
        await add(store, "acct-1", 1)
        runner = runner_for(store, reads, tallies(), count_limit=2)
        await runner.catch_up()
        await add(store, "acct-1", 2, 3, 4, 5)
        fresh = (await runner.query("tallies", TALLY_SQL)).freshness
        assert fresh is not None
        assert (fresh.position, fresh.head, fresh.events_behind, fresh.capped) == (1, 5, 2, True)
        assert (await runner.query("tallies", TALLY_SQL, freshness=False)).freshness is None
        status = {s.name: s for s in await runner.status()}["tallies"]
        assert status.freshness is not None and status.freshness.events_behind == 4
