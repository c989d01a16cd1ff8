"""Crypto-shredding: personal fields encrypted per data subject, wrapped around
any store.

``EncryptingStore(store, registry, keys)`` encrypts the fields an event type
registers as ``personal`` with the key of the subject named by its ``subject``
field (AES-256-GCM). The associated data binds stream, version, event type,
field and key id, so a ciphertext copied anywhere else fails to decrypt. After
``forget(subject)`` those fields read as ``REDACTED``; the rest of each event,
and the stored bytes (ciphertext included), are unchanged. Snapshots of a
stream holding personal data are encrypted with the same subjects' keys, so a
forgotten subject's snapshot becomes a cache miss.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventfold.domain.events import EventRegistry, EventType
from eventfold.errors import DecryptionError as DecryptionError
from eventfold.errors import (
    DuplicateEventId,
    InvalidArgument,
    WrongExpectedVersion,
)
from eventfold.serialization.keys import KeyStore
from eventfold.store.api import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    EventStore,
    ExpectedVersion,
    JsonText,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
)
from eventfold.store.capabilities import (
    ChainReader,
    DataRow,
    Inspector,
    ReplicaReads,
    SnapshotStore,
    SQLReader,
    StreamDataReader,
    StreamLifecycle,
)
from eventfold.store.checks import validate_snapshot
from eventfold.store.wrapper import DelegatingStore

REDACTED = "[redacted]"
"""What a personal field of a forgotten subject reads as."""

_TOKEN = "ef1:"
_SNAPSHOT = b"EFS1"


def _ad(stream_id: str, version: int, event_type: str, field: str, key_id: str) -> bytes:
    return "\x00".join((stream_id, str(version), event_type, field, key_id)).encode()


def encrypt_field(key_id: str, key: bytes, plaintext: str, ad: bytes, event_id: str) -> str:
    # A synthetic nonce: the same event id and plaintext give the same token
    # (so a retried append is recognised), other plaintexts a different nonce.
    nonce = hmac.new(key, f"{event_id}\x00{plaintext}".encode(), hashlib.sha256).digest()[:12]
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), ad)
    return f"{_TOKEN}{key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def split_token(token: str) -> tuple[str, bytes] | None:
    if not token.startswith(_TOKEN):
        return None
    key_id, _, body = token[len(_TOKEN) :].partition(":")
    try:
        return key_id, base64.urlsafe_b64decode(body)
    except ValueError:
        return None


class EncryptingStore(DelegatingStore):
    """An ``EventStore`` that encrypts personal fields on the way in and
    decrypts (or redacts) them on the way out: in records, in the rows of a
    fast fold read, and in snapshots. The hash chain, inspection and SQL see
    the data as stored (ciphertext)."""

    passes = frozenset(
        {
            SnapshotStore,
            StreamDataReader,
            ChainReader,
            Inspector,
            SQLReader,
            ReplicaReads,
            StreamLifecycle,
        }
    )

    def __init__(
        self,
        inner: EventStore,
        registry: EventRegistry,
        keys: KeyStore,
        *,
        max_retries: int = 10,
        key_cache_seconds: float = 5.0,
    ) -> None:
        super().__init__(inner)
        self.registry = registry
        self.keys = keys
        self.max_retries = max_retries
        self._cache_ttl = key_cache_seconds
        self._cache: dict[str, tuple[float, bytes | None]] = {}

    async def close(self) -> None:
        await self.keys.close()
        await super().close()

    async def forget(self, subject: str) -> int:
        """Destroy the subject's keys: their personal fields read as REDACTED
        from now on, in this process at once and in others within
        ``key_cache_seconds``."""
        count = await self.keys.forget(subject)
        self.forget_cached()
        return count

    def forget_cached(self) -> None:
        """Drop the keys cached in this process (another wrapper over the same
        key store forgot a subject)."""
        self._cache.clear()

    # --- keys ---------------------------------------------------------------------

    async def _key(self, key_id: str) -> bytes | None:
        now = time.monotonic()
        hit = self._cache.get(key_id)
        if hit is not None and now - hit[0] < self._cache_ttl:
            return hit[1]
        key = await self.keys.key(key_id)
        self._cache[key_id] = (now, key)
        return key

    def _personal(self, type_name: str) -> EventType | None:
        entry = self.registry.of_name(type_name)
        return entry if entry is not None and entry.personal else None

    # --- writing ------------------------------------------------------------------

    async def _seal(self, stream_id: str, version: int, event: NewEvent) -> NewEvent:
        entry = self._personal(event.type)
        if entry is None:
            return event
        data: dict[str, Any] = msgspec.json.decode(event.data, type=dict[str, Any])
        subject = data.get(entry.subject or "")
        if not isinstance(subject, str) or not subject:
            raise InvalidArgument(
                f"{event.type}: subject field {entry.subject!r} must be a non-empty string",
                argument=entry.subject,
            )
        key_id, key = await self.keys.key_for(subject)
        for field in entry.personal:
            value = data.get(field)
            if isinstance(value, str):
                ad = _ad(stream_id, version, event.type, field, key_id)
                data[field] = encrypt_field(key_id, key, value, ad, str(event.event_id))
        return msgspec.structs.replace(event, data=msgspec.json.encode(data))

    async def _write(self, appends: list[StreamAppend]) -> list[AppendResult]:
        if not any(self._personal(e.type) for a in appends for e in a.events):
            return await self.inner.append_many(appends)
        # Versions are part of the associated data, so each stream's version is
        # fixed before encrypting; ANY and STREAM_EXISTS become that exact
        # version and are retried if another writer moves the stream first.
        for attempt in range(self.max_retries + 1):
            sealed: list[StreamAppend] = []
            for item in appends:
                expected = item.expected_version
                exact: ExpectedVersion
                if isinstance(expected, int):
                    base, exact = expected, expected
                elif expected is NO_STREAM:
                    base, exact = 0, expected
                else:
                    base = await self.inner.stream_version(item.stream_id)
                    exact = base if base > 0 or expected is ANY else STREAM_EXISTS
                events = [
                    await self._seal(item.stream_id, base + 1 + i, e)
                    for i, e in enumerate(item.events)
                ]
                sealed.append(StreamAppend(item.stream_id, events, exact))
            try:
                return await self.inner.append_many(sealed)
            except WrongExpectedVersion as exc:
                original = next(a for a in appends if a.stream_id == exc.stream_id)
                if (
                    isinstance(original.expected_version, int)
                    or original.expected_version is NO_STREAM
                ):
                    raise
                if attempt == self.max_retries:
                    raise
            except DuplicateEventId:
                replayed = [await self._replayed(item) for item in appends]
                if all(r is not None for r in replayed):
                    return [r for r in replayed if r is not None]
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _replayed(self, item: StreamAppend) -> AppendResult | None:
        """An append whose events are all stored, in order, with the same
        plaintext: a retry of one that succeeded."""
        wanted = {e.event_id: e for e in item.events}
        found: list[RecordedEvent] = []
        async for record in self.read_stream(item.stream_id):
            if record.event_id in wanted:
                found.append(record)
        if len(found) != len(item.events):
            return None
        for record, event in zip(found, item.events, strict=True):
            if record.event_id != event.event_id or record.type != event.type:
                return None
            if msgspec.json.decode(record.data) != msgspec.json.decode(event.data):
                return None
        if found[-1].version - found[0].version != len(found) - 1:
            return None
        return AppendResult(item.stream_id, found[-1].version, found[-1].position)

    # --- reading ------------------------------------------------------------------

    async def on_read(self, record: RecordedEvent) -> RecordedEvent:
        data = await self._open(record.stream_id, record.version, record.type, record.data)
        return record if data is None else msgspec.structs.replace(record, data=data)

    async def on_read_data(
        self, stream_id: str, first_version: int, rows: list[DataRow]
    ) -> list[DataRow]:
        out = rows
        for i, (type_name, schema_version, raw) in enumerate(rows):
            data = await self._open(stream_id, first_version + i, type_name, raw)
            if data is not None:
                if out is rows:
                    out = list(rows)
                out[i] = (type_name, schema_version, data)
        return out

    async def _open(
        self, stream_id: str, version: int, type_name: str, raw: JsonText
    ) -> bytes | None:
        """The event's data with its personal fields decrypted (or REDACTED);
        None if it has none to decrypt."""
        entry = self._personal(type_name)
        if entry is None:
            return None
        data: dict[str, Any] = msgspec.json.decode(raw, type=dict[str, Any])
        changed = False
        for field in entry.personal:
            value = data.get(field)
            parts = split_token(value) if isinstance(value, str) else None
            if parts is None:
                continue
            key_id, blob = parts
            key = await self._key(key_id)
            changed = True
            if key is None:
                data[field] = REDACTED
                continue
            ad = _ad(stream_id, version, type_name, field, key_id)
            try:
                data[field] = AESGCM(key).decrypt(blob[:12], blob[12:], ad).decode()
            except (InvalidTag, ValueError):
                raise DecryptionError(
                    f"{type_name} at {stream_id!r} version {version}: "
                    f"field {field!r} does not decrypt here (moved or altered)",
                    stream_id=stream_id,
                    version=version,
                    field=field,
                ) from None
        return msgspec.json.encode(data) if changed else None

    # --- snapshots ----------------------------------------------------------------

    async def _subject_keys(self, stream_id: str, upto: int) -> list[str]:
        """Key ids of every subject with personal data in the stream up to ``upto``."""
        key_ids: list[str] = []
        async for record in self.inner.read_stream(stream_id, to_version=upto):
            entry = self._personal(record.type)
            if entry is None:
                continue
            data = msgspec.json.decode(record.data, type=dict[str, Any])
            for field in entry.personal:
                value = data.get(field)
                parts = split_token(value) if isinstance(value, str) else None
                if parts is not None and parts[0] not in key_ids:
                    key_ids.append(parts[0])
        return key_ids

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        validate_snapshot(snapshot)
        key_ids = await self._subject_keys(snapshot.stream_id, snapshot.version)
        state = snapshot.state
        ad = f"{snapshot.stream_id}\x00{snapshot.name}\x00{snapshot.version}".encode()
        for key_id in key_ids:
            key = await self._key(key_id)
            if key is None:
                return  # a forgotten subject's state is not cached at all
            nonce = hmac.new(key, state, hashlib.sha256).digest()[:12]
            state = (
                key_id.encode() + nonce + AESGCM(key).encrypt(nonce, state, ad + key_id.encode())
            )
        if key_ids:
            state = _SNAPSHOT + len(key_ids).to_bytes(2, "big") + state
        await self._inner(SnapshotStore).save_snapshot(
            msgspec.structs.replace(snapshot, state=state)
        )

    async def load_snapshot(self, stream_id: str, name: str) -> Snapshot | None:
        snapshot = await self._inner(SnapshotStore).load_snapshot(stream_id, name)
        if snapshot is None or not snapshot.state.startswith(_SNAPSHOT):
            return snapshot
        layers = int.from_bytes(snapshot.state[4:6], "big")
        state = snapshot.state[6:]
        ad = f"{snapshot.stream_id}\x00{snapshot.name}\x00{snapshot.version}".encode()
        for _ in range(layers):
            key_id = state[:32].decode()
            key = await self._key(key_id)
            if key is None:
                return None  # forgotten: the snapshot is only a cache miss now
            try:
                state = AESGCM(key).decrypt(state[32:44], state[44:], ad + key_id.encode())
            except (InvalidTag, ValueError):
                return None
        return msgspec.structs.replace(snapshot, state=state)
