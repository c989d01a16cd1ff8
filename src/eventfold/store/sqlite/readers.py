"""Read connections: a few threads, each with its own connection. In WAL mode
a reader sees the last committed state and never waits for the writer."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec

from eventfold.errors import StoreClosed, StoreError
from eventfold.store.sqlite.options import SQLiteOptions
from eventfold.store.sqlite.schema import open_reader, store_error

T = TypeVar("T")


class ReadPool:
    def __init__(self, options: SQLiteOptions) -> None:
        self._options = options
        self._executor = ThreadPoolExecutor(
            max_workers=options.readers, thread_name_prefix="eventfold-sqlite-read"
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = open_reader(self._options)
            with self._lock:
                if self._closed:
                    con.close()
                    raise StoreClosed(f"{self._options.path} is closed")
                self._connections.append(con)
            self._local.con = con
        return con

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        con = self._connection()
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

    def close(self) -> None:
        """Blocking: wait for reads in flight, then close every connection."""
        self._executor.shutdown(wait=True)
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for con in connections:
            con.close()
