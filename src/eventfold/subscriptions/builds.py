"""Bookkeeping inside a read model database: which builds of each projection
exist, how far each got (its checkpoint), and which one queries read (the
pointer). Every function here runs inside a transaction the caller opened, so
a checkpoint moves in the same transaction as the read-model rows it covers,
and the pointer moves atomically.

    eventfold_projection(name, active_build, effects_position, builds, updated_at)
    eventfold_build(name, build, version, suffix, tables, indexes, state, position,
                    handled, as_of_position, as_of_time, created_at, updated_at,
                    activated_at)
    eventfold_checkpoint(name, position, updated_at)
    eventfold_projection_pause(name, paused_by, paused_at)

A build's tables are named ``<table>_<suffix>`` (``order_summaries_v2``); its
state goes building -> active -> retired -> dropped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from eventfold.errors import ProjectionSuperseded, ReadModelError
from eventfold.subscriptions.batching import BatchingTx
from eventfold.subscriptions.projection import Projection
from eventfold.subscriptions.readmodel import BuildTx, Connection
from eventfold.subscriptions.sqltemplate import check_name

State = Literal["building", "active", "retired", "dropped"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS eventfold_projection (
        name TEXT PRIMARY KEY,
        active_build INTEGER,
        effects_position BIGINT NOT NULL,
        builds INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS eventfold_build (
        name TEXT NOT NULL,
        build INTEGER NOT NULL,
        version INTEGER NOT NULL,
        suffix TEXT NOT NULL,
        tables TEXT NOT NULL,
        indexes TEXT NOT NULL,
        state TEXT NOT NULL,
        position BIGINT NOT NULL,
        handled BIGINT NOT NULL,
        as_of_position BIGINT,
        as_of_time TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        activated_at TEXT,
        PRIMARY KEY (name, build)
    )""",
    """CREATE TABLE IF NOT EXISTS eventfold_checkpoint (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS eventfold_projection_pause (
        name TEXT PRIMARY KEY,
        paused_by TEXT,
        paused_at TEXT NOT NULL
    )""",
)
_SETUP_LOCK = 7_243_019_558  # pg advisory lock key: concurrent first setups


def now_text() -> str:
    return datetime.now(UTC).isoformat()


def ensure_schema(conn: Connection) -> None:
    if conn.dialect == "postgresql":
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_SETUP_LOCK,))
    for statement in _SCHEMA:
        conn.execute(statement)


class Build(msgspec.Struct, frozen=True):
    """One build of a projection: its physical tables and its checkpoint."""

    name: str
    build: int
    version: int
    suffix: str
    tables: tuple[str, ...]
    indexes: tuple[str, ...]
    state: State
    position: int
    handled: int
    as_of_position: int | None
    as_of_time: str | None
    created_at: str
    updated_at: str
    activated_at: str | None

    def physical(self, logical: str) -> str:
        return f"{check_name(logical, 'table')}_{self.suffix}"

    def tx(
        self, conn: Connection, rendered: dict[str, str] | None = None, *, batched: bool = False
    ) -> BuildTx:
        """SQL over this build's tables. ``rendered`` is a template cache to
        reuse across transactions on the same kind of connection; ``batched``
        gives a ``BatchingTx`` (eventfold.subscriptions.batching)."""
        tables = {t: conn.quote(self.physical(t)) for t in self.tables}
        kind = BatchingTx if batched else BuildTx
        return kind(conn, tables, f"projection {self.name!r} build {self.build}", rendered)

    @property
    def frozen_as_of(self) -> bool:
        return self.as_of_position is not None or self.as_of_time is not None


# Written out in each statement: no SQL is assembled from pieces at run time.
_SELECT_BUILD = (
    "SELECT name, build, version, suffix, tables, indexes, state, position, handled, "
    "as_of_position, as_of_time, created_at, updated_at, activated_at FROM eventfold_build "
)
_GET_BUILD = _SELECT_BUILD + "WHERE name = ? AND build = ?"
_GET_BUILD_LOCKED = _GET_BUILD + " FOR UPDATE"
_LIST_BUILDS = _SELECT_BUILD + "ORDER BY name, build"
_LIST_BUILDS_OF = _SELECT_BUILD + "WHERE name = ? ORDER BY build"
_INSERT_BUILD = (
    "INSERT INTO eventfold_build (name, build, version, suffix, tables, indexes, state, "
    "position, handled, as_of_position, as_of_time, created_at, updated_at, activated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_GET_PROJECTION = (
    "SELECT name, active_build, effects_position, builds FROM eventfold_projection WHERE name = ?"
)
_GET_PROJECTION_LOCKED = _GET_PROJECTION + " FOR UPDATE"


def _build(row: Any) -> Build:
    values = list(row)
    values[4] = tuple(msgspec.json.decode(values[4]))
    values[5] = tuple(msgspec.json.decode(values[5]))
    return Build(*values)


class ProjectionRow(msgspec.Struct, frozen=True):
    name: str
    active_build: int | None
    effects_position: int
    builds: int


