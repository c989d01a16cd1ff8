"""Where command outcomes are kept, by command id and by idempotency key:
in memory, or in a SQL table (``eventfold_command_outcome``) of the command
service's own database (SQLite or PostgreSQL).

A queued command's row is written ``pending`` when it is accepted (with the
request, so that it can be queued again) and completed by the worker that
handled it; the first completion wins. A keyed command's row is written once
with its outcome; the first one wins."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import msgspec

from eventfold.services.records import CommandOutcome, StoredOutcome
from eventfold.subscriptions.readmodel import Connection, ReadModel, open_read_model
from eventfold.urls import SchemeRegistry


@runtime_checkable
class OutcomeStore(Protocol):
    async def get(self, command_id: str) -> StoredOutcome | None: ...

    async def by_key(self, key: str) -> StoredOutcome | None: ...

    async def add(self, stored: StoredOutcome) -> StoredOutcome:
        """Store it unless its command id or key is taken; return what is stored."""
        ...

    async def complete(self, outcome: CommandOutcome) -> StoredOutcome:
        """Complete a pending command (or store it if it is missing); the first
        completion wins and is returned."""
        ...

    async def pending(self, *, older_than: float, limit: int = 100) -> list[StoredOutcome]:
        """Pending commands accepted more than ``older_than`` seconds ago."""
        ...

    async def wait(self, command_id: str, timeout: float) -> StoredOutcome | None:
        """The command's outcome once it is done, or as it stands after
        ``timeout`` seconds (None if there is no such command)."""
        ...

    async def close(self) -> None: ...


class _Waiting:
    """Wakes waiters in this process when an outcome changes; other
    processes are seen by polling."""

    poll = 0.05

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(
        self, store: OutcomeStore, command_id: str, timeout: float
    ) -> StoredOutcome | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            changed = self._changed
            found = await store.get(command_id)
            if found is None or found.outcome.done:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                return found
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, self.poll))


class MemoryOutcomeStore:
    """Outcomes in dicts: lost with the process (tests, demos)."""

    def __init__(self) -> None:
        self._by_id: dict[str, StoredOutcome] = {}
        self._by_key: dict[str, str] = {}
        self._waiting = _Waiting()

    async def get(self, command_id: str) -> StoredOutcome | None:
        return self._by_id.get(command_id)

    async def by_key(self, key: str) -> StoredOutcome | None:
        command_id = self._by_key.get(key)
        return None if command_id is None else self._by_id.get(command_id)

    async def add(self, stored: StoredOutcome) -> StoredOutcome:
        outcome = stored.outcome
        key = outcome.idempotency_key
        if outcome.command_id in self._by_id:
            return self._by_id[outcome.command_id]
        if key is not None and key in self._by_key:
            return self._by_id[self._by_key[key]]
        self._by_id[outcome.command_id] = stored
        if key is not None:
            self._by_key[key] = outcome.command_id
        self._waiting.notify()
        return stored

    async def complete(self, outcome: CommandOutcome) -> StoredOutcome:
        current = self._by_id.get(outcome.command_id)
        if current is None:
            return await self.add(StoredOutcome(outcome))
        if current.outcome.done:
            return current
        done = msgspec.structs.replace(current, outcome=outcome)
        self._by_id[outcome.command_id] = done
        self._waiting.notify()
        return done

    async def pending(self, *, older_than: float, limit: int = 100) -> list[StoredOutcome]:
        cutoff = _cutoff(older_than)
        found = [
            s
            for s in self._by_id.values()
            if not s.outcome.done and s.outcome.accepted_at <= cutoff
        ]
        return sorted(found, key=lambda s: s.outcome.accepted_at)[:limit]

    async def wait(self, command_id: str, timeout: float) -> StoredOutcome | None:
        return await self._waiting.wait(self, command_id, timeout)

    async def close(self) -> None:
        return None


def _cutoff(older_than: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=older_than)).isoformat()


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS eventfold_command_outcome (
        command_id TEXT PRIMARY KEY,
        idempotency_key TEXT UNIQUE,
        command TEXT NOT NULL,
        status TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        outcome TEXT NOT NULL,
        request TEXT,
        accepted_at TEXT NOT NULL,
        completed_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS eventfold_command_outcome_pending "
    "ON eventfold_command_outcome (status, accepted_at)",
)
_SETUP_LOCK = 7_243_019_560
_SELECT = "SELECT outcome, fingerprint, request FROM eventfold_command_outcome WHERE command_id = ?"
_SELECT_KEY = (
    "SELECT outcome, fingerprint, request FROM eventfold_command_outcome WHERE idempotency_key = ?"
)
_PENDING = (
    "SELECT outcome, fingerprint, request FROM eventfold_command_outcome "
    "WHERE status = 'pending' AND accepted_at <= ? ORDER BY accepted_at LIMIT ?"
)
_INSERT = (
    "INSERT INTO eventfold_command_outcome (command_id, idempotency_key, command, status, "
    "fingerprint, outcome, request, accepted_at, completed_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_COMPLETE = (
    "UPDATE eventfold_command_outcome SET status = ?, outcome = ?, completed_at = ? "
    "WHERE command_id = ? AND status = 'pending'"
)

_encoder = msgspec.json.Encoder()
# Not strict: outcomes stored before error details were typed hold the
# expected version as a string ("3").
_decoder = msgspec.json.Decoder(CommandOutcome, strict=False)


def _row(row: Any) -> StoredOutcome | None:
    if row is None:
        return None
    request = row[2]
    return StoredOutcome(
        _decoder.decode(row[0]),
        row[1],
        request.encode() if isinstance(request, str) else request,
    )


def _ensure(conn: Connection) -> None:
    if conn.dialect == "postgresql":
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_SETUP_LOCK,))
    for statement in _SCHEMA:
        conn.execute(statement)


def _get(sql: str, value: str, conn: Connection) -> StoredOutcome | None:
    return _row(conn.execute(sql, (value,)).fetchone())


def _insert(stored: StoredOutcome, conn: Connection) -> StoredOutcome:
    o = stored.outcome
    conn.execute(
        _INSERT,
        (
            o.command_id,
            o.idempotency_key,
            o.command,
            o.status,
            stored.fingerprint,
            _encoder.encode(o).decode(),
            None if stored.request is None else stored.request.decode(),
            o.accepted_at,
            o.completed_at,
        ),
    )
    found = _get(_SELECT, o.command_id, conn)
    if found is None and o.idempotency_key is not None:
        found = _get(_SELECT_KEY, o.idempotency_key, conn)
    assert found is not None
    return found


def _complete(outcome: CommandOutcome, conn: Connection) -> StoredOutcome:
    cur = conn.execute(
        _COMPLETE,
        (
            outcome.status,
            _encoder.encode(outcome).decode(),
            outcome.completed_at,
            outcome.command_id,
        ),
    )
    if cur.rowcount == 0 and _get(_SELECT, outcome.command_id, conn) is None:
        return _insert(StoredOutcome(outcome), conn)
    found = _get(_SELECT, outcome.command_id, conn)
    assert found is not None
    return found


def _pending(cutoff: str, limit: int, conn: Connection) -> list[StoredOutcome]:
    rows = conn.execute(_PENDING, (cutoff, limit)).fetchall()
    return [s for s in (_row(r) for r in rows) if s is not None]


class SQLOutcomeStore:
    """Outcomes in a SQLite or PostgreSQL database (``open_outcomes(url)``)."""

    def __init__(self, database: ReadModel) -> None:
        self.database = database
        self.url = database.url
        self._ready = False
        self._waiting = _Waiting()

    async def _setup(self) -> None:
        if not self._ready:
            await self.database.write(_ensure)
            self._ready = True

    async def get(self, command_id: str) -> StoredOutcome | None:
        await self._setup()
        found: StoredOutcome | None = await self.database.read(
            functools.partial(_get, _SELECT, command_id)
        )
        return found

    async def by_key(self, key: str) -> StoredOutcome | None:
        await self._setup()
        found: StoredOutcome | None = await self.database.read(
            functools.partial(_get, _SELECT_KEY, key)
        )
        return found

    async def add(self, stored: StoredOutcome) -> StoredOutcome:
        await self._setup()
        result: StoredOutcome = await self.database.write(functools.partial(_insert, stored))
        self._waiting.notify()
        return result

    async def complete(self, outcome: CommandOutcome) -> StoredOutcome:
        await self._setup()
        result: StoredOutcome = await self.database.write(functools.partial(_complete, outcome))
        self._waiting.notify()
        return result

    async def pending(self, *, older_than: float, limit: int = 100) -> list[StoredOutcome]:
        await self._setup()
        found: list[StoredOutcome] = await self.database.read(
            functools.partial(_pending, _cutoff(older_than), limit)
        )
        return found

    async def wait(self, command_id: str, timeout: float) -> StoredOutcome | None:
        return await self._waiting.wait(self, command_id, timeout)

    async def close(self) -> None:
        await self.database.close()


OutcomeStoreOpener = Callable[[str], OutcomeStore]
"""``opener(url)`` returns the outcome store at ``url``."""

_outcome_stores: SchemeRegistry[OutcomeStoreOpener] = SchemeRegistry("outcome store", "outcomes")


def register_outcome_store(scheme: str, opener: OutcomeStoreOpener) -> None:
    """Make ``open_outcomes`` open URLs of ``scheme`` with ``opener(url)``."""
    _outcome_stores.register(scheme, opener)


def open_outcomes(url: str) -> OutcomeStore:
    """``memory://``, ``sqlite:///outcomes.db`` or ``postgresql://…`` (add
    ``?schema=name`` for a schema of its own), or a scheme added with
    ``register_outcome_store``."""
    return _outcome_stores.entry(url)(url)


def _open_memory(url: str) -> OutcomeStore:
    return MemoryOutcomeStore()


def _open_sql(url: str) -> OutcomeStore:
    return SQLOutcomeStore(open_read_model(url))


register_outcome_store("memory", _open_memory)
register_outcome_store("sqlite", _open_sql)
register_outcome_store("postgresql", _open_sql)
register_outcome_store("postgres", _open_sql)
