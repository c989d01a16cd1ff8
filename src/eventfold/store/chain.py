"""The hash chain's format, defined once.

Every stored event carries ``hash = sha256(link_message(...))``: the previous
event's hash (``GENESIS`` for a stream's first event) and the event's stored
fields. An event appended without a stream (a DCB append, stream id ``""``,
version = position) is a chain of its own: its previous hash is ``GENESIS``.
Backends that hash in Python (memory, SQLite) call the functions here;
PostgreSQL builds the same bytes in SQL (``chain_message`` and
``chain_tags`` in ``eventfold.store.postgres.functions``), and the
conformance suite checks every backend's stored digests against
``link_hash``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from hashlib import sha256

from eventfold.store.api import NewEvent

GENESIS = bytes(32)
"""The previous hash of a stream's first event."""


def _message(
    prev_hash: bytes,
    stream: bytes,
    version: int,
    event_id: bytes,
    type: bytes,
    schema_version: int,
    data: bytes,
    metadata: bytes,
    tags: Sequence[str],
) -> bytes:
    # The one place the message is laid out (see link_message).
    message = b"%s\n%s\n%d\n%s\n%s\n%d\n%d\n%s%s" % (
        prev_hash,
        stream,
        version,
        event_id,
        type,
        schema_version,
        len(data),
        data,
        metadata,
    )
    if tags:
        message += b"\x00" + "\n".join(tags).encode()
    return message


def link_message(
    prev_hash: bytes,
    stream_id: str,
    version: int,
    event_id: uuid.UUID,
    type: str,
    schema_version: int,
    data: bytes | str,
    metadata: bytes | str,
    tags: Sequence[str] = (),
) -> bytes:
    """The bytes that are hashed: the previous 32-byte digest, then
    ``\\n stream \\n version \\n`` (UTF-8), the 16 bytes of the event id, then
    ``\\n type \\n schema \\n len(data) \\n data metadata`` (UTF-8), then, only
    if the event has tags, a NUL byte and its tags joined by ``\\n`` (so an
    event without tags hashes as it did before tags existed). Stream ids,
    type names and tags hold no newline, ids and digests have fixed lengths,
    the data is length-prefixed and JSON text holds no NUL, so no field can
    run into another. ``data`` and ``metadata`` are the JSON text exactly as
    the backend stores it."""
    if isinstance(data, str):
        data = data.encode()
    if isinstance(metadata, str):
        metadata = metadata.encode()
    return _message(
        prev_hash,
        stream_id.encode(),
        version,
        event_id.bytes,
        type.encode(),
        schema_version,
        data,
        metadata,
        tags,
    )


def link_hash(
    prev_hash: bytes,
    stream_id: str,
    version: int,
    event_id: uuid.UUID,
    type: str,
    schema_version: int,
    data: bytes | str,
    metadata: bytes | str,
    tags: Sequence[str] = (),
) -> bytes:
    """The event's 32-byte SHA-256 chain digest."""
    message = link_message(
        prev_hash, stream_id, version, event_id, type, schema_version, data, metadata, tags
    )
    return sha256(message).digest()


def chain(
    prev_hash: bytes, stream_id: str, first_version: int, events: Sequence[NewEvent]
) -> list[bytes]:
    """The digests of ``events`` appended to a stream whose last digest is
    ``prev_hash``, the first of them at ``first_version``, as they are stored
    (their ``data`` and ``metadata`` bytes as given): ``link_hash`` of each,
    in one loop."""
    stream = stream_id.encode()
    message, digest = _message, sha256  # locals: this loop runs once per appended event
    digests: list[bytes] = []
    keep = digests.append
    version = first_version
    for event in events:
        prev_hash = digest(
            message(
                prev_hash,
                stream,
                version,
                event.event_id.bytes,
                event.type.encode(),
                event.schema_version,
                event.data,
                event.metadata,
                event.tags,
            )
        ).digest()
        keep(prev_hash)
        version += 1
    return digests
