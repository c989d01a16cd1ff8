"""``connect(url)``: one entry point that picks a backend by URL scheme, from
the one registry of store schemes (``register_backend`` adds to it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from eventfold.errors import ConfigurationError, StoreNotFound
from eventfold.store.api import EventStore
from eventfold.urls import SchemeRegistry, split_sqlite_url

Opener = Callable[..., Awaitable[EventStore]]
"""``await opener(url, **options)`` opens the store at ``url``."""
Beside = Callable[[str, str], str]
"""``beside(url, name)``: the URL of a database called ``name`` kept beside the
store at ``url``."""


class _Backend(NamedTuple):
    open: Opener
    beside: Beside | None


_backends: SchemeRegistry[_Backend] = SchemeRegistry("store backend", "url")


def register_backend(scheme: str, opener: Opener, *, beside: Beside | None = None) -> None:
    """Make ``connect`` open URLs of ``scheme`` with ``await opener(url,
    **options)``. ``beside(url, name)``, if given, names where a database
    called ``name`` goes beside such a store (``database_beside``)."""
    _backends.register(scheme, _Backend(opener, beside))


def database_beside(url: str, name: str) -> str:
    """The URL of a database called ``name`` kept beside the store at ``url``
    (the command service keeps its outcomes there): ``path-name.db`` next to
    a SQLite file, schema ``<schema>_name`` beside a PostgreSQL store,
    ``memory://`` beside ``memory://``."""
    beside = _backends.entry(url).beside
    if beside is None:
        raise ConfigurationError(
            f"no default database beside a store at {url.split('://', 1)[0]}://; name one",
            setting="url",
        )
    return beside(url, name)


async def _open_memory(url: str, **options: Any) -> EventStore:
    from eventfold.store.memory import MemoryStore

    create = options.pop("create", True)
    if options:
        raise ConfigurationError(f"memory:// takes no options but create, got {sorted(options)}")
    if not create:
        raise StoreNotFound(url, "a memory store lives only in the process that made it")
    return MemoryStore(url)


def _memory_beside(url: str, name: str) -> str:
    return "memory://"


async def _open_sqlite(url: str, **options: Any) -> EventStore:
    from eventfold.store.sqlite import SQLiteStore

    return await SQLiteStore.open(url, **options)


def _sqlite_beside(url: str, name: str) -> str:
    path, _ = split_sqlite_url(url)
    stem = path[:-3] if path.endswith(".db") else path
    return f"sqlite:///{quote(f'{stem}-{name}.db')}"


async def _open_postgres(url: str, **options: Any) -> EventStore:
    try:
        from eventfold.store.postgres import PostgresStore
    except ImportError as exc:  # pragma: no cover - depends on installed extras
        raise ConfigurationError(
            "PostgreSQL support needs the 'postgres' extra: pip install 'eventfold[postgres]'",
            setting="url",
        ) from exc
    return await PostgresStore.open(url, **options)


def _postgres_beside(url: str, name: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["schema"] = f"{query.get('schema', 'eventfold')}_{name}"
    return urlunsplit(parts._replace(query=urlencode(query)))


register_backend("memory", _open_memory, beside=_memory_beside)
register_backend("sqlite", _open_sqlite, beside=_sqlite_beside)
register_backend("postgresql", _open_postgres, beside=_postgres_beside)
register_backend("postgres", _open_postgres, beside=_postgres_beside)


class _Connection:
    """``await connect(url)`` gives a store; ``async with connect(url) as store``
    also closes it."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        self._store: EventStore | None = None

    async def _open(self) -> EventStore:
        return await _backends.entry(self._url).open(self._url, **self._options)

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
