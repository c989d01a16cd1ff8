"""Every statement the store sends, composed once per store, and the set-up
of each connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import postgres, sql
from psycopg.abc import Buffer
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.array import ArrayBinaryLoader

from eventfold.store.postgres.options import PostgresOptions
from eventfold.store.postgres.schema import POSITION_BITS, Names

# The id and time leave the server as their binary wire form (16 and 8
# bytes), which records keep until they are read (eventfold.store.lazy).
COLUMNS = (
    "stream_id, version, position, uuid_send(event_id), type, schema_version,"
    " data::text, metadata::text, timestamptz_send(recorded_at), tags"
)
# The bound below which a reader may look: rows of transactions older than the
# oldest one still running. Written once here; %s is the xid offset.
BOUND = f"((pg_snapshot_xmin(pg_current_snapshot())::text::bigint + %s) << {POSITION_BITS})"


_EMPTY_ARRAY = 12
"""Bytes of an empty array in the binary format (no dimensions)."""


class TagsLoader(ArrayBinaryLoader):
    """text[] as a tuple (an event's tags), the empty one without parsing."""

    def load(self, data: Buffer) -> tuple[str, ...]:  # type: ignore[override]
        if len(data) <= _EMPTY_ARRAY:
            return ()
        return tuple(super().load(data))


TEXT_ARRAY = postgres.types["text"].array_oid


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
        conn.adapters.register_loader(TEXT_ARRAY, TagsLoader)
        await conn.execute(
            "SELECT set_config('lock_timeout', %s, false),"
            " set_config('statement_timeout', %s, false),"
            " set_config('idle_in_transaction_session_timeout', %s, false),"
            " set_config('TimeZone', 'UTC', false),"
            " set_config('default_transaction_isolation', 'read committed', false)",
            values,
        )

    return configure


# A DCB query's page (Queries.dcb): ordered scans, each a page long, merged.
_DCB_BY_TYPE = {
    False: "(SELECT position AS p FROM {events} WHERE type = %s AND position >= %s"
    " AND position < {bound} ORDER BY position LIMIT %s)",
    True: "(SELECT position AS p FROM {events} WHERE type = %s AND position <= %s"
    " AND position < {bound} ORDER BY position DESC LIMIT %s)",
}
# An item with tags checks its types and its other tags in event_tags alone
# (the type is in its index): the events table is only read for the page.
_DCB_BY_TAG = {
    False: "(SELECT t.position AS p FROM {event_tags} t"
    " WHERE t.tag = %s AND t.position >= %s AND t.position < {bound}"
    " AND (cardinality(%s::text[]) = 0 OR t.type = ANY(%s::text[]))"
    " AND NOT EXISTS (SELECT 1 FROM unnest(%s::text[]) AS w(tag) WHERE NOT EXISTS"
    " (SELECT 1 FROM {event_tags} u WHERE u.tag = w.tag AND u.position = t.position))"
    " ORDER BY t.position LIMIT %s)",
    True: "(SELECT t.position AS p FROM {event_tags} t"
    " WHERE t.tag = %s AND t.position <= %s AND t.position < {bound}"
    " AND (cardinality(%s::text[]) = 0 OR t.type = ANY(%s::text[]))"
    " AND NOT EXISTS (SELECT 1 FROM unnest(%s::text[]) AS w(tag) WHERE NOT EXISTS"
    " (SELECT 1 FROM {event_tags} u WHERE u.tag = w.tag AND u.position = t.position))"
    " ORDER BY t.position DESC LIMIT %s)",
}
_DCB_PAGE = {
    False: "SELECT {columns} FROM {events} e JOIN (SELECT DISTINCT p FROM ({scans}) AS u"
    " ORDER BY p LIMIT %s) AS k ON e.position = k.p ORDER BY e.position",
    True: "SELECT {columns} FROM {events} e JOIN (SELECT DISTINCT p FROM ({scans}) AS u"
    " ORDER BY p DESC LIMIT %s) AS k ON e.position = k.p ORDER BY e.position DESC",
}


class Queries:
    """Every statement, composed once per store: identifiers quoted by
    psycopg.sql, fixed fragments as sql.SQL, values always as parameters."""

    def __init__(self, names: Names) -> None:
        columns = sql.SQL(COLUMNS)
        bound = sql.SQL(BOUND)

        def compose(template: str, **parts: sql.Composable) -> sql.Composed:
            return names.format(template, columns=columns, bound=bound, **parts)

        def q(template: str, **parts: sql.Composable) -> str:
            return compose(template, **parts).as_string(None)

        self._compose = compose

        self.append = q(
            "SELECT r_item, r_status, r_version, r_position FROM {append}("
            "%s::text[], %s::integer[], %s::integer[], %s::bigint[], %s::integer[],"
            " %s::uuid[], %s::text[], %s::integer[], %s::text[], %s::text[], %s::text[],"
            " %s::integer[], %s::boolean[], %s::text)"
        )
        self.append_one = q(
            "SELECT r_item, r_status, r_version, r_position FROM {append_one}("
            "%s::text, %s::bigint, %s::uuid[], %s::text[], %s::integer[], %s::text[],"
            " %s::text[], %s::text[], %s::integer[], %s::boolean[], %s::text)"
        )
        self.append_events = q(
            "SELECT r_item, r_status, r_position FROM {append_events}("
            "%s::integer[], %s::integer[], %s::boolean[], %s::boolean[], %s::bigint[],"
            " %s::uuid[], %s::text[], %s::integer[], %s::text[], %s::text[], %s::text[],"
            " %s::text[], %s::text[], %s::text[], %s::text[], %s::integer[], %s::boolean[],"
            " %s::text)"
        )
        self._q = q
        self._dcb: dict[tuple[int, int, bool], str] = {}
        self.dcb_all = {
            False: q(
                "SELECT {columns} FROM {events} WHERE position >= %s AND position < {bound}"
                " ORDER BY position LIMIT %s"
            ),
            True: q(
                "SELECT {columns} FROM {events} WHERE position <= %s AND position < {bound}"
                " ORDER BY position DESC LIMIT %s"
            ),
        }
        self.by_ids = q(
            "SELECT {columns} FROM {events} WHERE position = ANY(ARRAY("
            "SELECT position FROM {event_ids} WHERE event_id = ANY(%s::uuid[])))"
        )
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
            " data::text, metadata::text, hash, tags FROM {events}"
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

    def dcb(self, type_scans: int, tag_scans: int, backwards: bool) -> str:
        """A page of a DCB query: the union of ``type_scans`` ordered scans
        of (type, position) (parameters: type, position, offset, limit) and
        ``tag_scans`` of event_tags (tag, position) (parameters: tag,
        position, offset, types, types, other tags, limit), then the offset
        and the page size: each scan stops after a page, repeats are
        dropped, and only positions a whole-log reader may see are read."""
        key = (type_scans, tag_scans, backwards)
        found = self._dcb.get(key)
        if found is None:
            found = self._dcb[key] = self._dcb_page(*key)
        return found

    def _dcb_page(self, type_scans: int, tag_scans: int, backwards: bool) -> str:
        scans = [self._compose(_DCB_BY_TYPE[backwards])] * type_scans
        scans += [self._compose(_DCB_BY_TAG[backwards])] * tag_scans
        return self._q(_DCB_PAGE[backwards], scans=sql.SQL(" UNION ALL ").join(scans))
