"""The events table partitioned by range of position (schema version 9).

A position is ``(transaction id + offset) << 20 | index``, so a range of
positions is a range of write transactions of the cluster: a partition holds
``partition_xids`` consecutive transactions (a setting of the store, 2**24 by
default: 16.8 million write transactions, days to weeks of a busy cluster,
so that the partitions a store keeps attached stay few (every read of a
stream visits each one's small index) while each is a unit of archiving).
Ranges are aligned to multiples of the width, so a partition's name,
``events_<first transaction>``, tells its range.

Partitions are created ahead of need: ``ensure_partitions``, called by every
append under the lock that hands out positions, creates the next partition
as soon as a position falls into the newest one (and the one holding a
position that jumped past every partition, e.g. after a raised offset). The
ledger table ``partitions`` lists every partition with its range, attached
or detached.

Uniqueness. A partitioned table's unique indexes must contain the partition
key, so neither ``event_id`` nor ``(stream_id, version)`` can be unique over
the whole table by index. ``event_ids`` (not partitioned) holds every stored
event id with its position under a primary key; a statement trigger on
``events`` fills it from every insert (the append functions' and anyone
else's) and empties it on delete, so a duplicate id fails in any partition,
and the append functions look ids up there. ``(stream_id, version)``: the
append functions take a stream's next version from ``streams`` under the
stream's advisory lock; each partition has a unique index on it; and the same
trigger refuses any inserted row whose version is not above its stream's head
(a direct insert repeating an old version in another partition).

Migrating a store of schema version 8 renames the old table to ``events_0``
and attaches it, whole, as the first partition: from position 0 up to the
first aligned bound above the migration's own transaction. Its rows are not
copied; attaching reads them once to check the bound, and their ids are
copied into ``event_ids``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import starmap
from typing import TYPE_CHECKING, Any

import msgspec
import psycopg
from psycopg import sql

from eventfold.errors import InvalidArgument
from eventfold.store.api import RecordedEvent
from eventfold.store.cuts import Cut, check_key, cut_time
from eventfold.store.lazy import StoredEvent
from eventfold.store.postgres.errors import translate
from eventfold.store.postgres.queries import COLUMNS
from eventfold.store.postgres.schema import POSITION_BITS, Names

if TYPE_CHECKING:
    from eventfold.store.postgres.store import PostgresStore

Conn = psycopg.AsyncConnection[Any]

PARTITION_XIDS = 1 << 24
"""Write transactions per partition (the default of the ``partition_xids`` setting)."""

# ensure_partitions(p): make sure the partition after the one holding p exists.
# The common case is one primary-key read of the mark (the low bound of the
# newest partition); creating takes a transaction-level advisory lock and
# checks again, so two appends never create the same partition.
ENSURE = """
CREATE OR REPLACE FUNCTION {ensure}(p bigint) RETURNS void
LANGUAGE plpgsql AS $f$
DECLARE
    mark bigint;
    width bigint;
    lo bigint;
    part text;
