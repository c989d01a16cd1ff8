"""What bounds the scale run's figures on a grown log: plans with their
buffer counts, index sizes and cache hit ratios (PostgreSQL), the page
count of each table and index (SQLite).

    python -m bench.scale_bounds 'postgresql://...?schema=scale_xxx'
    python -m bench.scale_bounds sqlite:///path/to/scale.db

Also called by bench/scale.py at every size (``bounds`` in its JSON)."""

from __future__ import annotations

import json
import sqlite3
import sys
from typing import Any
from urllib.parse import parse_qs


def postgres(url: str, stream: str = "account-12345") -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    base, _, query = url.partition("?")
    schema = parse_qs(query)["schema"][0]
    events = sql.Identifier(schema, "events")
    out: dict[str, Any] = {}
    with psycopg.connect(base, autocommit=True) as conn:
        plans = {
            "stream_read": sql.SQL(
                "SELECT * FROM {} WHERE stream_id = %s AND version >= 1 ORDER BY version LIMIT 1000"
            ).format(events),
            "log_page": sql.SQL(
                "SELECT * FROM {} WHERE position >= %s ORDER BY position LIMIT 1000"
            ).format(events),
        }
        params: dict[str, list[Any]] = {"stream_read": [stream], "log_page": [0]}
        for name, statement in plans.items():
            rows = conn.execute(
                sql.SQL("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ") + statement, params[name]
            ).fetchall()
            out[f"plan_{name}"] = [str(r[0]) for r in rows]
        rows = conn.execute(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'i') ORDER BY 2 DESC",
            [schema],
        ).fetchall()
        out["relation_bytes"] = {str(r[0]): int(r[1]) for r in rows}
        row = conn.execute(
            "SELECT sum(heap_blks_hit), sum(heap_blks_read), sum(idx_blks_hit),"
            " sum(idx_blks_read) FROM pg_statio_user_tables WHERE schemaname = %s",
            [schema],
        ).fetchone()
        if row is not None and row[0] is not None:
            heap_hit, heap_read, idx_hit, idx_read = (int(x or 0) for x in row)
            out["heap_hit_ratio"] = heap_hit / max(1, heap_hit + heap_read)
            out["index_hit_ratio"] = idx_hit / max(1, idx_hit + idx_read)
        setting = conn.execute("SHOW shared_buffers").fetchone()
        out["shared_buffers"] = str(setting[0]) if setting else ""
    return out


def sqlite(path: str) -> dict[str, Any]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        out: dict[str, Any] = {
            "page_size": conn.execute("PRAGMA page_size").fetchone()[0],
            "pages": conn.execute("PRAGMA page_count").fetchone()[0],
            "cache_size": conn.execute("PRAGMA cache_size").fetchone()[0],
        }
        try:
            rows = conn.execute(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
            ).fetchall()
            out["relation_bytes"] = {str(r[0]): int(r[1]) for r in rows}
        except sqlite3.OperationalError:  # SQLite built without dbstat
            pass
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM events WHERE stream_id = ? AND version >= 1"
            " ORDER BY version",
            ["account-12345"],
        ).fetchall()
        out["plan_stream_read"] = [str(r[-1]) for r in plan]
    return out


def bounds(url: str) -> dict[str, Any]:
    if url.startswith("sqlite:///"):
        return sqlite(url.removeprefix("sqlite:///"))
    return postgres(url)


if __name__ == "__main__":
    json.dump(bounds(sys.argv[1]), sys.stdout, indent=1)
    print()
