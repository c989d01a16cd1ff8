"""``connect(url)``: one entry point that picks a backend by URL scheme."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any

from eventfold.errors import ConfigurationError, StoreNotFound
from eventfold.store.api import EventStore

Opener = Callable[..., Awaitable[EventStore]]
_openers: dict[str, Opener] = {}


def register_backend(scheme: str, opener: Opener) -> None:
    """Make ``connect`` open URLs of ``scheme`` with ``opener(url, **options)``."""
    _openers[scheme] = opener


async def _open_memory(url: str, **options: Any) -> EventStore:
    from eventfold.store.memory import MemoryStore

    create = options.pop("create", True)
    if options:
        raise ConfigurationError(f"memory:// takes no options but create, got {sorted(options)}")
    if not create:
        raise StoreNotFound(url, "a memory store lives only in the process that made it")
    return MemoryStore(url)


async def _open_sqlite(url: str, **options: Any) -> EventStore:
    from eventfold.store.sqlite import SQLiteStore

    return await SQLiteStore.open(url, **options)


async def _open_postgres(url: str, **options: Any) -> EventStore:
    try:
        from eventfold.store.postgres import PostgresStore
    except ImportError as exc:  # pragma: no cover - depends on installed extras
        raise ConfigurationError(
            "PostgreSQL support needs the 'postgres' extra: pip install 'eventfold[postgres]'",
            setting="url",
        ) from exc
    return await PostgresStore.open(url, **options)


register_backend("memory", _open_memory)
register_backend("sqlite", _open_sqlite)
register_backend("postgresql", _open_postgres)
register_backend("postgres", _open_postgres)


class _Connection:
    """``await connect(url)`` gives a store; ``async with connect(url) as store``
    also closes it."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        self._store: EventStore | None = None

    async def _open(self) -> EventStore:
        if not isinstance(self._url, str) or "://" not in self._url:
            raise ConfigurationError(f"not a store URL: {self._url!r}", setting="url")
        scheme = self._url.split("://", 1)[0].lower().split("+", 1)[0]
        opener = _openers.get(scheme)
        if opener is None:
            known = ", ".join(sorted(_openers))
            raise ConfigurationError(
                f"no backend for scheme {scheme!r} (known: {known})", setting="url"
            )
        return await opener(self._url, **self._options)

    def __await__(self) -> Generator[Any, None, EventStore]:
        return self._open().__await__()

    async def __aenter__(self) -> EventStore:
        self._store = await self._open()
        return self._store

    async def __aexit__(self, *exc: object) -> None:
        if self._store is not None:
            await self._store.close()


def connect(url: str, **options: Any) -> _Connection:
    """Open the store at ``url``: ``memory://``, ``sqlite:///path.db`` or
    ``postgresql://user@host/db``. Backend options pass through as keywords;
    every backend takes ``create=False``, which opens an existing store only
    and raises StoreNotFound, creating nothing, where there is none."""
    return _Connection(url, options)
