"""The three sides of the standard workloads (bench/workloads.py).

- eventfold: one store from ``eventfold.connect``, its workers asyncio tasks
  in one process; pages through ``read_stream(limit=50)``, appends of one
  typed event (``Codec.encode``) with the exact expected version.
- eventsourcing: one ``Application``, its workers threads (it has no async
  API); pages through its recorder's ``select_events(limit=50)``, appends
  by ``save`` of an aggregate after one ``@event`` method call.
- raw: the bare driver, one thread and connection per worker, eventfold's
  table layout; a page is ``SELECT ... LIMIT 50``, an append one INSERT in
  its own transaction.

Every side reads the same 1,000 streams of 50 events, written before the
shape runs and not timed, and writes streams of its own, 10 events each.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from psycopg import sql

import eventfold
from bench.backends import PG_EVENTS, SQLITE_EVENTS, SQLITE_INDEXES, Backend
from bench.workloads import PER_STREAM, STREAMS, Run, Shape, coin, note, picks
from eventfold import Codec, EventRegistry
from eventfold.store.api import NO_STREAM
from eventfold.store.ids import new_event_id

STREAM_LENGTH = 10
"""Events a writer appends to one stream before it starts the next (the suite's)."""

registry = EventRegistry()


@registry.register("Noted")
class Noted(msgspec.Struct, frozen=True):
    amount: int
    note: str


codec = Codec(registry)
_encode = msgspec.json.Encoder().encode


class Clock:
    """The measured window: workers record only while ``recording``."""

    def __init__(self) -> None:
        self.recording = False
        self.stopped = False
        self.started = 0.0
        self.ended = 0.0

    def window(self, warmup: float, duration: float) -> None:
        """Blocking: warm up, record for ``duration`` seconds, stop."""
        time.sleep(warmup)
        self.started = time.perf_counter()
        self.recording = True
        time.sleep(duration)
        self.recording = False
        self.ended = time.perf_counter()
        self.stopped = True


def _stream(seed: int, worker: int) -> str:
    return f"w{seed}-{worker}-{uuid.uuid4().hex[:8]}"


# --- eventfold --------------------------------------------------------------------------


class EventfoldSide:
    name = "eventfold"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        if backend.kind == "sqlite":
            self.url = f"sqlite:///{backend.sqlite_path('ef_workloads')}"
        else:
            self.url = f"{backend.pg_url}?schema={backend.pg_schema('ef_workloads')}"
        self.streams = [f"read-{i}" for i in range(STREAMS)]

    def prepare(self) -> None:
        async def populate() -> None:
            async with await eventfold.connect(self.url) as store:

                def events() -> list[Any]:
                    return [codec.encode(Noted(i, note(256))) for i in range(PER_STREAM)]

                for base in range(0, STREAMS, 20):
                    streams = self.streams[base : base + 20]
                    await asyncio.gather(*(store.append(s, events(), NO_STREAM) for s in streams))

        asyncio.run(populate())

    def run(self, shape: Shape, warmup: float, duration: float, seed: int) -> Run:
        return asyncio.run(self._run(shape, warmup, duration, seed))

    async def _run(self, shape: Shape, warmup: float, duration: float, seed: int) -> Run:
        result = Run()
        clock = Clock()
        text = note(shape.event_bytes)
        async with await eventfold.connect(self.url) as store:

            async def read(stream: str) -> None:
                started = time.perf_counter_ns()
                n = 0
                async for _ in store.read_stream(stream, limit=shape.page):
                    n += 1
                if clock.recording:
                    result.latencies.append(time.perf_counter_ns() - started)
                    result.read += n

            async def reader(worker: int) -> None:
                choices = itertools.cycle(picks(shape, worker, seed))
                while not clock.stopped:
                    await read(self.streams[next(choices)])

            async def writer(worker: int) -> None:
                choices = itertools.cycle(picks(shape, 1000 + worker, seed))
                writes = itertools.cycle(coin(shape, worker, seed))
                stream, version = _stream(seed, worker), 0
                while not clock.stopped:
                    if not next(writes):
                        await read(self.streams[next(choices)])
                        continue
                    if version == STREAM_LENGTH:
                        stream, version = _stream(seed, worker), 0
                    started = time.perf_counter_ns()
                    new = codec.encode(Noted(version, text))
                    await store.append(stream, [new], version)
                    version += 1
                    if clock.recording:
                        result.latencies.append(time.perf_counter_ns() - started)
                        result.written += 1

            workers = [asyncio.ensure_future(reader(k)) for k in range(shape.readers)]
            workers += [asyncio.ensure_future(writer(k)) for k in range(shape.writers)]
            try:
                await asyncio.sleep(warmup)
                clock.started = time.perf_counter()
                clock.recording = True
                await asyncio.sleep(duration)
                clock.recording = False
                clock.ended = time.perf_counter()
            finally:
                clock.stopped = True
                await asyncio.gather(*workers)
        result.seconds = clock.ended - clock.started
        return result


# --- eventsourcing ----------------------------------------------------------------------


class Note(Aggregate):
    @event("Noted")
    def noted(self, amount: int, note: str) -> None:
        pass


class Notes(Application[Any]):
    pass


class Threads:
    """Worker threads that add what they measured to one ``Run``."""

    def __init__(self) -> None:
        self.result = Run()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def add(self, latencies: list[int], read: int, written: int) -> None:
        with self._lock:
            self.result.latencies += latencies
            self.result.read += read
            self.result.written += written

    def run(self, targets: list[Callable[[], None]], clock: Clock, warmup: float, d: float) -> Run:
        threads = [threading.Thread(target=self._guarded, args=(t,)) for t in targets]
        try:
            for thread in threads:
                thread.start()
            clock.window(warmup, d)
        finally:
            clock.stopped = True
            for thread in threads:
                thread.join()
        if self.errors:
            raise RuntimeError(f"a worker failed: {self.errors[0]!r}") from self.errors[0]
        self.result.seconds = clock.ended - clock.started
        return self.result

    def _guarded(self, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:
            self.errors.append(exc)


class PeerSide:
    name = "eventsourcing"

    def __init__(self, backend: Backend, env: dict[str, str]) -> None:
        self.backend = backend
        self.env = dict(env)
        # A connection for each thread of the largest shape, made up front.
        self.env["POSTGRES_POOL_SIZE"] = "40"
        self.env["POSTGRES_MAX_OVERFLOW"] = "0"
        self.ids: list[uuid.UUID] = []

    def prepare(self) -> None:
        app = Notes(self.env)
        try:
            for _ in range(STREAMS):
                aggregate = Note()
                for i in range(PER_STREAM - 1):  # with the creation event: 50 events
                    aggregate.noted(i, note(256))
                app.save(aggregate)
                self.ids.append(aggregate.id)
        finally:
            app.close()

    def run(self, shape: Shape, warmup: float, duration: float, seed: int) -> Run:
        clock = Clock()
        text = note(shape.event_bytes)
        app = Notes(self.env)
        recorder: Any = app.recorder
        threads = Threads()

        def worker(k: int, writer: bool) -> Callable[[], None]:
            def work() -> None:
                latencies: list[int] = []
                read = written = 0
                choices = itertools.cycle(picks(shape, (1000 if writer else 0) + k, seed))
                writes = itertools.cycle(coin(shape, k, seed) if writer else [False])
                aggregate: Note | None = None
                length = 0
                while not clock.stopped:
                    started = time.perf_counter_ns()
                    if not next(writes):
                        n = len(recorder.select_events(self.ids[next(choices)], limit=shape.page))
                        if clock.recording:
                            latencies.append(time.perf_counter_ns() - started)
                            read += n
                        continue
                    if aggregate is None or length == 10:
                        aggregate, length = Note(), 1  # its creation event
                    else:
                        aggregate.noted(length, text)
                        length += 1
                    app.save(aggregate)
                    if clock.recording:
                        latencies.append(time.perf_counter_ns() - started)
                        written += 1
                threads.add(latencies, read, written)

            return work

        targets = [worker(k, False) for k in range(shape.readers)]
        targets += [worker(k, True) for k in range(shape.writers)]
        try:
            return threads.run(targets, clock, warmup, duration)
        finally:
            app.close()


# --- raw --------------------------------------------------------------------------------

_SQLITE_READ = (
    "SELECT stream_id, version, position, type, data FROM events "
    "WHERE stream_id = ? ORDER BY version LIMIT ?"
)
_SQLITE_INSERT = (
    "INSERT INTO events (stream_id, version, category, type, event_id, schema_version, "
    "recorded_at, hash, metadata, data) VALUES (?, ?, 'w', 'Noted', ?, 1, ?, ?, '{}', ?)"
)
_PG_READ = (
    "SELECT stream_id, version, position, type, data::text FROM {events} "
    "WHERE stream_id = %s ORDER BY version LIMIT %s"
)
_PG_INSERT = (
    "INSERT INTO {events} (position, stream_id, version, event_id, type, schema_version, "
    "data, metadata, hash) VALUES (%s, %s, %s, %s, 'Noted', 1, %s::jsonb, '{{}}', %s)"
)
_HASH = b"\x00" * 32


class RawSide:
    name = "raw"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.streams = [f"read-{i}" for i in range(STREAMS)]
        self.path = ""
        self.schema = ""
        self._positions = itertools.count(1)

    def _sqlite(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = FULL")
        con.execute("PRAGMA busy_timeout = 60000")
        return con

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(events=sql.Identifier(self.schema, "events"))

    def prepare(self) -> None:
        rows = [
            (s, v, _encode({"amount": v, "note": note(256)}))
            for s in self.streams
            for v in range(1, PER_STREAM + 1)
        ]
        if self.backend.kind == "sqlite":
            self.path = self.backend.sqlite_path("raw_workloads")
            con = self._sqlite()
            con.execute(SQLITE_EVENTS)
            for statement in SQLITE_INDEXES:
                con.execute(statement)
            con.execute("BEGIN")
            now = time.time_ns() // 1000
            con.executemany(
                _SQLITE_INSERT, [(s, v, new_event_id().bytes, now, _HASH, d) for s, v, d in rows]
            )
            con.execute("COMMIT")
            con.close()
            return
        self.schema = self.backend.pg_schema("raw_workloads")
        with psycopg.connect(self.backend.pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL(PG_EVENTS).format(events=sql.Identifier(self.schema, "events")))
            with conn.cursor() as cur:
                cur.executemany(
                    self._q(_PG_INSERT),
                    [
                        (next(self._positions), s, v, new_event_id(), d.decode(), _HASH)
                        for s, v, d in rows
                    ],
                )

    def run(self, shape: Shape, warmup: float, duration: float, seed: int) -> Run:
        clock = Clock()
        threads = Threads()
        sqlite = self.backend.kind == "sqlite"
        read_sql: Any = _SQLITE_READ if sqlite else self._q(_PG_READ)
        insert_sql: Any = _SQLITE_INSERT if sqlite else self._q(_PG_INSERT)
        text = note(shape.event_bytes)

        def worker(k: int, writer: bool) -> Callable[[], None]:
            def work() -> None:
                latencies: list[int] = []
                read = written = 0
                conn: Any = (
                    self._sqlite()
                    if sqlite
                    else psycopg.connect(self.backend.pg_url, autocommit=True)
                )
                choices = itertools.cycle(picks(shape, (1000 if writer else 0) + k, seed))
                writes = itertools.cycle(coin(shape, k, seed) if writer else [False])
                stream, version = _stream(seed, k), 0
                try:
                    while not clock.stopped:
                        started = time.perf_counter_ns()
                        if not next(writes):
                            params = (self.streams[next(choices)], shape.page)
                            if sqlite:
                                n = len(conn.execute(read_sql, params).fetchall())
                            else:
                                n = len(conn.execute(read_sql, params, prepare=True).fetchall())
                            if clock.recording:
                                latencies.append(time.perf_counter_ns() - started)
                                read += n
                            continue
                        if version == 10:
                            stream, version = _stream(seed, k), 0
                        version += 1
                        data = _encode({"amount": version, "note": text})
                        if sqlite:
                            row = (stream, version, new_event_id().bytes, time.time_ns() // 1000)
                            conn.execute("BEGIN IMMEDIATE")
                            conn.execute(insert_sql, (*row, _HASH, data))
                            conn.execute("COMMIT")
                        else:
                            row = (next(self._positions), stream, version, new_event_id())
                            conn.execute(insert_sql, (*row, data.decode(), _HASH), prepare=True)
                        if clock.recording:
                            latencies.append(time.perf_counter_ns() - started)
                            written += 1
                finally:
                    conn.close()
                threads.add(latencies, read, written)

            return work

        targets = [worker(k, False) for k in range(shape.readers)]
        targets += [worker(k, True) for k in range(shape.writers)]
        return threads.run(targets, clock, warmup, duration)