BEGIN
    SELECT value INTO mark FROM {settings} WHERE key = 'partition_mark';
    IF p < mark THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock({lock});
    SELECT value INTO mark FROM {settings} WHERE key = 'partition_mark';
    IF p < mark THEN
        RETURN;
    END IF;
    SELECT value INTO width FROM {settings} WHERE key = 'partition_xids';
    lo := ((p >> {bits}) / width) * width;
    FOREACH lo IN ARRAY ARRAY[lo, lo + width] LOOP
        part := 'events_' || lo;
        IF to_regclass(format('%I.%I', {schema_name}, part)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I.%I (LIKE %I.events INCLUDING DEFAULTS'
                           ' INCLUDING CONSTRAINTS)', {schema_name}, part, {schema_name});
            EXECUTE format('CREATE UNIQUE INDEX %I ON %I.%I (stream_id, version)',
                           part || '_stream_version', {schema_name}, part);
            EXECUTE format('ALTER TABLE %I.events ATTACH PARTITION %I.%I'
                           ' FOR VALUES FROM (%s) TO (%s)', {schema_name}, {schema_name}, part,
                           lo << {bits}, (lo + width) << {bits});
            INSERT INTO {partitions} (name, low, high)
            VALUES (part, lo << {bits}, (lo + width) << {bits});
        END IF;
    END LOOP;
    -- lo is now the newest partition's: the next is made when a position reaches it
    UPDATE {settings} SET value = greatest(value, lo << {bits}) WHERE key = 'partition_mark';
END
$f$
"""

# After every insert into events: its ids into event_ids (a duplicate fails on
# the primary key), and no row at or below its stream's head version.
INSERTED = """
CREATE OR REPLACE FUNCTION {inserted}() RETURNS trigger
LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO {event_ids} (event_id, position) SELECT event_id, position FROM added;
    IF EXISTS (SELECT 1 FROM added a JOIN {streams} s ON s.stream_id = a.stream_id
                WHERE a.version <= s.version) THEN
        RAISE EXCEPTION 'an event at or below its stream''s current version'
          USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NULL;
END
$f$
"""

DELETED = """
CREATE OR REPLACE FUNCTION {deleted}() RETURNS trigger
LANGUAGE plpgsql AS $f$
BEGIN
    DELETE FROM {event_ids} i USING removed r WHERE i.event_id = r.event_id;
    RETURN NULL;
END
$f$
"""


class _Names:
    def __init__(self, names: Names) -> None:
        s = names.schema_name
        self.parts: dict[str, sql.Composable] = {
            "schema_name": sql.Literal(s),
            "events": names.events,
            "streams": names.streams,
            "settings": names.settings,
            "legacy": sql.Identifier(s, "events_0"),
            "event_ids": names.event_ids,
            "partitions": sql.Identifier(s, "partitions"),
            "ensure": names.ensure_partitions,
            "inserted": sql.Identifier(s, "events_inserted"),
            "deleted": sql.Identifier(s, "events_deleted"),
            "bits": sql.Literal(POSITION_BITS),
            "lock": sql.Literal(names.lock_key ^ 0x5EED),
        }

    def q(self, template: str, **more: sql.Composable) -> sql.Composed:
        return sql.SQL(template).format(**self.parts, **more)


async def install(conn: psycopg.AsyncConnection[Any], names: Names) -> None:
    """Create or replace ensure_partitions and the trigger functions."""
    n = _Names(names)
    for template in (ENSURE, INSERTED, DELETED):
        await conn.execute(n.q(template))


async def partition_events(conn: psycopg.AsyncConnection[Any], names: Names) -> None:
    """Migration 9: the events table becomes partitioned, its old table the
    first partition (see the module's docstring)."""
    n = _Names(names)
    schema = names.schema_name
    steps = [
        "ALTER TABLE {events} RENAME TO events_0",
        "ALTER INDEX {schema}.events_pkey RENAME TO events_0_pkey",
        "ALTER TABLE {legacy} RENAME CONSTRAINT events_stream_version TO events_0_stream_version",
        "ALTER INDEX {schema}.events_type_position RENAME TO events_0_type_position",
        "CREATE TABLE {events} (LIKE {legacy} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        " PARTITION BY RANGE (position)",
        "ALTER TABLE {events} ADD CONSTRAINT events_pkey PRIMARY KEY (position)",
        "CREATE INDEX events_type_position ON {events} (type, position)",
        "CREATE TABLE {event_ids} (event_id uuid PRIMARY KEY, position bigint NOT NULL)",
        "INSERT INTO {event_ids} (event_id, position) SELECT event_id, position FROM {legacy}",
        "ALTER TABLE {legacy} DROP CONSTRAINT events_event_id",
        """CREATE TABLE {partitions} (
            name text COLLATE "C" PRIMARY KEY,
            low bigint NOT NULL,
            high bigint NOT NULL,
            detached_at timestamptz,
            CHECK (low < high))""",
        "INSERT INTO {settings} (key, value) VALUES ('partition_xids', {width})",
    ]
    for step in steps:
        await conn.execute(
            n.q(step, schema=sql.Identifier(schema), width=sql.Literal(PARTITION_XIDS))
        )
    # the first bound above every position handed out so far or by this transaction
    cur = await conn.execute(
        n.q(
            "SELECT ((pg_current_xact_id()::text::bigint + s.value) / {width} + 1) * {width}"
            " FROM {settings} s WHERE s.key = 'xid_offset'",
            width=sql.Literal(PARTITION_XIDS),
        )
    )
    row = await cur.fetchone()
    assert row is not None
    bound = int(row[0]) << POSITION_BITS
    await conn.execute(
        n.q(
            "ALTER TABLE {events} ATTACH PARTITION {legacy} FOR VALUES FROM (0) TO ({bound})",
            bound=sql.Literal(bound),
        )
    )
    await conn.execute(
        n.q(
            "INSERT INTO {partitions} (name, low, high) VALUES ('events_0', 0, {bound})",
            bound=sql.Literal(bound),
        )
    )
    await conn.execute(
        n.q(
            "INSERT INTO {settings} (key, value) VALUES ('partition_mark', {bound})",
            bound=sql.Literal(bound),
        )
    )
    await install(conn, names)
    for step in (
        "CREATE TRIGGER events_inserted AFTER INSERT ON {events}"
        " REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION {inserted}()",
        "CREATE TRIGGER events_deleted AFTER DELETE ON {events}"
        " REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION {deleted}()",
        "SELECT {ensure}({bound})",
    ):
        await conn.execute(n.q(step, bound=sql.Literal(bound)))


# --- the operations --------------------------------------------------------------------


class Partition(msgspec.Struct, frozen=True):
    """One partition of the events table: positions ``low <= p < high``,
    ``events`` rows, attached to the events table or detached (an archive
    table in the store's schema, readable with :func:`read_detached`)."""

    name: str
    low: int
    high: int
    events: int
    attached: bool


async def _ledger(conn: Conn, names: Names) -> list[tuple[str, int, int, bool]]:
    cur = await conn.execute(
        _Names(names).q(
            "SELECT name, low, high, detached_at IS NULL FROM {partitions} ORDER BY low"
        )
    )
    return [(str(r[0]), int(r[1]), int(r[2]), bool(r[3])) for r in await cur.fetchall()]


def _table(names: Names, name: str) -> sql.Identifier:
    return sql.Identifier(names.schema_name, name)


async def list_partitions(store: PostgresStore) -> list[Partition]:
    """Every partition, attached or detached, in position order, with its row count."""
    names = store._names
    try:
        async with store._pool.connection() as conn:
            out = []
            for name, low, high, attached in await _ledger(conn, names):
                cur = await conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(_table(names, name))
                )
                row = await cur.fetchone()
                out.append(Partition(name, low, high, int(row[0]) if row else 0, attached))
            return out
    except psycopg.Error as exc:
        raise translate(exc, "list partitions") from None


async def detach_before(
    store: PostgresStore, position: int, *, key: bytes | None = None
) -> list[str]:
    """Detach every attached partition whose positions all lie below
    ``position``, in one transaction: their rows leave the log (reads, event
    ids, tags) and stay, whole, in a table of their own (the archive), and
    every stream they cut gets a cut marker (reason ``archived``, signed with
    ``key`` if given; ``eventfold.store.cuts``), so that ``verify`` checks
    what remains of it from there. ``position`` may not pass the bound below
    which the log is final (no transaction still running can write there).
    Returns the names detached."""
    key = check_key(key)
    names = store._names
    n = _Names(names)
    try:
        async with store._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                sql.SQL(
                    "SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint + %s) << {}"
                ).format(sql.Literal(POSITION_BITS)),
                [store._offset],
            )
            row = await cur.fetchone()
            bound = int(row[0]) if row else 0
            if position > bound:
                raise InvalidArgument(
                    f"detach: position {position} is above {bound}, below which the log"
                    " is final (transactions still running may write above it)",
                    argument="position",
                )
            await conn.execute(n.q("SELECT pg_advisory_xact_lock({lock})"))
            detached = []
            for name, _low, high, attached in await _ledger(conn, names):
                if not attached or high > position:
                    continue
                part = _table(names, name)
                await _record_cuts(conn, names, part, f"postgresql:{names.schema_name}.{name}", key)
                for step in (
                    "DELETE FROM {event_ids} i USING {part} p WHERE i.event_id = p.event_id",
                    "DELETE FROM {tags} t USING {part} p"
                    " WHERE t.position = p.position AND t.tag = ANY (p.tags)",
                    "ALTER TABLE {events} DETACH PARTITION {part}",
                ):
                    await conn.execute(n.q(step, part=part, tags=names.event_tags))
                await conn.execute(
                    n.q("UPDATE {partitions} SET detached_at = now() WHERE name = %s"), [name]
                )
                detached.append(name)
            return detached
    except psycopg.Error as exc:
        raise translate(exc, "detach partitions") from None


