"""A projection process for the kill tests: catches a tally projection up
from a SQLite event store into a SQLite read model, then exits 0.

    python -m tests.reliability.projection_worker STORE_URL READS_PATH [KILL]

KILL makes the process SIGKILL itself at an exact point: ``sql:N:PREFIX``
at the N-th SQL statement on the read model starting with PREFIX (e.g. the
checkpoint update or the COMMIT of a batch), or ``event:N`` inside the
handler of the N-th event applied. ``EVENTFOLD_TEST_SLOW`` (seconds) slows
each event so that kills at random times land mid-catch-up."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from typing import Any

import msgspec

import eventfold
from eventfold import Codec, Envelope, EventRegistry
from eventfold.subscriptions import Projection, ProjectionRunner, RetryPolicy, SQLiteReadModel, Tx

registry = EventRegistry()


@registry.register("Moved")
class Moved(msgspec.Struct, frozen=True):
    amount: int


codec = Codec(registry)
BATCH = 40


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def tally(kill_at_event: int | None = None, slow: float = 0.0) -> Projection:
    """Counts and sums per stream (applying an event twice shows) and a log of
    applied event ids (applying one twice breaks its primary key)."""
    proj = Projection(
        "tally",
        tables={
            "tally": "stream TEXT PRIMARY KEY, events INTEGER NOT NULL, total INTEGER NOT NULL",
            "applied": "event_id TEXT PRIMARY KEY, position INTEGER NOT NULL",
        },
    )
    applied = 0

    @proj.on(Moved)
    def moved(tx: Tx, env: Envelope[Moved]) -> None:
        nonlocal applied
        tx.execute(
            "INSERT INTO {tally} (stream, events, total) VALUES (?, 1, ?) ON CONFLICT (stream) "
            "DO UPDATE SET events = {tally}.events + 1, total = {tally}.total + excluded.total",
            (env.stream_id, env.event.amount),
        )
        tx.execute(
            "INSERT INTO {applied} (event_id, position) VALUES (?, ?)",
            (str(env.event_id), env.position),
        )
        applied += 1
        if applied == kill_at_event:
            die()
        if slow:
            time.sleep(slow)

    return proj


def kill_at_statement(n: int, prefix: str) -> Any:
    seen = 0

    def on_connect(conn: sqlite3.Connection) -> None:
        def trace(statement: str) -> None:
            nonlocal seen
            if statement.lstrip().upper().startswith(prefix.upper()):
                seen += 1
                if seen == n:
                    die()

        conn.set_trace_callback(trace)

    return on_connect


async def main(store_url: str, reads_path: str, kill: str | None) -> None:
    on_connect, kill_event = None, None
    if kill is not None and kill.startswith("sql:"):
        _, n, prefix = kill.split(":", 2)
        on_connect = kill_at_statement(int(n), prefix)
    elif kill is not None and kill.startswith("event:"):
        kill_event = int(kill.split(":", 1)[1])
    slow = float(os.environ.get("EVENTFOLD_TEST_SLOW", "0") or 0)
    async with (
        eventfold.connect(store_url) as store,
        SQLiteReadModel(reads_path, on_connect=on_connect) as reads,
    ):
        runner = ProjectionRunner(
            store,
            reads,
            [tally(kill_event, slow)],
            codec,
            batch_size=BATCH,
            retry=RetryPolicy(attempts=1),
        )
        await runner.catch_up()
    print("caught up", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
