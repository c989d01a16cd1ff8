"""Key stores for crypto-shredding: one AES-256 key per data subject.

Forgetting a subject destroys its keys; the ciphertext left in the log can no
longer be read by anyone. Keys may be wrapped (encrypted) with a master key
from configuration, so a copy of the database alone does not hold them.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventfold.errors import ConfigurationError, StoreError
from eventfold.errors import KeyUnwrapError as KeyUnwrapError
from eventfold.urls import SchemeRegistry


@runtime_checkable
class KeyStore(Protocol):
    async def key_for(self, subject: str) -> tuple[str, bytes]:
        """The subject's current key id and key, created on first use."""
        ...

    async def key(self, key_id: str) -> bytes | None:
        """The key with this id, or None if it was destroyed (or never existed)."""
        ...

    async def forget(self, subject: str) -> int:
        """Destroy every key of ``subject``; returns how many were destroyed."""
        ...

    async def close(self) -> None: ...


def _new_key() -> tuple[str, bytes]:
    return uuid.uuid4().hex, AESGCM.generate_key(bit_length=256)


class _Wrapper:
    """Wraps keys with a master key (AES-GCM, the key id as associated data)."""

    def __init__(self, master_key: bytes | None) -> None:
        if master_key is not None and len(master_key) not in (16, 24, 32):
            raise ConfigurationError("master_key must be 16, 24 or 32 bytes", setting="master_key")
        self._aead = AESGCM(master_key) if master_key is not None else None

    def wrap(self, key_id: str, key: bytes) -> bytes:
        if self._aead is None:
            return key
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, key, key_id.encode())

    def unwrap(self, key_id: str, stored: bytes) -> bytes:
        if self._aead is None:
            if len(stored) != 32:
                raise KeyUnwrapError(f"key {key_id} is wrapped; a master key is needed")
            return stored
        try:
            return self._aead.decrypt(stored[:12], stored[12:], key_id.encode())
        except (InvalidTag, ValueError):
            raise KeyUnwrapError(f"key {key_id} does not unwrap with this master key") from None


class MemoryKeyStore:
    """Keys in this process's memory (tests, memory:// stores)."""

    def __init__(self) -> None:
        self._current: dict[str, str] = {}
        self._keys: dict[str, tuple[str, bytes]] = {}

    async def key_for(self, subject: str) -> tuple[str, bytes]:
        key_id = self._current.get(subject)
        if key_id is None:
            key_id, key = _new_key()
            self._current[subject] = key_id
            self._keys[key_id] = (subject, key)
        return key_id, self._keys[key_id][1]

    async def key(self, key_id: str) -> bytes | None:
        found = self._keys.get(key_id)
        return None if found is None else found[1]

    async def forget(self, subject: str) -> int:
        self._current.pop(subject, None)
        doomed = [k for k, (s, _) in self._keys.items() if s == subject]
        for key_id in doomed:
            del self._keys[key_id]
        return len(doomed)

    async def close(self) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS eventfold_subject_keys (
    key_id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    key BLOB NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS eventfold_subject_keys_subject ON eventfold_subject_keys (subject);
"""


class SQLiteKeyStore:
    """Keys in a table of a SQLite file, normally the event store's own file.

    ``secure_delete`` is on for this connection and a forget ends with a WAL
    checkpoint, so the destroyed key's bytes are overwritten in the file
    rather than left in a free page or the write-ahead log.
    """

    def __init__(self, path: str | Path, *, master_key: bytes | None = None) -> None:
        self.path = str(path)
        self._wrapper = _Wrapper(master_key)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._conn.execute("PRAGMA secure_delete = ON")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the key store: {exc}") from exc

    @classmethod
    def for_url(cls, url: str, *, master_key: bytes | None = None) -> SQLiteKeyStore:
        """The key store inside the SQLite event store at ``sqlite:///path``."""
        from eventfold.store.sqlite.options import parse_sqlite_url

        return cls(parse_sqlite_url(url, {}).path, master_key=master_key)

    async def _run(self, fn: object, *args: object) -> object:
        def call() -> object:
            with self._lock:
                try:
                    return fn(*args)  # type: ignore[operator]
                except sqlite3.DatabaseError as exc:
                    raise StoreError(f"{self.path}: key store: {exc}") from exc

        return await asyncio.to_thread(call)

    def _key_for(self, subject: str) -> tuple[str, bytes]:
        row = self._conn.execute(
            "SELECT key_id, key FROM eventfold_subject_keys WHERE subject = ? "
            "ORDER BY created_at DESC LIMIT 1",
            (subject,),
        ).fetchone()
        if row is not None:
            return row[0], self._wrapper.unwrap(row[0], row[1])
        key_id, key = _new_key()
        self._conn.execute(
            "INSERT INTO eventfold_subject_keys (key_id, subject, key) VALUES (?, ?, ?)",
            (key_id, subject, self._wrapper.wrap(key_id, key)),
        )
        return key_id, key

    async def key_for(self, subject: str) -> tuple[str, bytes]:
        result = await self._run(self._key_for, subject)
        assert isinstance(result, tuple)
        return result

    def _key(self, key_id: str) -> bytes | None:
        row = self._conn.execute(
            "SELECT key FROM eventfold_subject_keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        return None if row is None else self._wrapper.unwrap(key_id, row[0])

    async def key(self, key_id: str) -> bytes | None:
        result = await self._run(self._key, key_id)
        assert result is None or isinstance(result, bytes)
        return result

    def _forget(self, subject: str) -> int:
        count = self._conn.execute(
            "DELETE FROM eventfold_subject_keys WHERE subject = ?", (subject,)
        ).rowcount
        for _ in range(50):
            busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy is None or busy[0] == 0:
                break
            threading.Event().wait(0.05)
        return int(count)

    async def forget(self, subject: str) -> int:
        result = await self._run(self._forget, subject)
        assert isinstance(result, int)
        return result

    async def close(self) -> None:
        with self._lock:
            self._conn.close()


KeyStoreOpener = Callable[..., KeyStore]
"""``opener(url, *, master_key=None)`` returns the key store kept with the
event store at ``url``."""

_key_stores: SchemeRegistry[KeyStoreOpener] = SchemeRegistry("key store", "url")


def register_key_store(scheme: str, opener: KeyStoreOpener) -> None:
    """Make ``open_key_store`` open URLs of ``scheme`` with
    ``opener(url, master_key=...)``."""
    _key_stores.register(scheme, opener)


def open_key_store(url: str, *, master_key: bytes | None = None) -> KeyStore:
    """The key store that lives beside the event store at ``url``."""
    return _key_stores.entry(url)(url, master_key=master_key)


def _open_postgres(url: str, *, master_key: bytes | None = None) -> KeyStore:
    from eventfold.serialization.keys_postgres import PostgresKeyStore

    return PostgresKeyStore(url, master_key=master_key)


register_key_store("sqlite", SQLiteKeyStore.for_url)
register_key_store("postgresql", _open_postgres)
register_key_store("postgres", _open_postgres)