async def _record_cuts(
    conn: Conn, names: Names, part: sql.Identifier, archive: str, key: bytes | None
) -> None:
    """A cut for each stream with events in ``part``: its chain goes on after
    the last of them (events appended without a stream are chains of their
    own and need none). A stream already cut at or above that version (by a
    truncation) keeps its cut."""
    cur = await conn.execute(
        names.format(
            "SELECT DISTINCT ON (p.stream_id) p.stream_id, p.version, p.hash"
            " FROM {part} p JOIN {streams} s ON s.stream_id = p.stream_id"
            " WHERE p.stream_id <> '' AND p.version >= s.first_version"
            " ORDER BY p.stream_id, p.version DESC",
            part=part,
        )
    )
    at = cut_time()
    cuts = [
        Cut(str(r[0]), int(r[1]) + 1, bytes(r[2]), "archived", at, archive).signed(key)
        for r in await cur.fetchall()
    ]
    if not cuts:
        return
    await conn.execute(
        names.format(
            "INSERT INTO {stream_cuts} (stream_id, before_version, anchor, reason, at, archive,"
            " signature) SELECT u.s, u.b, u.a, 'archived', %s, %s, u.g"
            " FROM unnest(%s::text[], %s::bigint[], %s::bytea[], %s::text[]) AS u(s, b, a, g)"
        ),
        [
            at,
            archive,
            [c.stream_id for c in cuts],
            [c.before_version for c in cuts],
            [c.anchor for c in cuts],
            [c.signature for c in cuts],
        ],
    )
    await conn.execute(
        names.format(
            "UPDATE {streams} s SET first_version = greatest(s.first_version, u.b)"
            " FROM unnest(%s::text[], %s::bigint[]) AS u(s, b) WHERE s.stream_id = u.s"
        ),
        [[c.stream_id for c in cuts], [c.before_version for c in cuts]],
    )


