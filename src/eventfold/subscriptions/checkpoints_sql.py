"""Checkpoints kept in a SQL read model database (SQLite or PostgreSQL)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from eventfold.subscriptions import builds
from eventfold.subscriptions.checkpoints import (
    ClosableCheckpointStore,
    MemoryCheckpointStore,
    check_position,
)
from eventfold.subscriptions.readmodel import Connection, ReadModel, open_read_model
from eventfold.urls import SchemeRegistry


class SQLCheckpointStore:
    """Checkpoints in the ``eventfold_checkpoint`` table of a read model
    database. A handler that writes to the same database can move its
    checkpoint in its own transaction with ``builds.save_checkpoint(conn, ...)``
    inside ``read_model.write``."""

    def __init__(self, read_model: ReadModel) -> None:
        self.read_model = read_model

    async def load(self, name: str) -> int:
        return await self.read_model.read(functools.partial(_load, name))

    async def save(self, name: str, position: int) -> None:
        check_position(position)
        await self.read_model.write(functools.partial(_save, name, position))

    async def close(self) -> None:
        await self.read_model.close()


def _load(name: str, conn: Connection) -> int:
    return builds.load_checkpoint(conn, name)


def _save(name: str, position: int, conn: Connection) -> None:
    builds.save_checkpoint(conn, name, position)


CheckpointsOpener = Callable[[str], ClosableCheckpointStore]
"""``opener(url)`` returns the checkpoint store at ``url``."""

_checkpoint_stores: SchemeRegistry[CheckpointsOpener] = SchemeRegistry(
    "checkpoint store", "checkpoints"
)


def register_checkpoints(scheme: str, opener: CheckpointsOpener) -> None:
    """Make ``open_checkpoints`` open URLs of ``scheme`` with ``opener(url)``."""
    _checkpoint_stores.register(scheme, opener)


def open_checkpoints(url: str) -> ClosableCheckpointStore:
    """``memory://``, ``sqlite:///checkpoints.db`` or ``postgresql://...``, or
    a scheme added with ``register_checkpoints``."""
    return _checkpoint_stores.entry(url)(url)


def _open_memory(url: str) -> ClosableCheckpointStore:
    return MemoryCheckpointStore()


def _open_sql(url: str) -> ClosableCheckpointStore:
    return SQLCheckpointStore(open_read_model(url))


register_checkpoints("memory", _open_memory)
register_checkpoints("sqlite", _open_sql)
register_checkpoints("postgresql", _open_sql)
register_checkpoints("postgres", _open_sql)
