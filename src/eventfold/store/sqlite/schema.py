"""The SQLite schema, and opening a file: create it, check it, or refuse it.

Opening never writes to a file before it is known to be empty or an eventfold
store, so a foreign or damaged database is left exactly as it was.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path

from eventfold.errors import (
    NotAnEventStore,
    SchemaVersionError,
    StoreError,
    StoreNotFound,
    StoreTimeout,
)
from eventfold.store.sqlite.options import SYNCHRONOUS_LEVELS, SQLiteOptions

SCHEMA_VERSION = 3
"""The schema this code writes; a file with a higher number is refused, one
with a lower number is upgraded when it is opened (``_MIGRATIONS``)."""

# ``position`` is the rowid, assigned by the single writer inside its write
# transaction, so the log order is the commit order. Every index carries the
# rowid as its last column: (stream_id, version) answers "current version and
# last position of a stream" from the index alone, (category) gives category
# reads in position order. Small columns come first, the payload last, so a
# large payload never has to be stepped over to reach the others.
# ``recorded_at`` is UTC microseconds since the Unix epoch. ``hash`` is the
# event's link in its stream's hash chain (eventfold.compliance.chain).
# ``tags`` (schema 2) holds an event's tags joined by spaces (tags hold no
# whitespace), NULL for none (before the payload in a new file; after it in a
# file upgraded from schema 1, where ALTER TABLE puts it); ``event_tags``
# indexes them, one row per tag and event with the event's type, so that a
# DCB query scans (tag, position) in position order and checks the type
# without visiting the events. ``stream_cuts`` (schema 3) records every
# removal of events (eventfold.store.cuts, eventfold.store.sqlite.lifecycle).
_CUTS_TABLE = """CREATE TABLE stream_cuts (
    seq            INTEGER PRIMARY KEY,
    stream_id      TEXT    NOT NULL,
    before_version INTEGER NOT NULL,
    anchor         BLOB    NOT NULL,
    reason         TEXT    NOT NULL,
    at             INTEGER NOT NULL,
    archive        TEXT    NOT NULL,
    signature      TEXT    NOT NULL,
    log_head       INTEGER NOT NULL
)"""
_CUTS_INDEX = "CREATE INDEX stream_cuts_stream ON stream_cuts (stream_id, before_version)"
_DDL = (
    "CREATE TABLE eventfold_schema (version INTEGER NOT NULL)",
    """CREATE TABLE events (
        position       INTEGER PRIMARY KEY,
        stream_id      TEXT    NOT NULL,
        version        INTEGER NOT NULL,
        category       TEXT    NOT NULL,
        type           TEXT    NOT NULL,
        event_id       BLOB    NOT NULL,
        schema_version INTEGER NOT NULL,
        recorded_at    INTEGER NOT NULL,
        hash           BLOB    NOT NULL,
        tags           TEXT,
        metadata       TEXT    NOT NULL,
        data           TEXT    NOT NULL
    )""",
    "CREATE UNIQUE INDEX events_stream_version ON events (stream_id, version)",
    "CREATE UNIQUE INDEX events_event_id ON events (event_id)",
    "CREATE INDEX events_category ON events (category)",
    _TYPE_INDEX := "CREATE INDEX events_type ON events (type)",
    _TAGS_TABLE := """CREATE TABLE event_tags (
        tag            TEXT    NOT NULL,
        position       INTEGER NOT NULL,
        type           TEXT    NOT NULL,
        PRIMARY KEY (tag, position)
    ) WITHOUT ROWID""",
    """CREATE TABLE snapshots (
        stream_id      TEXT    NOT NULL,
        name           TEXT    NOT NULL,
        version        INTEGER NOT NULL,
        schema_version INTEGER NOT NULL,
        state          BLOB    NOT NULL,
        PRIMARY KEY (stream_id, name)
    )""",
    _CUTS_TABLE,
    _CUTS_INDEX,
)
_REQUIRED_COLUMNS = {
    "events": {
        "position",
        "stream_id",
        "version",
        "category",
        "type",
        "event_id",
        "schema_version",
        "recorded_at",
        "hash",
        "metadata",
        "data",
    },
    "snapshots": {"stream_id", "name", "version", "schema_version", "state"},
}
_REQUIRED_SINCE = {
    2: {"events": {"tags"}, "event_tags": {"tag", "position", "type"}},
    3: {
        "stream_cuts": {
            "seq",
            "stream_id",
            "before_version",
            "anchor",
            "reason",
            "at",
            "archive",
            "signature",
            "log_head",
        }
    },
}
"""Columns a schema version added: required of a file at that version or later."""
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 2: tags (DCB): a column, their index table, and the type index DCB
    # queries of types alone scan.
    2: ("ALTER TABLE events ADD COLUMN tags TEXT", _TAGS_TABLE, _TYPE_INDEX),
    # 3: stream lifecycle: the cut markers.
    3: (_CUTS_TABLE, _CUTS_INDEX),
}
_SQLITE_MAGIC = b"SQLite format 3\x00"


def store_error(path: str, exc: sqlite3.Error, doing: str) -> StoreError:
    """A typed error for a database failure: damage is ``NotAnEventStore``."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        error: StoreError = NotAnEventStore(path, f"{exc} (while trying to {doing})")
    elif code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        error = StoreTimeout(
            f"{path}: could not {doing}: {exc} (busy_timeout passed)", setting="busy_timeout"
        )
    else:
        error = StoreError(f"{path}: could not {doing}: {exc}")
    error.__cause__ = exc
    return error


