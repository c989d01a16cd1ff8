"""Every statement the store sends, composed once per store, and the set-up
of each connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from eventfold.store.postgres.options import PostgresOptions
from eventfold.store.postgres.schema import POSITION_BITS, Names

# The id and time leave the server as their binary wire form (16 and 8
# bytes), which records keep until they are read (eventfold.store.lazy).
COLUMNS = (
    "stream_id, version, position, uuid_send(event_id), type, schema_version,"
    " data::text, metadata::text, timestamptz_send(recorded_at)"
)
# The bound below which a reader may look: rows of transactions older than the
# oldest one still running. Written once here; %s is the xid offset.
BOUND = f"((pg_snapshot_xmin(pg_current_snapshot())::text::bigint + %s) << {POSITION_BITS})"


def describe(conninfo: str) -> str:
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "PostgreSQL"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or ""
    return f"postgresql://{host}:{port}/{dbname}"


def configurer(
    settings: PostgresOptions,
) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]:
    def ms(seconds: float) -> str:
        return str(round(seconds * 1000))

    values = [
        ms(settings.lock_timeout),
        ms(settings.statement_timeout),
        ms(settings.idle_in_transaction_session_timeout),
    ]

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(
            "SELECT set_config('lock_timeout', %s, false),"
            " set_config('statement_timeout', %s, false),"
            " set_config('idle_in_transaction_session_timeout', %s, false),"
            " set_config('TimeZone', 'UTC', false),"
            " set_config('default_transaction_isolation', 'read committed', false)",
            values,
        )

    return configure


class Queries:
    """Every statement, composed once per store: identifiers quoted by
    psycopg.sql, fixed fragments as sql.SQL, values always as parameters."""

    def __init__(self, names: Names) -> None:
        columns = sql.SQL(COLUMNS)
        bound = sql.SQL(BOUND)

        def q(template: str, **parts: sql.Composable) -> str:
            return names.format(template, columns=columns, bound=bound, **parts).as_string(None)

        self.append = q(
            "SELECT r_item, r_status, r_version, r_position FROM {append}("
            "%s::text[], %s::integer[], %s::integer[], %s::bigint[], %s::integer[],"
            " %s::uuid[], %s::text[], %s::integer[], %s::text[], %s::text[], %s::text)"
        )
        self.append_one = q(
            "SELECT r_item, r_status, r_version, r_position FROM {append_one}("
            "%s::text, %s::bigint, %s::uuid[], %s::text[], %s::integer[], %s::text[],"
            " %s::text[], %s::text)"
        )
        self.by_ids = q("SELECT {columns} FROM {events} WHERE event_id = ANY(%s::uuid[])")
        self.stream_forward = q(
            "SELECT {columns} FROM {events}"
            " WHERE stream_id = %s AND version >= %s AND version <= %s"
            " ORDER BY version LIMIT %s"
        )
        self.stream_backward = q(
            "SELECT {columns} FROM {events}"
            " WHERE stream_id = %s AND version >= %s AND version <= %s"
            " ORDER BY version DESC LIMIT %s"
        )
        # Many forward pages in one statement: one lateral scan per request,
        # rows tagged with the request's ordinal.
        self.stream_pages = q(
            "SELECT r.i, e.* FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::bigint[])"
            " WITH ORDINALITY AS r(stream_id, low, high, lim, i)"
            " CROSS JOIN LATERAL (SELECT {columns} FROM {events} AS x"
            " WHERE x.stream_id = r.stream_id AND x.version >= r.low AND x.version <= r.high"
            " ORDER BY x.version LIMIT r.lim) AS e"
            " ORDER BY r.i, e.version"
        )
        self.stream_data = q(
            "SELECT type, schema_version, data::text FROM {events}"
            " WHERE stream_id = %s AND version >= %s AND version <= %s"
            " ORDER BY version LIMIT %s"
        )
        self.stream_version = q("SELECT version FROM {streams} WHERE stream_id = %s")
        self.head = q("SELECT coalesce(max(position), 0) FROM {events} WHERE position < {bound}")
        self.bound = q("SELECT {bound}")
        by_category = sql.SQL(" AND split_part(stream_id, '-', 1) = ANY(%s::text[])")
        by_type = sql.SQL(" AND type = ANY(%s::text[])")
        self._log: dict[tuple[bool, bool], str] = {}
        for cats in (False, True):
            for kinds in (False, True):
                self._log[cats, kinds] = q(
                    "SELECT {columns} FROM {events}"
                    " WHERE position >= %s AND position < {bound}{cats}{kinds}"
                    " ORDER BY position LIMIT %s",
                    cats=by_category if cats else sql.SQL(""),
                    kinds=by_type if kinds else sql.SQL(""),
                )
        self.chain = q(
            "SELECT stream_id, version, position, event_id, type, schema_version,"
            " data::text, metadata::text, hash FROM {events}"
            " WHERE (stream_id, version) > (%s, %s) ORDER BY stream_id, version LIMIT %s"
        )
        self.save_snapshot = q(
            "INSERT INTO {snapshots} (stream_id, name, version, schema_version, state)"
            " VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (stream_id, name) DO UPDATE SET version = EXCLUDED.version,"
            " schema_version = EXCLUDED.schema_version, state = EXCLUDED.state,"
            " saved_at = now()"
        )
        self.load_snapshot = q(
            "SELECT version, schema_version, state FROM {snapshots}"
            " WHERE stream_id = %s AND name = %s"
        )

    def log(self, categories: bool, types: bool) -> str:
        return self._log[categories, types]
