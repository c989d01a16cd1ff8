"""LISTEN on a dedicated connection and wake waiters on every notification.

Writers send one NOTIFY per committed transaction that wrote events. A
notification only says "something committed": waiters re-check what a reader
can see, because an event becomes visible to readers of the whole log only
once every older transaction has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import psycopg
from psycopg import sql

log = logging.getLogger("eventfold.store.postgres")

Connect = Callable[[], Awaitable[psycopg.AsyncConnection[tuple[object, ...]]]]


class Listener:
    """One LISTEN connection shared by every waiter of a store."""

    def __init__(self, connect: Connect, channel: str) -> None:
        self._connect = connect
        self._channel = channel
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._ready: asyncio.Future[None] | None = None
        self._closed = False
        self.generation = 0
        """Incremented on every notification (and reconnect)."""
        self.notified = 0
        """The highest position a notification announced."""

    async def ensure_started(self) -> None:
        """Return once LISTEN is in effect, so that no later commit goes unheard."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run())
        await asyncio.shield(self._ready)

    def _wake(self) -> None:
        self.generation += 1
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    async def wait(self, generation: int, timeout: float) -> bool:
        """Wait up to ``timeout`` for a notification newer than ``generation``."""
        if self.generation != generation:
            return True
        event = self._wakeup
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return self.generation != generation

    async def _run(self) -> None:
        assert self._ready is not None
        delay = 0.05
        while not self._closed:
            try:
                conn = await self._connect()
                self._conn = conn
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                if not self._ready.done():
                    self._ready.set_result(None)
                self._wake()  # anything may have happened while we were not listening
                delay = 0.05
                async for note in conn.notifies():
                    with contextlib.suppress(ValueError):
                        self.notified = max(self.notified, int(note.payload))
                    self._wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                if not self._ready.done():
                    self._ready.set_exception(exc)
                    self._ready.exception()  # mark retrieved; ensure_started re-raises
                    self._ready = None
                    return
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
                self._wake()
            finally:
                conn_, self._conn = self._conn, None
                if conn_ is not None:
                    with contextlib.suppress(Exception):
                        await conn_.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._wake()
