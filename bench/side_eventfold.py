"""eventfold: the store through ``eventfold.connect``, typed events through a
``Codec``, aggregates through a ``Repository``, projections through a
``ProjectionRunner`` into a SQL read model, all with their default settings
(SQLite ``synchronous=FULL``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import eventfold
from bench.backends import Backend
from bench.common import NOTE, Deposited, Measure
from eventfold import Codec, Decider, EventRegistry, Repository
from eventfold.domain.events import Envelope
from eventfold.repository import SnapshotPolicy
from eventfold.store.api import NO_STREAM, EventStore
from eventfold.subscriptions import Projection, ProjectionRunner, SQLiteReadModel, Tx

registry = EventRegistry()
registry.register("Deposited")(Deposited)
codec = Codec(registry)
account: Decider[Any, Deposited, int] = Decider(
    decide=lambda command, state: [],
    evolve=lambda state, event: state + event.amount,
    initial_state=int,
)


class Side:
    name = "eventfold"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._log_url: str | None = None
        self._log_events = 0
        self._log_sum = 0

    # --- helpers ----------------------------------------------------------------------

    def _url(self, prefix: str) -> str:
        if self.backend.kind == "sqlite":
            return "sqlite:///" + self.backend.sqlite_path(prefix)
        schema = self.backend.pg_schema(prefix)
        return f"{self.backend.pg_url}?schema={schema}"

    async def _open(self, url: str) -> EventStore:
        return await eventfold.connect(url)

    # --- 1. single appends ------------------------------------------------------------

    def single_appends(self, n: int) -> Measure:
        return asyncio.run(self._single(n))

    async def _single(self, n: int) -> Measure:
        async with await self._open(self._url("ef_single")) as store:
            stream = "account-1"
            await store.append(stream, [codec.encode(Deposited(0, NOTE))], NO_STREAM)
            latencies = []
            started = time.perf_counter()
            for i in range(1, n + 1):
                t0 = time.perf_counter()
                await store.append(stream, [codec.encode(Deposited(i, NOTE))], i)
                latencies.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
        return Measure(n, elapsed, latencies)

    # --- 2. concurrent writers --------------------------------------------------------

    def concurrent(self, writers: int, per_writer: int) -> Measure:
        return asyncio.run(self._concurrent(writers, per_writer))

    async def _concurrent(self, writers: int, per_writer: int) -> Measure:
        async with await self._open(self._url("ef_conc")) as store:
            streams = [f"account-{w}" for w in range(writers)]
            for stream in streams:
                await store.append(stream, [codec.encode(Deposited(0, NOTE))], NO_STREAM)
            latencies: list[float] = []

            async def writer(stream: str) -> None:
                for i in range(1, per_writer + 1):
                    t0 = time.perf_counter()
                    await store.append(stream, [codec.encode(Deposited(i, NOTE))], i)
                    latencies.append(time.perf_counter() - t0)

            started = time.perf_counter()
            await asyncio.gather(*(writer(s) for s in streams))
            elapsed = time.perf_counter() - started
        return Measure(writers * per_writer, elapsed, latencies)

    # --- 3. one big append ------------------------------------------------------------

    def batch_append(self, n: int, repeat: int) -> list[Measure]:
        return asyncio.run(self._batch(n, repeat))

    async def _batch(self, n: int, repeat: int) -> list[Measure]:
        out = []
        async with await self._open(self._url("ef_batch")) as store:
            for r in range(repeat + 1):  # the first one warms up
                events = [Deposited(i, NOTE) for i in range(n)]
                started = time.perf_counter()
                await store.append(f"account-{r}", [codec.encode(e) for e in events], NO_STREAM)
                elapsed = time.perf_counter() - started
                if r:
                    out.append(Measure(n, elapsed))
        return out

    # --- 4. load an aggregate ---------------------------------------------------------

    def load(self, n: int, tail: int, loads: int) -> tuple[Measure, Measure]:
        return asyncio.run(self._load(n, tail, loads))

    async def _load(self, n: int, tail: int, loads: int) -> tuple[Measure, Measure]:
        async with await self._open(self._url("ef_load")) as store:
            full, snap = "account-full", "account-snap"
            for stream in (full, snap):
                events = [codec.encode(Deposited(i, NOTE)) for i in range(n)]
                await store.append(stream, events, NO_STREAM)
            repo = Repository(store, account, codec)
            snapshots = SnapshotPolicy(every=10**9, state_type=int)
            snap_repo = Repository(store, account, codec, snapshots=snapshots)
            await snap_repo.snapshot(snap)
            more = [codec.encode(Deposited(i, NOTE)) for i in range(tail)]
            await store.append(snap, more, n)
            expected = sum(range(n))
            results = []
            for r, stream, count in ((repo, full, n), (snap_repo, snap, n + tail)):
                await r.load(stream)  # warm up
                latencies = []
                for _ in range(loads):
                    t0 = time.perf_counter()
                    loaded = await r.load(stream)
                    latencies.append(time.perf_counter() - t0)
                    assert loaded.version == count and loaded.state >= expected
                total = sum(latencies)
                results.append(Measure(count * loads, total, latencies))
        return results[0], results[1]

    # --- 5 and 6. the log -------------------------------------------------------------

    def populate(self, events: int, streams: int) -> None:
        self._log_url = self._url("ef_log")
        self._log_events = events
        self._log_sum = streams * sum(range(events // streams))
        asyncio.run(self._populate(self._log_url, events, streams))

    async def _populate(self, url: str, events: int, streams: int) -> None:
        per = events // streams
        async with await self._open(url) as store:
            for base in range(0, streams, 10):
                await asyncio.gather(
                    *(
                        store.append(
                            f"account-{s}",
                            [codec.encode(Deposited(i, NOTE)) for i in range(per)],
                            NO_STREAM,
                        )
                        for s in range(base, min(base + 10, streams))
                    )
                )

    def read_log(self) -> Measure:
        return asyncio.run(self._read_log())

    async def _read_log(self) -> Measure:
        assert self._log_url is not None
        async with await self._open(self._log_url) as store:
            count = 0
            total = 0
            decode = codec.decode
            started = time.perf_counter()
            async for record in store.read_all():
                envelope: Envelope[Deposited] = decode(record)
                total += envelope.event.amount
                count += 1
            elapsed = time.perf_counter() - started
        return Measure(count, elapsed)

    def projection(self) -> Measure:
        return asyncio.run(self._projection())

    async def _projection(self) -> Measure:
        assert self._log_url is not None
        balances = Projection(
            "balances",
            version=1,
            tables={"balances": "account TEXT PRIMARY KEY, amount BIGINT NOT NULL"},
        )

        @balances.on(Deposited)
        def apply(tx: Tx, env: Envelope[Deposited]) -> None:
            tx.execute(
                "INSERT INTO {balances} (account, amount) VALUES (?, ?) "
                "ON CONFLICT (account) DO UPDATE SET amount = {balances}.amount + excluded.amount",
                (env.stream_id, env.event.amount),
            )

        if self.backend.kind == "sqlite":
            reads: Any = SQLiteReadModel(self.backend.sqlite_path("ef_reads"), synchronous="FULL")
        else:
            from eventfold.subscriptions.readmodel_postgres import PostgresReadModel

            reads = PostgresReadModel(self.backend.pg_url, schema=self.backend.pg_schema("ef_rm"))
        async with await self._open(self._log_url) as store:
            head = await store.head_position()
            async with reads:
                runner = ProjectionRunner(store, reads, [balances], codec)
                started = time.perf_counter()
                await runner.catch_up()
                elapsed = time.perf_counter() - started
                assert await runner.position("balances") == head
                result = await runner.query(
                    "balances", "SELECT count(*), sum(amount) FROM {balances}", freshness=False
                )
        assert result.rows[0][1] == self._log_sum, (result.rows, self._log_sum)
        return Measure(self._log_events, elapsed)
