"""Read models in a SQLite file of their own (stdlib ``sqlite3``), in WAL mode
so that queries read a consistent snapshot while the projection writes."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from eventfold.errors import ConfigurationError
from eventfold.subscriptions.projection import Cursor
from eventfold.subscriptions.readmodel import Connection, ReadModel, Role
from eventfold.subscriptions.sqltemplate import quote_sqlite
from eventfold.urls import split_sqlite_url

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


class _SQLiteConnection(Connection):
    dialect = "sqlite"

    def __init__(
        self,
        path: str,
        role: Role,
        *,
        timeout: float,
        synchronous: Synchronous,
        on_connect: Callable[[sqlite3.Connection], None] | None,
    ) -> None:
        super().__init__()
        self.raw = sqlite3.connect(
            path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self.raw.execute("PRAGMA journal_mode=WAL")
        self.raw.execute(f"PRAGMA synchronous={synchronous}")
        self.raw.execute("PRAGMA foreign_keys=ON")
        # Deleted rows and dropped tables are overwritten, not left in free
        # pages: a forgotten subject's rows leave no bytes behind.
        self.raw.execute("PRAGMA secure_delete=ON")
        if role == "read":
            self.raw.execute("PRAGMA query_only=ON")
        if on_connect is not None:
            on_connect(self.raw)

    def raw_execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.raw.execute(sql, params)

    def raw_executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.raw.executemany(sql, rows)

    def quote(self, physical: str) -> str:
        return quote_sqlite(physical)

    def begin(self, role: Role, *, pipeline: bool = False) -> None:
        # IMMEDIATE takes the write lock up front: no lock upgrade, no deadlock.
        self.raw.execute("BEGIN IMMEDIATE" if role == "write" else "BEGIN")

    def commit(self) -> None:
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if self.raw.in_transaction:
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()

    def compact(self) -> None:
        # The write-ahead log still holds the pages as they were: fold it into
        # the file and truncate it (readers may hold it briefly; retry).
        for _ in range(100):
            row = self.raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if row is None or row[0] == 0:
                return
            time.sleep(0.02)


class SQLiteReadModel(ReadModel):
    """Read models in the SQLite file at ``path`` (created if missing).

    ``synchronous`` is SQLite's setting: ``NORMAL`` (default) survives a killed
    process, ``FULL`` also a power cut. ``on_connect(conn)`` runs on each new
    ``sqlite3`` connection (to register functions, set pragmas ...)."""

    dialect = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        timeout: float = 30.0,
        synchronous: Synchronous = "NORMAL",
        on_connect: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        path = str(path)
        if path in ("", ":memory:") or path.startswith("file::memory:"):
            raise ConfigurationError(
                "a SQLite read model needs a file (queries and the projection use "
                "separate connections)",
                setting="read_model",
            )
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigurationError(f"synchronous={synchronous!r}", setting="synchronous")
        super().__init__(f"sqlite:///{path}")
        self.path = path
        self._timeout = timeout
        self._synchronous: Synchronous = synchronous
        self._on_connect = on_connect

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteReadModel:
        """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``."""
        path, _ = split_sqlite_url(url, setting="read_model")
        return cls(path, **options)

    def _connect(self, role: Role) -> Connection:
        return _SQLiteConnection(
            self.path,
            role,
            timeout=self._timeout,
            synchronous=self._synchronous,
            on_connect=self._on_connect,
        )
