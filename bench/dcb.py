"""Dynamic Consistency Boundaries on PostgreSQL: eventfold's ``DCBStore`` and
the ``eventsourcing`` package's DCB recorder (``eventsourcing.dcb.postgres_tt``,
``PostgresDCBRecorderTT``, through ``DCBApplication`` with its
``PERSISTENCE_MODULE``), on the same server, in the same run.

Both stores are first filled with ``dcb_fill`` events (each tagged with one
of 1,000 courses and one of 10,000 students, a tenth of them also with a
writer's tag) and vacuumed, then:

- scenario 7, conditional appends with 1, 8 and 64 writers: each writer
  appends one event tagged with its own key, with the condition "no event
  with my key (of my type) after the last position I appended"; the
  conditions of different writers cannot overlap, so none fails. Timed per
  append (p50, p99). eventfold's writers are asyncio tasks on one store (its
  default pool of 10 connections); the peer has no async API, so its
  writers are processes, one connection each.
- scenario 8, tag-query reads: reads of a query of two items (two types
  and a course's tag each, two courses), about ``dcb_fill / 500`` matches
  each, every event decoded; events/s, and p50/p99 per read.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import psycopg
from eventsourcing.dcb.api import DCBAppendCondition, DCBEvent, DCBQuery, DCBQueryItem
from eventsourcing.dcb.application import DCBApplication

from bench.backends import Backend
from bench.common import Measure
from eventfold.store.api import NewEvent
from eventfold.store.capabilities import DCBStore, require
from eventfold.store.dcb import AppendCondition, Query, QueryItem
from eventfold.store.url import connect

COURSES = 1_000
STUDENTS = 10_000
FILL_BATCH = 5_000
TYPES = ("Subscribed", "Unsubscribed", "Claimed")


class Subscribed(msgspec.Struct, frozen=True):
    course: int
    student: int


encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder(Subscribed).decode


def _fill_rows(n: int, seed: int) -> list[tuple[str, bytes, tuple[str, ...]]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        course, student = rng.randrange(COURSES), rng.randrange(STUDENTS)
        tags: tuple[str, ...] = (f"course:{course}", f"student:{student}")
        if i % 10 == 0:
            tags += (f"writer:{rng.randrange(64)}",)
        rows.append((TYPES[i % 2], encode(Subscribed(course, student)), tags))
    return rows


def _vacuum(url: str, schema: str) -> None:
    """VACUUM ANALYZE every table of ``schema``: after the fill, both stores
    are measured as a store that has been running a while is (statistics
    and visibility maps up to date)."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = %s", [schema]
        ).fetchall()
        for (table,) in tables:
            conn.execute(
                psycopg.sql.SQL("VACUUM (ANALYZE) {}").format(psycopg.sql.Identifier(schema, table))
            )