def projection_row(conn: Connection, name: str, *, lock: bool = False) -> ProjectionRow | None:
    locking = lock and conn.dialect == "postgresql"
    row = conn.execute(_GET_PROJECTION_LOCKED if locking else _GET_PROJECTION, (name,)).fetchone()
    return None if row is None else ProjectionRow(*row)


def get_build(conn: Connection, name: str, build: int, *, lock: bool = False) -> Build | None:
    locking = lock and conn.dialect == "postgresql"
    row = conn.execute(_GET_BUILD_LOCKED if locking else _GET_BUILD, (name, build)).fetchone()
    return None if row is None else _build(row)


def list_builds(conn: Connection, name: str | None = None) -> list[Build]:
    rows = conn.execute(_LIST_BUILDS) if name is None else conn.execute(_LIST_BUILDS_OF, (name,))
    return [_build(row) for row in rows.fetchall()]


def active_build(conn: Connection, name: str) -> Build | None:
    """The build queries read now: the pointer row, read in the caller's transaction."""
    row = projection_row(conn, name)
    if row is None or row.active_build is None:
        return None
    return get_build(conn, name, row.active_build)


def _create(
    conn: Connection,
    projection: Projection,
    *,
    effects_start: int,
    as_of_position: int | None = None,
    as_of_time: str | None = None,
) -> Build:
    name, version = projection.name, projection.version
    now = now_text()
    row = projection_row(conn, name, lock=True)
    if row is None:
        conn.execute(
            "INSERT INTO eventfold_projection (name, active_build, effects_position, builds, "
            "updated_at) VALUES (?, NULL, ?, 0, ?)",
            (name, effects_start, now),
        )
        number = 1
    else:
        number = row.builds + 1
    same_version = any(b.version == version for b in list_builds(conn, name))
    suffix = f"v{version}_{number}" if same_version else f"v{version}"
    conn.execute(
        "UPDATE eventfold_projection SET builds = ?, updated_at = ? WHERE name = ?",
        (number, now, name),
    )
    build = Build(
        name=name,
        build=number,
        version=version,
        suffix=suffix,
        tables=tuple(projection.tables),
        indexes=tuple(projection.indexes),
        state="building",
        position=0,
        handled=0,
        as_of_position=as_of_position,
        as_of_time=as_of_time,
        created_at=now,
        updated_at=now,
        activated_at=None,
    )
    tx = build.tx(conn)
    for table, columns in projection.tables.items():
        tx.execute(f"CREATE TABLE {{{table}}} ({columns})")
    for index_name, index in projection.indexes.items():
        unique = "UNIQUE " if index.unique else ""
        conn.raw_execute(
            f"CREATE {unique}INDEX {conn.quote(f'{index_name}_{suffix}')} "
            f"ON {tx.tables[index.table]} ({index.columns})"
        )
    conn.execute(
        _INSERT_BUILD,
        (
            name,
            number,
            version,
            suffix,
            msgspec.json.encode(build.tables).decode(),
            msgspec.json.encode(build.indexes).decode(),
            "building",
            0,
            0,
            as_of_position,
            as_of_time,
            now,
            now,
            None,
        ),
    )
    return build


def drop_build(conn: Connection, build: Build) -> None:
    """Drop a build's tables (its indexes go with them) and mark it dropped."""
    for table in reversed(build.tables):
        conn.raw_execute(f"DROP TABLE IF EXISTS {conn.quote(build.physical(table))}")
    conn.execute(
        "UPDATE eventfold_build SET state = 'dropped', updated_at = ? WHERE name = ? AND build = ?",
        (now_text(), build.name, build.build),
    )


def drop_retired(conn: Connection, name: str) -> int:
    """Drop the tables of ``name``'s retired builds now, rather than at the next
    switch (after a subject was forgotten); returns how many were dropped."""
    retired = [b for b in list_builds(conn, name) if b.state == "retired"]
    for build in retired:
        drop_build(conn, build)
    return len(retired)


def _superseded(projection: Projection, active: Build | None) -> None:
    if active is not None and active.version > projection.version:
        raise ProjectionSuperseded(projection.name, projection.version, active.version)


def resolve(
    conn: Connection,
    projection: Projection,
    mode: Literal["run", "rebuild"],
    effects_start: int,
) -> Build:
    """The build to work on. ``run``: the active build if it is this version,
    else a build of this version in progress, else a new one (dropping
    unfinished builds of older versions). ``rebuild``: a build of this version
    in progress, else a new one, whatever is active."""
    row = projection_row(conn, projection.name, lock=True)
    active = (
        get_build(conn, projection.name, row.active_build)
        if row is not None and row.active_build is not None
        else None
    )
    _superseded(projection, active)
    if mode == "run" and active is not None and active.version == projection.version:
        return active
    unfinished = [
        b
        for b in list_builds(conn, projection.name)
        if b.state == "building" and not b.frozen_as_of
    ]
    same = [b for b in unfinished if b.version == projection.version]
    if same:
        return same[-1]
    for old in unfinished:
        if old.version < projection.version:
            drop_build(conn, old)
    return _create(conn, projection, effects_start=effects_start)


