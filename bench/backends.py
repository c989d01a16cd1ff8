"""Where the benchmark writes: a fresh SQLite file per run in one temporary
directory, and one PostgreSQL server (the embedded one, started here, or
``--pg-url``), a fresh schema per run."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from bench.common import new_name

# The columns and indexes of eventfold's SQLite events table, used by the raw
# baseline so that both write the same rows into the same shape of table.
SQLITE_EVENTS = """CREATE TABLE events (
    position INTEGER PRIMARY KEY, stream_id TEXT NOT NULL, version INTEGER NOT NULL,
    category TEXT NOT NULL, type TEXT NOT NULL, event_id BLOB NOT NULL,
    schema_version INTEGER NOT NULL, recorded_at INTEGER NOT NULL, hash BLOB NOT NULL,
    tags TEXT, metadata TEXT NOT NULL, data TEXT NOT NULL)"""
SQLITE_INDEXES = (
    "CREATE UNIQUE INDEX events_stream_version ON events (stream_id, version)",
    "CREATE UNIQUE INDEX events_event_id ON events (event_id)",
    "CREATE INDEX events_category ON events (category)",
    "CREATE INDEX events_type ON events (type)",
    "CREATE TABLE snapshots (stream_id TEXT NOT NULL, name TEXT NOT NULL, "
    "version INTEGER NOT NULL, schema_version INTEGER NOT NULL, state BLOB NOT NULL, "
    "PRIMARY KEY (stream_id, name))",
)
# The same for PostgreSQL (eventfold's events table, without its streams table).
PG_EVENTS = """CREATE TABLE {events} (
    position bigint PRIMARY KEY, stream_id text COLLATE "C" NOT NULL, version bigint NOT NULL,
    event_id uuid NOT NULL UNIQUE, type text COLLATE "C" NOT NULL, schema_version integer NOT NULL,
    data jsonb NOT NULL, metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(), hash bytea,
    tags text[] COLLATE "C" NOT NULL DEFAULT '{{}}',
    UNIQUE (stream_id, version))"""
PG_SNAPSHOTS = """CREATE TABLE {snapshots} (
    stream_id text COLLATE "C" NOT NULL, name text NOT NULL, version bigint NOT NULL,
    schema_version integer NOT NULL, state bytea NOT NULL, PRIMARY KEY (stream_id, name))"""


@dataclass
class Backend:
    kind: str  # "sqlite" or "postgres"
    tmpdir: str
    pg_url: str = ""

    def sqlite_path(self, prefix: str) -> str:
        return os.path.join(self.tmpdir, new_name(prefix) + ".db")

    def pg_schema(self, prefix: str) -> str:
        name = new_name(prefix)
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return name

    def pg_drop(self, schema: str) -> None:
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    def pg_parts(self) -> dict[str, Any]:
        parts = urlsplit(self.pg_url)
        return {
            "host": parts.hostname or "127.0.0.1",
            "port": str(parts.port or 5432),
            "user": parts.username or "postgres",
            "password": parts.password or "",
            "dbname": (parts.path or "/postgres").lstrip("/") or "postgres",
        }


def make_tmpdir() -> str:
    # Next to the repository by default: /tmp may be a RAM disk, where fsync is free.
    base = os.environ.get("BENCH_TMPDIR") or os.path.join(os.path.dirname(__file__), ".data")
    os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix="run-", dir=base)
