"""Export the log as JSON Lines: one event per line, payloads as JSON objects.

Export through an ``EncryptingStore`` and forgotten subjects' fields are
written as REDACTED: an export never brings back what ``forget`` destroyed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from eventfold.store.api import EventReader, RecordedEvent


class ExportedEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """An export line; ``tags`` only when the event has some."""

    position: int
    stream_id: str
    version: int
    event_id: str
    type: str
    schema_version: int
    recorded_at: str
    data: msgspec.Raw
    metadata: msgspec.Raw
    tags: tuple[str, ...] = ()


def exported(r: RecordedEvent) -> ExportedEvent:
    """One event as an export line holds it."""
    return ExportedEvent(
        r.position,
        r.stream_id,
        r.version,
        str(r.event_id),
        r.type,
        r.schema_version,
        r.recorded_at.isoformat(),
        msgspec.Raw(r.data),
        msgspec.Raw(r.metadata),
        tuple(r.tags),
    )


async def export_jsonl(
    store: EventReader,
    path: str | Path,
    *,
    categories: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    from_position: int = 0,
    on_progress: Callable[[int, int], Any] | None = None,
) -> int:
    """Write the selected events to ``path`` (written to a temporary file and
    renamed, so a failed export leaves no partial file). ``on_progress(done,
    position)`` is called every 1,000 events. Returns the number written."""
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    encoder = msgspec.json.Encoder()
    count = 0
    try:
        with open(partial, "wb") as out:
            buffer = bytearray()
            async for r in store.read_all(
                from_position=from_position, categories=categories, types=types
            ):
                encoder.encode_into(exported(r), buffer, len(buffer))
                buffer += b"\n"
                count += 1
                if count % 1000 == 0:
                    out.write(buffer)
                    buffer.clear()
                    if on_progress is not None:
                        on_progress(count, r.position)
            out.write(buffer)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count
