"""Read connections. In WAL mode a reader sees the last committed state and
never waits for the writer.

A small read (a page of at most ``INLINE_ROWS`` rows and ``INLINE_BYTES`` of
payload) runs on the calling thread, on a connection of that thread's own,
after giving other tasks one turn: handing it to a read thread and back costs
far more than the query. A larger read runs on one of a few read threads,
each with its own connection, so that it never holds up the event loop for
long."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import msgspec

from eventfold.errors import StoreClosed, StoreError, StoreTimeout
from eventfold.store.sqlite.options import SQLiteOptions
from eventfold.store.sqlite.schema import open_reader, store_error

T = TypeVar("T")

INLINE_ROWS = 250
"""A page of at most this many rows is read on the calling thread."""
INLINE_BYTES = 256 << 10
"""... and it stops early once its payloads pass this size, so that one read
holds the event loop for at most about a millisecond."""


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class ReadPool:
    def __init__(self, options: SQLiteOptions) -> None:
        self._options = options
        self._inline_options = replace(options, busy_timeout=0)
        self._executor = ThreadPoolExecutor(
            max_workers=options.readers, thread_name_prefix="eventfold-sqlite-read"
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False

    def _open(self, options: SQLiteOptions) -> sqlite3.Connection:
        con = open_reader(options)
        with self._lock:
            if self._closed:
                con.close()
                raise StoreClosed(f"{self._options.path} is closed")
            self._connections.append(con)
        return con

    def _connection(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._open(self._options)
        return con

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return self._checked(self._connection(), fn, args)

    def _checked(self, con: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            return fn(con, *args)
        except sqlite3.Error as exc:
            raise store_error(self._options.path, exc, "read") from exc
        except msgspec.ValidationError as exc:  # a row this code did not write
            raise StoreError(f"{self._options.path}: a stored event cannot be read: {exc}") from exc

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` on a read thread."""
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, self._call, fn, args)
        except RuntimeError:  # the executor is shut down
            raise StoreClosed(f"{self._options.path} is closed") from None
        return await future

    async def small(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` for a read that is small by construction,
        on the calling thread. Its connection never waits: should the
        database be busy (a checkpoint resetting the log, a recovery), the read
        goes to a read thread instead, where waiting blocks nothing else.

        The read first gives other tasks a turn, as a read that waits on I/O
        would: a task that does nothing but read (a page at a time, or in a
        loop until some condition holds) never keeps the others from running."""
        await asyncio.sleep(0)
        if self._closed:
            raise StoreClosed(f"{self._options.path} is closed")
        con: sqlite3.Connection | None = getattr(self._local, "inline", None)
        if con is None:
            try:
                con = self._local.inline = self._open(self._inline_options)
            except StoreTimeout:  # opening it found the database busy
                return await self.run(fn, *args)
        try:
            return fn(con, *args)
        except sqlite3.Error as exc:
            if con.in_transaction:  # a statement left open by the failure
                con.rollback()
            if not _is_busy(exc):
                raise store_error(self._options.path, exc, "read") from exc
        except msgspec.ValidationError as exc:
            raise StoreError(f"{self._options.path}: a stored event cannot be read: {exc}") from exc
        return await self.run(fn, *args)

    def close(self) -> None:
        """Blocking: wait for reads in flight, then close every connection."""
        self._closed = True
        self._executor.shutdown(wait=True)
        with self._lock:
            connections, self._connections = self._connections, []
        for con in connections:
            con.close()