def _check_file(path: str) -> None:
    """Cheap checks before SQLite touches the file: the header is SQLite's and
    the file is as long as the header says (when no WAL holds newer pages)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"{path}: cannot open: {exc}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise NotAnEventStore(path, "it is a directory")
    if info.st_size == 0:
        return
    try:
        with open(path, "rb") as file:
            header = file.read(100)
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc}") from exc
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise NotAnEventStore(path, "not a SQLite database (no SQLite header)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise NotAnEventStore(path, f"corrupt SQLite header (page size {page_size})")
    pages = int.from_bytes(header[28:32], "big")
    size_is_valid = header[24:28] == header[92:96]
    try:
        wal_size = os.path.getsize(path + "-wal")
    except OSError:
        wal_size = 0
    if size_is_valid and wal_size == 0 and info.st_size < pages * page_size:
        raise NotAnEventStore(
            path,
            f"truncated: its header counts {pages} pages of {page_size} bytes "
            f"but the file has {info.st_size} bytes",
        )


def _objects(con: sqlite3.Connection) -> dict[str, str]:
    rows = con.execute(
        "SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite!_%' ESCAPE '!'"
    ).fetchall()
    return {name: kind for name, kind in rows}


# Tables other parts of eventfold may keep in the store's file before the store
# itself was first opened there (the crypto-shredding key table).
_COMPANIONS = frozenset({"eventfold_subject_keys", "eventfold_subject_keys_subject"})


def _is_new(objects: dict[str, str]) -> bool:
    return not set(objects) - _COMPANIONS


def _create(con: sqlite3.Connection, path: str) -> None:
    """Create the whole schema in one transaction, unless another process did."""
    mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"{path}: cannot use write-ahead logging (journal_mode is {mode})")
    con.execute("BEGIN IMMEDIATE")
    try:
        if _is_new(_objects(con)):
            for statement in _DDL:
                con.execute(statement)
            con.execute("INSERT INTO eventfold_schema (version) VALUES (?)", (SCHEMA_VERSION,))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


def _verify(con: sqlite3.Connection, path: str, objects: dict[str, str]) -> int:
    tables = sorted(name for name, kind in objects.items() if kind == "table")
    if "eventfold_schema" not in tables:
        listed = ", ".join(tables[:8]) + (", ..." if len(tables) > 8 else "")
        raise NotAnEventStore(
            path, f"a SQLite database without the eventfold schema (tables: {listed or 'none'})"
        )
    rows = con.execute("SELECT version FROM eventfold_schema").fetchall()
    if len(rows) != 1 or not isinstance(rows[0][0], int):
        raise NotAnEventStore(path, "eventfold_schema must hold exactly one version number")
    found: int = rows[0][0]
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(path, found, SCHEMA_VERSION)
    if found < 1:
        raise NotAnEventStore(path, f"unknown schema version {found}")
    wanted = {table: set(columns) for table, columns in _REQUIRED_COLUMNS.items()}
    for version, added in _REQUIRED_SINCE.items():
        if found >= version:
            for table, columns in added.items():
                wanted.setdefault(table, set()).update(columns)
    for table, required in wanted.items():
        columns = {row[1] for row in con.execute("SELECT * FROM pragma_table_info(?)", (table,))}
        if not required <= columns:
            missing = ", ".join(sorted(required - columns))
            raise NotAnEventStore(
                path, f"schema version {found} but table {table} lacks column(s) {missing}"
            )
    # Touch the newest page of the log, so a file cut short is noticed here.
    con.execute("SELECT max(position) FROM events").fetchone()
    return found


def _migrate(con: sqlite3.Connection, path: str) -> None:
    """Upgrade an older store to SCHEMA_VERSION in one transaction (unless
    another process did first): each step once, all of them or none."""
    con.execute("BEGIN IMMEDIATE")
    try:
        found = _verify(con, path, _objects(con))
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version]:
                con.execute(statement)
        con.execute("UPDATE eventfold_schema SET version = ?", (SCHEMA_VERSION,))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


def _connect(path: str, busy_timeout: int, *, create: bool = True) -> sqlite3.Connection:
    try:
        if create:
            con = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, cached_statements=256
            )
        else:  # read-write, never creating the file
            con = sqlite3.connect(
                Path(path).as_uri() + "?mode=rw",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
    except sqlite3.Error as exc:
        if not create and not os.path.exists(path):
            raise StoreNotFound(path, "no such file") from None
        raise store_error(path, exc, "open the database") from exc
    try:
        con.execute(f"PRAGMA busy_timeout = {int(busy_timeout)}")
    except BaseException:
        con.close()
        raise
    return con


def open_writer(options: SQLiteOptions) -> sqlite3.Connection:
    """Open (creating if new) the store file and return its write connection.

    Changing the journal mode takes a lock without waiting on the busy
    handler, so two processes opening a new file at once may see "locked":
    that is retried until ``busy_timeout`` has passed."""
    deadline = time.monotonic() + options.busy_timeout / 1000
    while True:
        try:
            return _open_writer(options)
        except StoreError as exc:
            cause = exc.__cause__
            busy = isinstance(cause, sqlite3.OperationalError) and (
                getattr(cause, "sqlite_errorcode", 0) & 0xFF
            ) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _open_writer(options: SQLiteOptions) -> sqlite3.Connection:
    path = options.path
    _check_file(path)
    con = _connect(path, options.busy_timeout, create=options.create)
    try:
        objects = _objects(con)
        if _is_new(objects):
            if not options.create:
                raise StoreNotFound(path, "the file holds no eventfold tables")
            _create(con, path)
            objects = _objects(con)
        if _verify(con, path, objects) < SCHEMA_VERSION:
            _migrate(con, path)
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            con.execute("PRAGMA journal_mode = WAL")
        con.execute(f"PRAGMA synchronous = {SYNCHRONOUS_LEVELS[options.synchronous]}")
        con.execute("PRAGMA cache_size = -16384")
        con.execute("PRAGMA temp_store = MEMORY")
    except sqlite3.Error as exc:
        con.close()
        raise store_error(path, exc, "open the store") from exc
    except BaseException:
        con.close()
        raise
    return con


def open_reader(options: SQLiteOptions) -> sqlite3.Connection:
    """A read connection: in WAL mode it reads a committed snapshot and is never
    blocked by the writer."""
    con = _connect(options.path, options.busy_timeout)
    try:
        con.execute("PRAGMA query_only = ON")
        con.execute("PRAGMA cache_size = -8192")
    except sqlite3.Error as exc:
        con.close()
        raise store_error(options.path, exc, "open a read connection") from exc
    return con
