"""Where a subscription remembers how far it got: the position of the last
event it handled (0: none yet). A resumed subscription reads from the next one.

``MemoryCheckpointStore`` is for tests and single-process use; SQL read models
(``SQLiteReadModel``, ``PostgresReadModel``) store checkpoints too
(``SQLCheckpointStore``), and a projection keeps its checkpoint in the same
transaction as its read-model changes."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from eventfold.errors import InvalidArgument


@runtime_checkable
class CheckpointStore(Protocol):
    async def load(self, name: str) -> int:
        """The last handled position of subscription ``name`` (0 if none)."""
        ...

    async def save(self, name: str, position: int) -> None:
        """Record that ``name`` has handled everything up to ``position``."""
        ...


class ClosableCheckpointStore(CheckpointStore, Protocol):
    """A checkpoint store that holds a resource (a database connection):
    what ``open_checkpoints`` returns."""

    async def close(self) -> None: ...


def check_position(position: object) -> int:
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise InvalidArgument(
            f"position must be an int >= 0, not {position!r}", argument="position"
        )
    return position


class MemoryCheckpointStore:
    """Checkpoints in a dict: lost with the process."""

    def __init__(self) -> None:
        self._positions: dict[str, int] = {}

    async def load(self, name: str) -> int:
        return self._positions.get(name, 0)

    async def save(self, name: str, position: int) -> None:
        self._positions[name] = check_position(position)

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"MemoryCheckpointStore({self._positions!r})"