def create_as_of(
    conn: Connection,
    projection: Projection,
    *,
    as_of_position: int | None,
    as_of_time: str | None,
) -> Build:
    if projection_row(conn, projection.name, lock=True) is not None:
        raise ReadModelError(
            f"this read model already holds projection {projection.name!r}: "
            "build as of a past moment into a database of its own",
            projection=projection.name,
        )
    return _create(
        conn,
        projection,
        effects_start=0,
        as_of_position=as_of_position,
        as_of_time=as_of_time,
    )


def advance(conn: Connection, build: Build, position: int, handled: int) -> None:
    """Move the build's checkpoint: call it in the transaction that applied the events."""
    conn.execute(
        "UPDATE eventfold_build SET position = ?, handled = handled + ?, updated_at = ? "
        "WHERE name = ? AND build = ?",
        (position, handled, now_text(), build.name, build.build),
    )


def activate(conn: Connection, build: Build) -> Build:
    """Point queries at ``build`` (which has caught up). The build it replaces
    is retired but keeps its tables until the next switch, so that a query
    that read the old pointer just before still finds them."""
    row = projection_row(conn, build.name, lock=True)
    active = (
        get_build(conn, build.name, row.active_build)
        if row is not None and row.active_build is not None
        else None
    )
    if active is not None and active.version > build.version:
        raise ProjectionSuperseded(build.name, build.version, active.version)
    now = now_text()
    for old in list_builds(conn, build.name):
        if old.state == "retired":
            drop_build(conn, old)
    if active is not None and active.build != build.build:
        conn.execute(
            "UPDATE eventfold_build SET state = 'retired', updated_at = ? "
            "WHERE name = ? AND build = ?",
            (now, build.name, active.build),
        )
    conn.execute(
        "UPDATE eventfold_build SET state = 'active', activated_at = ?, updated_at = ? "
        "WHERE name = ? AND build = ?",
        (now, now, build.name, build.build),
    )
    conn.execute(
        "UPDATE eventfold_projection SET active_build = ?, updated_at = ? WHERE name = ?",
        (build.build, now, build.name),
    )
    current = get_build(conn, build.name, build.build)
    assert current is not None
    return current


def advance_effects(conn: Connection, build: Build, position: int) -> bool:
    """Record that effects ran up to ``position``, if ``build`` is still the active one."""
    cur = conn.execute(
        "UPDATE eventfold_projection SET effects_position = ?, updated_at = ? "
        "WHERE name = ? AND active_build = ? AND effects_position < ?",
        (position, now_text(), build.name, build.build, position),
    )
    return cur.rowcount > 0


# --- pausing ------------------------------------------------------------------------------


class Pause(msgspec.Struct, frozen=True):
    """A projection paused: by whom (None: not known) and when."""

    name: str
    paused_by: str | None
    paused_at: str


_LOCK_BUILDS_OF = "SELECT build FROM eventfold_build WHERE name = ? FOR UPDATE"


def pause(conn: Connection, name: str, by: str | None) -> Pause:
    """Pause ``name`` (kept if it already is); the pause in effect.

    A live worker checks ``is_paused`` inside each batch's transaction, under
    its build's lock, so no batch commits once this transaction has: on
    PostgreSQL it first takes the projection's build locks, waiting for a
    batch being applied (SQLite runs one write transaction at a time)."""
    if conn.dialect == "postgresql":
        conn.execute(_LOCK_BUILDS_OF, (name,)).fetchall()
    conn.execute(
        "INSERT INTO eventfold_projection_pause (name, paused_by, paused_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO NOTHING",
        (name, by, now_text()),
    )
    found = paused(conn).get(name)
    assert found is not None
    return found


def resume(conn: Connection, name: str) -> bool:
    """Resume ``name``; whether it was paused."""
    cur = conn.execute("DELETE FROM eventfold_projection_pause WHERE name = ?", (name,))
    return cur.rowcount > 0


def is_paused(conn: Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM eventfold_projection_pause WHERE name = ?", (name,))
    return row.fetchone() is not None


def paused(conn: Connection) -> dict[str, Pause]:
    rows = conn.execute(
        "SELECT name, paused_by, paused_at FROM eventfold_projection_pause ORDER BY name"
    ).fetchall()
    return {row[0]: Pause(row[0], row[1], row[2]) for row in rows}


# --- plain checkpoints (subscriptions, process managers) ----------------------------------


def load_checkpoint(conn: Connection, name: str) -> int:
    row = conn.execute(
        "SELECT position FROM eventfold_checkpoint WHERE name = ?", (name,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def save_checkpoint(conn: Connection, name: str, position: int) -> None:
    conn.execute(
        "INSERT INTO eventfold_checkpoint (name, position, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position, "
        "updated_at = excluded.updated_at",
        (name, position, now_text()),
    )
