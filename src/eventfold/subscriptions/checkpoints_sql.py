"""Checkpoints kept in a SQL read model database (SQLite or PostgreSQL)."""

from __future__ import annotations

import functools

from eventfold.subscriptions import builds
from eventfold.subscriptions.checkpoints import (
    CheckpointStore,
    MemoryCheckpointStore,
    check_position,
)
from eventfold.subscriptions.readmodel import Connection, ReadModel, open_read_model


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


def open_checkpoints(url: str) -> CheckpointStore:
    """``memory://``, ``sqlite:///checkpoints.db`` or ``postgresql://...``."""
    if url.startswith("memory://"):
        return MemoryCheckpointStore()
    return SQLCheckpointStore(open_read_model(url))
