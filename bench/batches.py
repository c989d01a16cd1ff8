"""Batch appends as the log grows: one writer appends batches of 1,000 events
over 10 new streams (100 events each) until the log holds ``total`` events,
and each batch is timed. Reported: events/s over a window of batches when the
log holds about 10,000 events, and over the last batches (the log near
``total``), for eventfold, the peer and the raw driver, on SQLite and
PostgreSQL.

- eventfold: one ``append_many`` of 10 ``StreamAppend``s (each new stream
  expected absent), the events encoded by a ``Codec`` inside the timing.
- eventsourcing: ``Application.save`` of 10 new aggregates, each with its
  creation event and 99 ``deposit`` events (made before the timing).
- raw: the rows in one transaction (SQLite: ``executemany``; PostgreSQL:
  ``COPY``), eventfold's table layout and indexes, ids from ``new_event_id``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from psycopg import sql

import eventfold
from bench import side_peer, side_raw
from bench.backends import Backend
from bench.common import NOTE, Deposited, encode_json
from bench.side_eventfold import codec
from eventfold.store.api import NO_STREAM, StreamAppend
from eventfold.store.ids import new_event_id

BATCH = 1_000
STREAMS = 10
WINDOW = 20
"""Batches in each reported window."""
EARLY = 10_000
"""The log's size where the first window starts."""


def windows(times: list[float]) -> dict[str, float]:
    """Events/s over the window that starts at ``EARLY`` events and over the
    last one (the median batch time of each)."""
    first = EARLY // BATCH
    early = times[first : first + WINDOW]
    late = times[-WINDOW:]
    return {
        "early_events": EARLY,
        "late_events": (len(times) - WINDOW) * BATCH,
        "early_events_per_s": BATCH / statistics.median(early),
        "late_events_per_s": BATCH / statistics.median(late),
    }


class EventfoldSide:
    name = "eventfold"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def grow(self, total: int) -> list[float]:
        if self.backend.kind == "sqlite":
            url = "sqlite:///" + self.backend.sqlite_path("ef_batches")
        else:
            url = f"{self.backend.pg_url}?schema={self.backend.pg_schema('ef_batches')}"
        return asyncio.run(self._grow(url, total))

    async def _grow(self, url: str, total: int) -> list[float]:
        per = BATCH // STREAMS
        times = []
        async with await eventfold.connect(url) as store:
            for b in range(total // BATCH):
                events = [[Deposited(i, NOTE) for i in range(per)] for _ in range(STREAMS)]
                started = time.perf_counter()
                await store.append_many(
                    [
                        StreamAppend(
                            f"account-{b}-{s}", [codec.encode(e) for e in batch], NO_STREAM
                        )
                        for s, batch in enumerate(events)
                    ]
                )
                times.append(time.perf_counter() - started)
        return times


class PeerSide:
    name = "eventsourcing"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def grow(self, total: int) -> list[float]:
        app = side_peer.Bank(side_peer.Side(self.backend).env("es_batches"))
        per = BATCH // STREAMS
        times = []
        try:
            for _ in range(total // BATCH):
                accounts = []
                for _ in range(STREAMS):
                    account = side_peer.Account()
                    for i in range(per - 1):  # with the creation event: per events
                        account.deposit(i, NOTE)
                    accounts.append(account)
                started = time.perf_counter()
                app.save(*accounts)
                times.append(time.perf_counter() - started)
        finally:
            app.close()
        return times


class RawSide:
    name = "raw"

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.raw = side_raw.Side(backend)

    def grow(self, total: int) -> list[float]:
        per = BATCH // STREAMS
        times = []
        batches = total // BATCH
        if self.backend.kind == "sqlite":
            con, _ = self.raw._sqlite(prefix="raw_batches")
            for b in range(batches):
                started = time.perf_counter()
                rows = [
                    side_raw._sqlite_row(f"account-{b}-{s}", i + 1, i)
                    for s in range(STREAMS)
                    for i in range(per)
                ]
                con.execute("BEGIN")
                con.executemany(side_raw._SQLITE_INSERT, rows)
                con.execute("COMMIT")
                times.append(time.perf_counter() - started)
            con.close()
            return times
        conn, schema = self.raw._pg(prefix="raw_batches")
        copy = sql.SQL(
            "COPY {} (position, stream_id, version, event_id, type, schema_version,"
            " data, metadata, hash) FROM STDIN"
        ).format(sql.Identifier(schema, "events"))
        position = 0
        for b in range(batches):
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy) as writer:
                for s in range(STREAMS):
                    for i in range(per):
                        position += 1
                        writer.write_row(
                            (
                                position,
                                f"account-{b}-{s}",
                                i + 1,
                                new_event_id(),
                                "Deposited",
                                1,
                                encode_json(Deposited(i, NOTE)).decode(),
                                "{}",
                                side_raw.HASH,
                            )
                        )
            times.append(time.perf_counter() - started)
        conn.close()
        return times


SIDES: tuple[Callable[[Backend], Any], ...] = (EventfoldSide, PeerSide, RawSide)


def markdown(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Per backend: each side's events/s with the log small and large, its
    slow-down, and eventfold's ratio to the peer and to raw at the large log."""
    lines = [
        "| backend | side | ev/s, log at 10k | ev/s, log at the end | end / 10k "
        "| eventfold / side at the end |",
        "|---|---|---|---|---|---|",
    ]
    for backend in ("sqlite", "postgres"):
        cells = results.get(backend, {})
        ef = cells.get("eventfold")
        for side in ("eventfold", "eventsourcing", "raw"):
            cell = cells.get(side)
            if not cell:
                continue
            early, late = cell["early_events_per_s"], cell["late_events_per_s"]
            ratio = f"{ef['late_events_per_s'] / late:,.2f}x" if ef and side != "eventfold" else "-"
            lines.append(
                f"| {backend} | {side} | {early:,.0f} | {late:,.0f} "
                f"(at {cell['late_events']:,}) | {late / early:,.2f}x | {ratio} |"
            )
    return "\n".join(lines) + "\n"


TARGETS = {"sqlite": 1.5, "postgres": 2.0}


def check_targets(results: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for backend, target in TARGETS.items():
        cells = results.get(backend, {})
        ef, peer = cells.get("eventfold"), cells.get("eventsourcing")
        if not ef or not peer:
            continue
        ratio = ef["late_events_per_s"] / peer["late_events_per_s"]
        out.append(
            {
                "what": (
                    f"batches of 1,000 over 10 streams, log at {ef['late_events']:,},"
                    f" >= {target:g}x the peer"
                ),
                "backend": backend,
                "versus": "eventsourcing",
                "ratio": ratio,
                "target": target,
                "met": ratio >= target,
            }
        )
    return out