def _read_query(i: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(types, tags) of the two items of the ``i``-th read."""
    course = i * 7 % COURSES
    return ("Subscribed", "Unsubscribed"), (f"course:{course}", f"course:{(course + 1) % COURSES}")


# --- eventfold ------------------------------------------------------------------------


class EventfoldSide:
    name = "eventfold"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.url = ""

    def fill(self, n: int) -> None:
        schema = self.backend.pg_schema("ef_dcb")
        self.url = (
            f"{self.backend.pg_url}{'&' if '?' in self.backend.pg_url else '?'}schema={schema}"
        )
        asyncio.run(self._fill(n))

    async def _fill(self, n: int) -> None:
        async with connect(self.url) as opened:
            store = require(opened, DCBStore)
            rows = _fill_rows(n, 1)
            for start in range(0, n, FILL_BATCH):
                chunk = rows[start : start + FILL_BATCH]
                await store.append_events([NewEvent(t, d, tags=g) for t, d, g in chunk])

    def conditional(self, writers: int, per_writer: int) -> Measure:
        return asyncio.run(self._conditional(writers, per_writer))

    async def _conditional(self, writers: int, per_writer: int) -> Measure:
        async with connect(self.url) as opened:
            store = require(opened, DCBStore)
            latencies: list[float] = []
            start = asyncio.Event()

            async def writer(w: int) -> None:
                key = f"writer:{w}:{time.monotonic_ns()}"
                query = Query.of(QueryItem(types=("Claimed",), tags=(key,)))
                after: int | None = None
                await start.wait()
                for i in range(per_writer):
                    event = NewEvent("Claimed", encode(Subscribed(w, i)), tags=(key, "claim"))
                    t0 = time.perf_counter()
                    after = await store.append_events([event], AppendCondition(query, after))
                    latencies.append(time.perf_counter() - t0)

            tasks = [asyncio.create_task(writer(w)) for w in range(writers)]
            await asyncio.sleep(0)
            started = time.perf_counter()
            start.set()
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - started
        return Measure(writers * per_writer, elapsed, latencies)

    def reads(self, count: int) -> Measure:
        return asyncio.run(self._reads(count))

    async def _reads(self, count: int) -> Measure:
        async with connect(self.url) as opened:
            store = require(opened, DCBStore)
            latencies: list[float] = []
            events = 0
            started = time.perf_counter()
            for i in range(count):
                types, (first, second) = _read_query(i)
                query = Query.of(QueryItem(types, (first,)), QueryItem(types, (second,)))
                t0 = time.perf_counter()
                async for record in store.read(query):
                    decode(record.data)
                    events += 1
                latencies.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
        return Measure(events, elapsed, latencies)


# --- the peer -------------------------------------------------------------------------


@contextlib.contextmanager
def _search_path(schema: str) -> Iterator[None]:
    """The peer's DCB recorder names its events table without the schema in
    one statement (the tags table's foreign key), so it works only with its
    schema on the search path: its connections get it through PGOPTIONS."""
    before = os.environ.get("PGOPTIONS")
    os.environ["PGOPTIONS"] = f"-c search_path={schema}"
    try:
        yield
    finally:
        if before is None:
            del os.environ["PGOPTIONS"]
        else:
            os.environ["PGOPTIONS"] = before


def _peer_env(backend: Backend, schema: str) -> dict[str, str]:
    parts = backend.pg_parts()
    return {
        "PERSISTENCE_MODULE": "eventsourcing.dcb.postgres_tt",
        "POSTGRES_DBNAME": parts["dbname"],
        "POSTGRES_HOST": parts["host"],
        "POSTGRES_PORT": parts["port"],
        "POSTGRES_USER": parts["user"],
        "POSTGRES_PASSWORD": parts["password"],
        "POSTGRES_SCHEMA": schema,
    }


def _peer_writer(env: dict[str, str], w: int, count: int, barrier: Any, results: Any) -> None:
    try:
        os.environ["PGOPTIONS"] = f"-c search_path={env['POSTGRES_SCHEMA']}"
        app = DCBApplication(env)
        recorder = app.recorder
        key = f"writer:{w}:{time.monotonic_ns()}"
        query = DCBQuery(items=[DCBQueryItem(types=["Claimed"], tags=[key])])
        after: int | None = None
        barrier.wait()
        latencies = []
        started = time.perf_counter()
        for i in range(count):
            event = DCBEvent("Claimed", encode(Subscribed(w, i)), [key, "claim"])
            t0 = time.perf_counter()
            after = recorder.append([event], DCBAppendCondition(query, after))
            latencies.append(time.perf_counter() - t0)
        results.put((started, time.perf_counter(), latencies))
        app.close()
    except BaseException as exc:
        barrier.abort()
        results.put(repr(exc))


class PeerSide:
    name = "eventsourcing"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.env: dict[str, str] = {}

    def fill(self, n: int) -> None:
        self.env = _peer_env(self.backend, self.backend.pg_schema("es_dcb"))
        with _search_path(self.env["POSTGRES_SCHEMA"]):
            app = DCBApplication(self.env)
            try:
                rows = _fill_rows(n, 1)
                for start in range(0, n, FILL_BATCH):
                    chunk = rows[start : start + FILL_BATCH]
                    app.recorder.append([DCBEvent(t, d, list(g)) for t, d, g in chunk])
            finally:
                app.close()
        _vacuum(self.backend.pg_url, self.env["POSTGRES_SCHEMA"])

    def conditional(self, writers: int, per_writer: int) -> Measure:
        env = dict(self.env, CREATE_TABLE="no", POSTGRES_POOL_SIZE="1")
        ctx = multiprocessing.get_context("fork")
        barrier = ctx.Barrier(writers)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_peer_writer, args=(env, w, per_writer, barrier, results))
            for w in range(writers)
        ]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=900) for _ in procs]
        failures = [o for o in outcomes if isinstance(o, str)]
        if failures:
            raise RuntimeError(f"peer DCB writer failed: {failures[0]}")
        for p in procs:
            p.join(timeout=60)
        started = min(o[0] for o in outcomes)
        ended = max(o[1] for o in outcomes)
        latencies = [x for o in outcomes for x in o[2]]
        return Measure(writers * per_writer, ended - started, latencies)

    def reads(self, count: int) -> Measure:
        with _search_path(self.env["POSTGRES_SCHEMA"]):
            return self._reads(count)

    def _reads(self, count: int) -> Measure:
        app = DCBApplication(dict(self.env, CREATE_TABLE="no"))
        try:
            latencies: list[float] = []
            events = 0
            started = time.perf_counter()
            for i in range(count):
                types, (first, second) = _read_query(i)
                query = DCBQuery(
                    items=[
                        DCBQueryItem(types=list(types), tags=[first]),
                        DCBQueryItem(types=list(types), tags=[second]),
                    ]
                )
                t0 = time.perf_counter()
                for sequenced in app.recorder.read(query):
                    decode(sequenced.event.data)
                    events += 1
                latencies.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
        finally:
            app.close()
        return Measure(events, elapsed, latencies)