async def _detached(conn: Conn, names: Names, name: str) -> sql.Identifier:
    for known, _low, _high, attached in await _ledger(conn, names):
        if known == name:
            if attached:
                raise InvalidArgument(f"partition {name!r} is attached", argument="name")
            return _table(names, name)
    raise InvalidArgument(f"no partition named {name!r}", argument="name")


async def read_detached(store: PostgresStore, name: str) -> AsyncIterator[RecordedEvent]:
    """The events of the detached partition ``name``, in position order."""
    names = store._names
    after = -1
    query = sql.SQL("SELECT {} FROM {} WHERE position > %s ORDER BY position LIMIT 1000")
    while True:
        try:
            async with store._pool.connection() as conn:
                table = await _detached(conn, names, name)
                statement = query.format(sql.SQL(COLUMNS), table)
                cur = await conn.execute(statement, [after], binary=True)
                rows = await cur.fetchall()
        except psycopg.Error as exc:
            raise translate(exc, "read a detached partition") from None
        for record in starmap(StoredEvent, rows):
            yield record
        if len(rows) < 1000:
            return
        after = int(rows[-1][2])


async def drop_detached(store: PostgresStore, name: str) -> None:
    """Drop the detached partition ``name``: its events are gone for good."""
    names = store._names
    n = _Names(names)
    try:
        async with store._pool.connection() as conn, conn.transaction():
            await conn.execute(n.q("SELECT pg_advisory_xact_lock({lock})"))
            table = await _detached(conn, names, name)
            await conn.execute(sql.SQL("DROP TABLE {}").format(table))
            await conn.execute(n.q("DELETE FROM {partitions} WHERE name = %s"), [name])
    except psycopg.Error as exc:
        raise translate(exc, "drop a detached partition") from None
