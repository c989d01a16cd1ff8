"""The archive file format: one segment is a zstd frame (with its content
checksum) of JSON Lines. The first line is the header; every other line is
one removed event as it was stored, ordered by position.

Header::

    {"format": "eventfold-archive", "version": 1, "created_at": "...",
     "events": 3, "streams": {"order-1": {"first": 1, "last": 3,
                                          "prev": "<hex>", "head": "<hex>"}}}

``prev`` is the chain hash before the stream's first archived event
(``GENESIS`` for version 1, else the anchor of the stream's earlier cut) and
``head`` the hash of its last archived event: the anchor of the cut that
removed them. A record keeps everything the hash chain needs (raw stored
``data`` and ``metadata`` text, ciphertext included), and what a reader is
given back (position, time, tags).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Annotated, Any, Final

import msgspec

from eventfold.errors import ConfigurationError, NotAnArchive
from eventfold.store.api import RecordedEvent
from eventfold.store.capabilities import ChainLink

FORMAT: Final = "eventfold-archive"
FORMAT_VERSION: Final = 1
SUFFIX: Final = ".jsonl.zst"
_CHUNK = 1 << 16
_MAX_LINE = 64 << 20
"""A line longer than this is not an archive record (the store's own payload
limits are far below it): a reader never holds more than this of one line."""


Digest = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
"""A chain digest as 64 lowercase hex digits."""


class StreamRange(msgspec.Struct, frozen=True):
    """One stream's part of a segment: versions ``first..last``, chained from
    ``prev`` (hex) to ``head`` (hex)."""

    first: int
    last: int
    prev: Digest
    head: Digest


class Header(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    version: int
    created_at: datetime
    events: int
    streams: dict[str, StreamRange]


class ArchivedEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One removed event exactly as it was stored, with its chain hash (hex)."""

    stream_id: str
    version: int
    position: int
    event_id: uuid.UUID
    type: str
    schema_version: int
    data: str
    metadata: str
    recorded_at: datetime
    hash: Digest
    tags: tuple[str, ...] = ()

    def record(self) -> RecordedEvent:
        return RecordedEvent(
            stream_id=self.stream_id,
            version=self.version,
            position=self.position,
            event_id=self.event_id,
            type=self.type,
            schema_version=self.schema_version,
            data=self.data,
            metadata=self.metadata,
            recorded_at=self.recorded_at,
            tags=self.tags,
        )

    def link(self) -> ChainLink:
        return ChainLink(
            stream_id=self.stream_id,
            version=self.version,
            position=self.position,
            event_id=self.event_id,
            type=self.type,
            schema_version=self.schema_version,
            data=self.data,
            metadata=self.metadata,
            hash=bytes.fromhex(self.hash),
            tags=self.tags,
        )


def archived(record: RecordedEvent, digest: bytes) -> ArchivedEvent:
    """``record`` (as stored) with its chain digest, as an archive line."""
    data, metadata = record.data, record.metadata
    return ArchivedEvent(
        stream_id=record.stream_id,
        version=record.version,
        position=record.position,
        event_id=record.event_id,
        type=record.type,
        schema_version=record.schema_version,
        data=data.decode() if isinstance(data, bytes) else data,
        metadata=metadata.decode() if isinstance(metadata, bytes) else metadata,
        recorded_at=record.recorded_at,
        hash=digest.hex(),
        tags=record.tags,
    )


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - the extra is part of dev
        raise ConfigurationError(
            "archives need the zstandard package: pip install 'eventfold[archive]'"
        ) from None
    return zstandard


def write_segment(out: IO[bytes], header: Header, events: list[ArchivedEvent]) -> None:
    """Write one segment (header, then ``events``) to ``out`` as one zstd
    frame with its content checksum."""
    zstd = _zstd()
    encoder = msgspec.json.Encoder()
    compressor = zstd.ZstdCompressor(level=9, write_checksum=True)
    with compressor.stream_writer(out, closefd=False) as writer:
        writer.write(encoder.encode(header) + b"\n")
        for event in events:
            writer.write(encoder.encode(event) + b"\n")


def _lines(source: IO[bytes], location: str) -> Iterator[bytes]:
    """The decompressed lines of one zstd frame, in constant memory; a frame
    that does not end, fails its checksum or is followed by anything else is
    ``NotAnArchive``."""
    zstd = _zstd()
    decompressor = zstd.ZstdDecompressor().decompressobj()
    chunk = source.read(_CHUNK)
    if not chunk:
        raise NotAnArchive(location, "empty")
    pending = b""
    while chunk:
        if decompressor.eof:
            raise NotAnArchive(location, "data after the end of the archive")
        try:
            pending += decompressor.decompress(chunk)
        except zstd.ZstdError as exc:
            raise NotAnArchive(location, f"not a zstd archive or corrupt ({exc})") from None
        *complete, pending = pending.split(b"\n")
        yield from complete
        if len(pending) > _MAX_LINE:
            raise NotAnArchive(location, "a line longer than any archive record")
        chunk = source.read(_CHUNK)
    if not decompressor.eof:
        raise NotAnArchive(location, "the archive ends early (truncated)")
    if decompressor.unused_data:
        raise NotAnArchive(location, "data after the end of the archive")
    if pending:
        raise NotAnArchive(location, "the last line is incomplete")


def read_segment(source: IO[bytes], location: str) -> tuple[Header, Iterator[ArchivedEvent]]:
    """The segment's header, and an iterator over its events in file order
    (which checks, at its end, that the file held as many as the header says)."""
    lines = _lines(source, location)
    first = next(lines, None)
    if first is None:
        raise NotAnArchive(location, "no archive header")
    try:
        header = msgspec.json.decode(first, type=Header)
    except msgspec.DecodeError as exc:
        raise NotAnArchive(location, f"no archive header ({exc})") from None
    if header.format != FORMAT:
        raise NotAnArchive(location, f"format {header.format!r}, not {FORMAT!r}")
    if header.version != FORMAT_VERSION:
        raise NotAnArchive(
            location, f"format version {header.version}; this eventfold reads {FORMAT_VERSION}"
        )
    return header, _events(lines, header, location)


def _events(lines: Iterator[bytes], header: Header, location: str) -> Iterator[ArchivedEvent]:
    decoder = msgspec.json.Decoder(ArchivedEvent)
    count = 0
    for number, line in enumerate(lines, start=2):
        try:
            event = decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise NotAnArchive(
                location, f"line {number} is not an archived event ({exc})"
            ) from None
        count += 1
        yield event
    if count != header.events:
        raise NotAnArchive(location, f"holds {count} events, its header says {header.events}")
