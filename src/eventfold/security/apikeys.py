"""API keys: ``efk_<key id>_<secret>``, 256 random bits of secret.

Only a SHA-256 digest of each key is stored (a key is random, not a
password: nothing to stretch), beside its principal, roles, scopes and
tenant. A principal may hold several keys; each can be revoked on its own.
Checking a key looks it up by its id and compares digests in constant time;
an unknown id costs the same comparison.

Keys live in the control database (``eventfold_api_key``), SQLite or
PostgreSQL, or in memory for tests."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import msgspec

from eventfold.errors import AuthenticationFailed, ConfigurationError, InvalidArgument
from eventfold.security.principal import Principal, check_tenant
from eventfold.subscriptions.readmodel import Connection, ReadModel, open_read_model
from eventfold.urls import SchemeRegistry

PREFIX = "efk_"
HEADER = "x-api-key"


class APIKey(msgspec.Struct, frozen=True, kw_only=True):
    """What is stored of a key (never the key itself)."""

    key_id: str
    principal: str
    tenant: str | None = None
    roles: list[str] = []
    scopes: list[str] = []
    created_at: str = ""
    revoked_at: str | None = None

    def principal_of(self) -> Principal:
        return Principal(
            id=self.principal,
            roles=frozenset(self.roles),
            scopes=frozenset(self.scopes),
            tenant=self.tenant,
            via="api-key",
        )


def _digest(key_id: str, secret: str) -> str:
    return hashlib.sha256(f"{key_id}:{secret}".encode()).hexdigest()


_DUMMY = _digest("0" * 16, "0")


def split_key(key: str) -> tuple[str, str] | None:
    if not key.startswith(PREFIX):
        return None
    rest = key[len(PREFIX) :]
    key_id, sep, secret = rest[:16], rest[16:17], rest[17:]
    if sep != "_" or len(key_id) != 16 or not secret:
        return None
    return key_id, secret


def _now() -> str:
    return datetime.now(UTC).isoformat()


@runtime_checkable
class APIKeyStore(Protocol):
    async def add(self, key: APIKey, digest: str) -> None: ...

    async def find(self, key_id: str) -> tuple[APIKey, str] | None:
        """The key with this id and its stored digest."""
        ...

    async def list(self, *, tenant: str | None = None) -> list[APIKey]: ...

    async def revoke(self, key_id: str) -> bool:
        """Revoke it; False if there is no such key (or it was revoked)."""
        ...

    async def delete_tenant(self, tenant: str) -> int:
        """Remove every key bound to ``tenant``; how many."""
        ...

    async def close(self) -> None: ...


async def create_key(
    store: APIKeyStore,
    principal: str,
    *,
    tenant: str | None = None,
    roles: list[str] | None = None,
    scopes: list[str] | None = None,
) -> tuple[APIKey, str]:
    """A new key for ``principal``: what is stored, and the key itself (shown
    once; it cannot be recovered)."""
    if not principal or len(principal) > 200 or not principal.isprintable():
        raise InvalidArgument("a principal is 1-200 printable characters", argument="principal")
    if tenant is not None:
        check_tenant(tenant)
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    key = APIKey(
        key_id=key_id,
        principal=principal,
        tenant=tenant,
        roles=sorted(set(roles or [])),
        scopes=sorted(set(scopes or [])),
        created_at=_now(),
    )
    await store.add(key, _digest(key_id, secret))
    return key, f"{PREFIX}{key_id}_{secret}"


class APIKeyAuthenticator:
    """``X-API-Key: efk_…`` checked against ``store``. ``cache_seconds``
    keeps a checked key's principal in memory that long: each request then
    skips the database, and a revocation takes effect within that time
    (0, the default: on the next request)."""

    scheme = "ApiKey"

    def __init__(self, store: APIKeyStore, *, cache_seconds: float = 0.0) -> None:
        if not 0 <= cache_seconds <= 3600:
            raise ConfigurationError("cache_seconds must be between 0 and 3600")
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, str, Principal]] = {}

    def credential(self, headers: Mapping[str, str]) -> str | None:
        return headers.get(HEADER)

    def openapi(self) -> dict[str, Any]:
        return {"type": "apiKey", "in": "header", "name": "X-API-Key"}

    async def authenticate(self, credential: str) -> Principal:
        parts = split_key(credential.strip())
        if parts is None:
            raise AuthenticationFailed("malformed API key")
        key_id, secret = parts
        digest = _digest(key_id, secret)
        cached = self._cache.get(key_id)
        now = time.monotonic()
        fresh = cached is not None and now - cached[0] < self.cache_seconds
        if cached is not None and fresh and hmac.compare_digest(cached[1], digest):
            return cached[2]
        found = await self.store.find(key_id)
        stored = found[1] if found is not None else _DUMMY
        matches = hmac.compare_digest(stored, digest)
        if found is None or not matches:
            raise AuthenticationFailed("unknown API key")
        if found[0].revoked_at is not None:
            raise AuthenticationFailed("revoked API key")
        principal = found[0].principal_of()
        if self.cache_seconds > 0:
            if len(self._cache) >= 10_000:
                self._cache.clear()
            self._cache[key_id] = (now, stored, principal)
        return principal


class MemoryAPIKeyStore:
    def __init__(self) -> None:
        self._keys: dict[str, tuple[APIKey, str]] = {}

    async def add(self, key: APIKey, digest: str) -> None:
        self._keys[key.key_id] = (key, digest)

    async def find(self, key_id: str) -> tuple[APIKey, str] | None:
        return self._keys.get(key_id)

    async def list(self, *, tenant: str | None = None) -> list[APIKey]:
        return [k for k, _ in self._keys.values() if tenant is None or k.tenant == tenant]

    async def revoke(self, key_id: str) -> bool:
        found = self._keys.get(key_id)
        if found is None or found[0].revoked_at is not None:
            return False
        self._keys[key_id] = (msgspec.structs.replace(found[0], revoked_at=_now()), found[1])
        return True

    async def delete_tenant(self, tenant: str) -> int:
        doomed = [k for k, (key, _) in self._keys.items() if key.tenant == tenant]
        for key_id in doomed:
            del self._keys[key_id]
        return len(doomed)

    async def close(self) -> None:
        return None


_SCHEMA = """CREATE TABLE IF NOT EXISTS eventfold_api_key (
    key_id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    tenant TEXT,
    roles TEXT NOT NULL,
    scopes TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)"""
_SELECT = (
    "SELECT key_id, principal, tenant, roles, scopes, created_at, revoked_at, digest "
    "FROM eventfold_api_key"
)
_INSERT = (
    "INSERT INTO eventfold_api_key (key_id, principal, tenant, roles, scopes, created_at, "
    "revoked_at, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_list = msgspec.json.Decoder(list[str])


def _key(row: Any) -> tuple[APIKey, str]:
    key = APIKey(
        key_id=row[0],
        principal=row[1],
        tenant=row[2],
        roles=_list.decode(row[3]),
        scopes=_list.decode(row[4]),
        created_at=row[5],
        revoked_at=row[6],
    )
    return key, row[7]


def _add(key: APIKey, digest: str, conn: Connection) -> None:
    conn.execute(
        _INSERT,
        (
            key.key_id,
            key.principal,
            key.tenant,
            msgspec.json.encode(key.roles).decode(),
            msgspec.json.encode(key.scopes).decode(),
            key.created_at,
            key.revoked_at,
            digest,
        ),
    )


def _find(key_id: str, conn: Connection) -> tuple[APIKey, str] | None:
    row = conn.execute(_SELECT + " WHERE key_id = ?", (key_id,)).fetchone()
    return None if row is None else _key(row)


def _list_keys(tenant: str | None, conn: Connection) -> list[APIKey]:
    if tenant is None:
        rows = conn.execute(_SELECT + " ORDER BY created_at")
    else:
        rows = conn.execute(_SELECT + " WHERE tenant = ? ORDER BY created_at", (tenant,))
    return [_key(r)[0] for r in rows.fetchall()]


def _revoke(key_id: str, conn: Connection) -> bool:
    cur = conn.execute(
        "UPDATE eventfold_api_key SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
        (_now(), key_id),
    )
    return bool(cur.rowcount)


def _delete_tenant(tenant: str, conn: Connection) -> int:
    return int(conn.execute("DELETE FROM eventfold_api_key WHERE tenant = ?", (tenant,)).rowcount)


class SQLAPIKeyStore:
    """Keys in the control database (``open_api_keys(url)``)."""

    def __init__(self, database: ReadModel) -> None:
        self.database = database
        self._ready = False

    async def _setup(self) -> None:
        if not self._ready:
            await self.database.write(lambda conn: conn.execute(_SCHEMA))
            self._ready = True

    async def add(self, key: APIKey, digest: str) -> None:
        await self._setup()
        await self.database.write(functools.partial(_add, key, digest))

    async def find(self, key_id: str) -> tuple[APIKey, str] | None:
        await self._setup()
        found: tuple[APIKey, str] | None = await self.database.read(
            functools.partial(_find, key_id)
        )
        return found

    async def list(self, *, tenant: str | None = None) -> list[APIKey]:
        await self._setup()
        found: list[APIKey] = await self.database.read(functools.partial(_list_keys, tenant))
        return found

    async def revoke(self, key_id: str) -> bool:
        await self._setup()
        done: bool = await self.database.write(functools.partial(_revoke, key_id))
        return done

    async def delete_tenant(self, tenant: str) -> int:
        await self._setup()
        count: int = await self.database.write(functools.partial(_delete_tenant, tenant))
        return count

    async def close(self) -> None:
        await self.database.close()


APIKeyStoreOpener = Callable[[str], APIKeyStore]
"""``opener(url)`` returns the API key store at ``url``."""

_api_key_stores: SchemeRegistry[APIKeyStoreOpener] = SchemeRegistry("API key store", "api_keys")


def register_api_key_store(scheme: str, opener: APIKeyStoreOpener) -> None:
    """Make ``open_api_keys`` open URLs of ``scheme`` with ``opener(url)``."""
    _api_key_stores.register(scheme, opener)


def open_api_keys(url: str) -> APIKeyStore:
    """``memory://``, ``sqlite:///control.db`` or ``postgresql://…?schema=…``,
    or a scheme added with ``register_api_key_store``."""
    return _api_key_stores.entry(url)(url)


def _open_memory(url: str) -> APIKeyStore:
    return MemoryAPIKeyStore()


def _open_sql(url: str) -> APIKeyStore:
    return SQLAPIKeyStore(open_read_model(url))


register_api_key_store("memory", _open_memory)
register_api_key_store("sqlite", _open_sql)
register_api_key_store("postgresql", _open_sql)
register_api_key_store("postgres", _open_sql)
